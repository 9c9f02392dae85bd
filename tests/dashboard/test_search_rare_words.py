"""A search that mixes rare and common words, and a search's page looked for day by day.

On PostgreSQL the trigram index is asked for a term's rare words only when its statistics say
the other words are in most rows, and the rows it returns are checked for the whole term
(workspaces/search_plan.py); a search's newest rows are looked for in the last day, 7 and 30
days first (workspaces.live.search_floors). Neither may change what a search finds: the tests
compare the feed with the rows that hold the term, worked out here in Python.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from ingest.api_read import read_page
from ingest.models import Event, TimelineEvent
from workspaces import live, search_plan

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_statistics():
    """Each test reads the statistics its own ANALYZE wrote, not a sample kept from another."""
    search_plan.forget()
    yield
    search_plan.forget()


def _analyse() -> None:
    with connection.cursor() as cursor:
        for index in (live.EVENT_SEARCH_INDEX, live.TIMELINE_SEARCH_INDEX):
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [index])
        for model in (Event, TimelineEvent):
            cursor.execute(f"ANALYZE {model._meta.db_table}")


def _fill(workspace, source, worker, rows: int, now, step=timedelta(minutes=1)) -> None:
    """Rows whose texts share their words but a number, one every `step` back from `now`; the
    timeline's half a step later than the events', so that no two rows share an instant."""
    Event.objects.bulk_create(
        Event(workspace=workspace, source=source, status="success",
              message=f"backup.run on host-{i % 40} took {i} ms", external_id=f"run-{i}",
              metadata={"host": f"host-{i % 40}", "attempt": 1 + i % 3},
              received_at=now - i * step)
        for i in range(rows)
    )
    TimelineEvent.objects.bulk_create(
        TimelineEvent(workspace=workspace, source=source, worker=worker, event_type="t.done",
                      category="support", timestamp=now,
                      metadata={"queue": "billing", "ticket": f"ZD-{i} queue billing"},
                      request_id="req_x", received_at=now - i * step - step / 2)
        for i in range(rows)
    )


def _holding(workspace, term: str, limit: int) -> list[str]:
    """The newest `limit` ids of both kinds whose searched text holds `term`, worked out here
    from each row's fields (metadata as the database writes it as text)."""
    needle = term.upper()
    found = []
    events = Event.objects.filter(workspace=workspace).annotate(
        meta=Cast("metadata", TextField())).values_list("received_at", "public_id", "message",
                                                        "external_id", "meta")
    for at, public_id, *fields in events:
        if any(needle in (text or "").upper() for text in fields):
            found.append((at, public_id))
    timeline = TimelineEvent.objects.filter(workspace=workspace).annotate(
        meta=Cast("metadata", TextField())).values_list(
        "received_at", "public_id", "worker__display_name", "worker__external_id", "meta")
    for at, public_id, *fields in timeline:
        if any(needle in (text or "").upper() for text in fields):
            found.append((at, public_id))
    return [public_id for _, public_id in sorted(found, reverse=True)[:limit]]


def _feed(workspace, limit: int = 100, **filters) -> list[str]:
    f = live.FeedFilters(limit=limit, **filters)
    return [item["id"] for item in live.feed(workspace, f)]


# --- which words the index is asked for -------------------------------------------------------


@pytest.mark.postgres
def test_a_term_is_asked_for_as_it_is_until_the_index_has_statistics(workspace, source, worker):
    _fill(workspace, source, worker, 50, timezone.now())

    assert search_plan.rare_words(live.EVENT_SEARCH_INDEX, "took 17 ms") is None


@pytest.mark.postgres
@pytest.mark.parametrize(
    "term, words",
    [
        ("took 1234 ms", ["1234"]),  # "took" is in every row; "ms" gives no trigram of its own
        ("run-1234", ["1234"]),
        ("zzq nothing matches", ["zzq", "nothing", "matches"]),  # rare words, no padding
        ("1234", None),  # one word: the term itself
        ("backup.run on host", None),  # every word common
        ("took", None),  # a common term: the planner reads the newest rows
    ],
)
def test_the_index_is_asked_for_the_rare_words_of_a_term(workspace, source, worker, term, words):
    _fill(workspace, source, worker, 3000, timezone.now())
    _analyse()

    assert search_plan.rare_words(live.EVENT_SEARCH_INDEX, term) == words


