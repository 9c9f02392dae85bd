"""{% when %}: the one way a page writes a time (docs/dashboard.md, "Time")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.template import Context, Template, TemplateSyntaxError


def render(source: str, **context) -> str:
    return Template("{% load times %}" + source).render(Context(context))


def test_an_instant_becomes_a_time_element_with_its_exact_utc_instant_and_a_labelled_fallback():
    moment = datetime(2026, 12, 5, 16, 44, 3, 120456, tzinfo=UTC)
    assert render("{% when at %}", at=moment) == (
        '<time datetime="2026-12-05T16:44:03.120Z" data-when="relative"'
        ' title="2026-12-05 16:44:03 UTC">2026-12-05 16:44 UTC</time>'
    )


def test_an_instant_in_another_offset_is_written_in_utc():
    moment = datetime(2026, 12, 5, 22, 14, 3, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    out = render('{% when at "absolute" cls="row-time" %}', at=moment)
    assert out.startswith('<time class="row-time" datetime="2026-12-05T16:44:03.000Z" data-when="absolute"')
    assert ">2026-12-05 16:44 UTC</time>" in out


def test_the_feeds_iso_strings_are_accepted_and_no_microseconds_reach_the_page():
    out = render('{% when at "date" %}', at="2026-12-05T16:44:03.120456Z")
    assert 'datetime="2026-12-05T16:44:03.120Z"' in out and ">2026-12-05 UTC</time>" in out
    assert "120456" not in out


@pytest.mark.parametrize("value", [None, "", "not a time"])
def test_nothing_is_written_for_a_missing_instant(value):
    assert render("{% when at %}", at=value) == ""


def test_a_style_it_does_not_know_is_refused():
    with pytest.raises(TemplateSyntaxError):
        render('{% when at "fuzzy" %}', at=datetime(2026, 1, 1, tzinfo=UTC))


def test_markup_in_the_class_is_escaped():
    out = render('{% when at cls=c %}', at=datetime(2026, 1, 1, tzinfo=UTC), c='"><b>x</b>')
    assert "<b>" not in out
