"""A search that mixes rare and common words.

On PostgreSQL the trigram index is asked for a term's rare words only when its statistics say
the term also holds a common word, and the rows it returns are checked for the whole term
(workspaces/search_plan.py). That may not change what a search finds: the tests compare the
feed and the read API with the rows that hold the term, worked out here in Python.
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
def coarse_sample(monkeypatch):
    """A few thousand rows' sample stands for three rows a value: a word in one or two rows
    reads as 0.1-0.2 %, so rare here is under 1 %, above the 0.15 % a large table resolves."""
    monkeypatch.setattr(search_plan, "RARE_WORD_SHARE", 0.01)


def _analyse() -> None:
    with connection.cursor() as cursor:
        for index in (live.EVENT_SEARCH_INDEX, live.TIMELINE_SEARCH_INDEX):
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [index])
        for model in (Event, TimelineEvent):
            cursor.execute(f"ANALYZE {model._meta.db_table}")


def _fill(workspace, source, worker, rows: int, now, step=timedelta(minutes=1)) -> None:
    """Rows whose texts share their words but a number (and "retry" in 1 in 20), one every
    `step` back from `now`; the timeline's half a step later than the events', so that no two
    rows share an instant."""
    Event.objects.bulk_create(
        Event(workspace=workspace, source=source, status="success",
              message=f"backup.run on host-{i % 40} took {i} ms" + (" after a retry" * (i % 20 == 0)),
              external_id=f"run-{i}",
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
    # Rows that hold the rare word 1234 but not the terms around it: only the check of the
    # whole term keeps them out.
    Event.objects.create(workspace=workspace, source=source, status="success",
                         message="backup.run took 12345 ms", external_id="run-91234",
                         received_at=now - step / 3)
    TimelineEvent.objects.create(workspace=workspace, source=source, worker=worker,
                                 event_type="t.done", category="support", timestamp=now,
                                 metadata={"ticket": "ZD-91234 queue"}, request_id="req_x",
                                 received_at=now - step / 4)


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
def test_a_term_is_asked_for_as_it_is_without_statistics(monkeypatch):
    monkeypatch.setattr(search_plan, "sample", lambda index: [])

    assert search_plan.rare_words(live.EVENT_SEARCH_INDEX, "took 17 ms") is None


@pytest.mark.postgres
def test_an_index_sample_is_read_once_a_minute(workspace, source, worker, monkeypatch,
                                               django_assert_num_queries):
    _fill(workspace, source, worker, 200, timezone.now())
    _analyse()
    clock = [1000.0]
    monkeypatch.setattr(search_plan.time, "monotonic", lambda: clock[0])

    with django_assert_num_queries(1):
        first = search_plan.sample(live.EVENT_SEARCH_INDEX)
        clock[0] += search_plan.SAMPLE_SECONDS - 1
        assert search_plan.sample(live.EVENT_SEARCH_INDEX) is first
    clock[0] += 2
    with django_assert_num_queries(1):
        search_plan.sample(live.EVENT_SEARCH_INDEX)
    assert len(first) > 100
    assert abs(sum(weight for _, weight in first) - 1.0) < 0.01  # every row stood for once


@pytest.mark.postgres
@pytest.mark.parametrize(
    "term, words",
    [
        ("took 1234 ms", ["1234"]),  # "took" and "ms" are in every row
        ("run-1234 run-1234", ["1234"]),
        ("zzq nothing matches", None),  # no common word: the term's own trigrams serve
        ("1234", None),
        ("took host", None),  # no rare word: nothing to gain
        ("took retry", None),  # "retry" is in 1 in 20 rows: too many to ask for alone
        ("took 12 ms", None),  # "12" gives no trigram of its own
    ],
)
def test_the_index_is_asked_for_the_rare_words_of_a_term(workspace, source, worker, term, words):
    _fill(workspace, source, worker, 3000, timezone.now())
    _analyse()

    assert search_plan.rare_words(live.EVENT_SEARCH_INDEX, term) == words


@pytest.mark.postgres
@pytest.mark.parametrize(
    "query, index, term, common",
    [(live.events_query, live.EVENT_SEARCH_INDEX, "took 1234 ms", "TOOK"),
     (live.timeline_query, live.TIMELINE_SEARCH_INDEX, "ZD-1234 queue", "QUEUE")],
    ids=["events", "timeline"],
)
def test_only_the_rare_word_reaches_the_index_and_the_whole_term_is_checked(
    workspace, source, worker, query, index, term, common
):
    _fill(workspace, source, worker, 3000, timezone.now())
    _analyse()
    with connection.cursor() as cursor:
        # Few rows fit in few pages: make the planner show what it would ask the index.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")

    plan = query(workspace, live.FeedFilters(q=term), timezone.now())[:100].explain()

    conditions = [line for line in plan.splitlines() if "Index Cond" in line]
    assert index in plan, plan
    assert any("%1234%" in line for line in conditions), plan
    assert not any(common in line.upper() for line in conditions), plan
    assert term.upper() in plan.upper(), plan  # checked on the rows found


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


@pytest.mark.postgres
@pytest.mark.parametrize("term, limit", [("took 1234 ms", 500), ("took 1", 37), ("ZD-1", 200),
                                         ("run-1234", 2)])
def test_the_read_api_pages_through_a_rare_word_search(
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