@pytest.mark.postgres
def test_only_the_rare_word_reaches_the_index_and_the_whole_term_is_checked(
    workspace, source, worker
):
    _fill(workspace, source, worker, 3000, timezone.now())
    _analyse()
    with connection.cursor() as cursor:
        # Few rows fit in few pages: make the planner show what it would ask the index.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
    filters = live.FeedFilters(q="took 1234 ms")

    plan = live.events_query(workspace, filters, timezone.now())[:100].explain()

    conditions = [line for line in plan.splitlines() if "Index Cond" in line]
    assert any("event_search_trgm" in line for line in plan.splitlines()), plan
    assert any("%1234%" in line for line in conditions), plan
    assert not any("TOOK" in line.upper() for line in conditions), plan
    assert "TOOK 1234 MS" in plan.upper(), plan  # checked on the rows found


@pytest.mark.postgres
@pytest.mark.parametrize(
    "term",
    ["took 1234 ms", "took 12 ms", "run-123", "host-7 took 47", "ZD-1234 queue", "queue billing",
     "zzq nothing matches", "1234 ms"],
)
def test_a_rare_word_search_finds_exactly_the_rows_holding_the_whole_term(
    workspace, source, worker, term
):
    _fill(workspace, source, worker, 3000, timezone.now())
    _analyse()

    assert _feed(workspace, q=term) == _holding(workspace, term, 100)


# --- the page looked for day by day -----------------------------------------------------------


@pytest.mark.parametrize("limit", [7, 100, 1000])
def test_the_newest_rows_above_a_floor_are_the_newest_of_all(workspace, source, worker, limit):
    now = timezone.now()
    _fill(workspace, source, worker, 700, now)
    qs = live.events_query(workspace, live.FeedFilters(), now)
    floors = [now - timedelta(hours=1), now - timedelta(hours=10)]  # 60 rows, then 600

    tried = list(live.newest(qs, limit, floors=floors).values_list("public_id", flat=True))

    assert tried == list(live.newest(qs, limit).values_list("public_id", flat=True))
    assert len(tried) == min(limit, 700)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "term, filters",
    [
        ("took 2", {}),  # 1 in 10 rows: the first day holds the page
        ("took 1234 ms", {}),  # one row, weeks back: every floor is tried, then the whole range
        ("host-7 took", {}),
        ("ZD-3 queue", {}),
        ("took 1", {"before_hours": 30}),  # loading older rows: floors count back from there
        ("took 1", {"since_hours": 50}),  # a range shorter than the wider floors
    ],
)
def test_a_search_looked_for_day_by_day_finds_the_newest_rows_holding_it(
    workspace, source, worker, term, filters
):
    now = timezone.now()
    _fill(workspace, source, worker, 2000, now, step=timedelta(hours=1))  # 83 days
    _analyse()
    bounds = {}
    if "before_hours" in filters:
        bounds["before"] = now - timedelta(hours=filters["before_hours"])
    if "since_hours" in filters:
        bounds["since"] = now - timedelta(hours=filters["since_hours"])
    expected = [
        public_id for public_id in _holding(workspace, term, 4000)
        if _received(public_id) <= bounds.get("before", now)
        and _received(public_id) >= bounds.get("since", now - timedelta(days=365))
    ][:100]

    assert _feed(workspace, q=term, **bounds) == expected


def _received(public_id: str):
    model = TimelineEvent if public_id.startswith("tle_") else Event
    return model.objects.get(public_id=public_id).received_at


def test_a_search_is_looked_for_day_by_day_only_where_an_index_serves_it(workspace):
    now = timezone.now()

    floors = live.search_floors(workspace, live.FeedFilters(q="backup"), now)
    narrow = live.search_floors(
        workspace, live.FeedFilters(q="backup", since=now - timedelta(days=3)), now)

    assert live.search_floors(workspace, live.FeedFilters(), now) == []
    if connection.vendor == "postgresql":
        assert floors == [now - span for span in live.SEARCH_SPANS]
        assert narrow == [now - timedelta(days=1)]
    else:
        assert floors == narrow == []


@pytest.mark.postgres
@pytest.mark.parametrize("term, limit", [("took 1", 500), ("took 1", 37), ("ZD-1", 200)])
def test_the_read_api_pages_through_a_search_looked_for_day_by_day(
    workspace, source, worker, term, limit
):
    now = timezone.now()
    _fill(workspace, source, worker, 2000, now, step=timedelta(hours=1))
    _analyse()
    pages: list[str] = []
    cursor = None
    for _ in range(100):
        params = {"q": term, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        items, after = read_page(workspace, params, now)
        pages.extend(item["id"] for item in items)
        if after is None:
            break
        cursor = after.encode()

    assert pages == _holding(workspace, term, 10_000)
