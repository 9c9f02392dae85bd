from datetime import UTC, datetime

from billing.periods import add_months, billing_period


def test_a_period_runs_a_month_from_the_anchor():
    anchor = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
    start, end = billing_period(anchor, datetime(2026, 3, 20, tzinfo=UTC))
    assert start == datetime(2026, 3, 15, 9, 30, tzinfo=UTC)
    assert end == datetime(2026, 4, 15, 9, 30, tzinfo=UTC)


def test_the_day_before_the_anchor_day_belongs_to_the_previous_period():
    anchor = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
    start, end = billing_period(anchor, datetime(2026, 3, 15, 9, 29, tzinfo=UTC))
    assert start == datetime(2026, 2, 15, 9, 30, tzinfo=UTC)
    assert end == datetime(2026, 3, 15, 9, 30, tzinfo=UTC)


def test_an_anchor_on_the_31st_is_clamped_to_short_months():
    anchor = datetime(2026, 1, 31, tzinfo=UTC)
    assert add_months(anchor, 1) == datetime(2026, 2, 28, tzinfo=UTC)
    start, end = billing_period(anchor, datetime(2026, 3, 1, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))
