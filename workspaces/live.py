"""The live events page's data: filtered, retention-bounded, merged feed of both event kinds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from heapq import merge
from typing import Any

from django.db import connection
from django.db.models import F, Func, Q, QuerySet, Sum, TextField, Value
from django.db.models.functions import Cast, Coalesce
from django.db.models.lookups import IContains, Lookup
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ackly.ids import is_event_id, is_public_id
from ingest.models import Category, Event, EventStatus, Rejection, TimelineEvent
from ingest.present import (
    EVENT_ITEM_FIELDS,
    TIMELINE_ITEM_FIELDS,
    event_row_item,
    iso,
    present_event,
    present_timeline_event,
    timeline_row_item,
)
from sources.models import Source
from stats.models import BUCKET, EventCount, Kind
from workspaces import search_plan
from workspaces.models import Worker, Workspace

FEED_PAGE_SIZE = 100
FEED_MAX_PAGE_SIZE = 500
# Named time ranges offered by the filter bar; `since`/`until` take exact instants too.
RANGES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24),
          "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}


def retention_cutoff(workspace: Workspace, now: datetime | None = None) -> datetime:
    """Rows received before this instant are past the plan's retention and never shown."""
    return (now or timezone.now()) - timedelta(days=workspace.plan.retention_days)


def _instant(value: str | None) -> datetime | None:
    """The instant in UTC, or None when it is not one or falls outside years 1-9999 in UTC.

    In UTC because PostgreSQL refuses offsets past ±15:59 that ISO 8601 allows (+23:59).
    """
    if not value:
        return None
    try:
        moment = parse_datetime(value.strip().replace(" ", "+"))
        if moment is None:
            return None
        if timezone.is_naive(moment):
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: 9999-12-31T23:59-01:00 is year 10000
        return None


# The shortest search term. The trigram indexes that serve search on PostgreSQL are built of
# three-character pieces: a shorter term could only be answered by reading every row of the
# workspace (docs/decisions.md).
SEARCH_MIN_LENGTH = 3
# Between the fields of an event's search text (search_events): the ASCII unit separator, which
# no term may hold (FeedFilters refuses it, as it refuses NUL), so a term is found within one
# field and never across two. Metadata's JSON text cannot hold it (JSON writes it \u001f).
SEARCH_SEPARATOR = "\x1f"


@dataclass
class FeedFilters:
    """The filter bar, parsed from query parameters; unknown values are dropped, never errors."""

    source: str = ""
    status: str = ""
    category: str = ""
    event_type: str = ""
    q: str = ""
    range: str = ""
    since: datetime | None = None
    until: datetime | None = None
    after: datetime | None = None
    before: datetime | None = None
    limit: int = FEED_PAGE_SIZE
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_query(cls, params, now: datetime | None = None) -> FeedFilters:
        now = now or timezone.now()
        f = cls(
            source=params.get("source", "").strip(),
            status=params.get("status", "").strip(),
            category=params.get("category", "").strip(),
            event_type=params.get("eventType", "").strip(),
            q=params.get("q", "").strip()[:200],
            range=params.get("range", "").strip(),
        )
        if f.status and f.status not in EventStatus.values:
            f.errors.append(f"status must be one of {', '.join(EventStatus.values)}")
            f.status = ""
        if f.category and f.category not in Category.values:
            f.errors.append(f"category must be one of {', '.join(Category.values)}")
            f.category = ""
        if f.range and f.range not in RANGES:
            f.errors.append(f"range must be one of {', '.join(RANGES)}")
            f.range = ""
        if f.q and len(f.q) < SEARCH_MIN_LENGTH:
            f.errors.append(f"q must be at least {SEARCH_MIN_LENGTH} characters")
            f.q = ""
        # PostgreSQL refuses NUL in text: a filter holding one can match nothing, say so.
        for name, attr in (("source", "source"), ("eventType", "event_type"), ("q", "q")):
            if "\x00" in getattr(f, attr):
                f.errors.append(f"{name} must not contain a NUL character")
                setattr(f, attr, "")
        # The separator of the fields search_events reads as one text: a term holding it
        # could match across two fields.
        if SEARCH_SEPARATOR in f.q:
            f.errors.append("q must not contain a unit separator character (U+001F)")
            f.q = ""
        for name in ("since", "until", "after", "before"):
            raw = params.get(name)
            value = _instant(raw)
            if raw and value is None:
                f.errors.append(
                    f"{name} must be an ISO 8601 instant from 0001-01-01 to 9999-12-31 in UTC"
                )
            setattr(f, name, value)
        if f.range and f.since is None:
            f.since = now - RANGES[f.range]
        try:
            f.limit = max(1, min(int(params.get("limit", FEED_PAGE_SIZE)), FEED_MAX_PAGE_SIZE))
        except ValueError:
            f.limit = FEED_PAGE_SIZE
        return f

    @property
    def active(self) -> bool:
        """Whether anything narrows the feed (the page then filters live rows too)."""
        return any([self.source, self.status, self.category, self.event_type, self.q,
                    self.since, self.until])

    def as_query(self) -> dict[str, str]:
        """The filters as query parameters (links, the page's JS)."""
        out = {"source": self.source, "status": self.status, "category": self.category,
               "eventType": self.event_type, "q": self.q, "range": self.range}
        if self.since and not self.range:
            out["since"] = self.since.isoformat()
        if self.until:
            out["until"] = self.until.isoformat()
        return {k: v for k, v in out.items() if v}


# Free-text search (`q`): a case-insensitive substring, % and _ taken literally, of an event's
# message, externalId or metadata (its JSON text), and of a timeline event's worker (display
# name or external id) or metadata. Django's icontains writes UPPER(expression::text) LIKE
# UPPER('%term%') with the term escaped. On PostgreSQL a pg_trgm GIN index on exactly that
# expression serves it: for events, one index on the three fields joined into one text
# (ingest migration 0007), for the timeline and workers one per column (migration 0005). A term
# that matches little is then found through the indexes rather than by reading the
# workspace's rows, and one that matches much by reading the newest rows until the page is
# full; a term that mixes rare words with common ones asks the index for its rare words only
# (holds). SQLite reads the rows. tests/dashboard/test_search.py and test_search_rare_words.py
# check the plans: change these together with a migration.
SEARCH_WORKERS_MAX = 1000
# The indexes (ingest migrations 0007 and 0005) whose statistics say which words are common.
EVENT_SEARCH_INDEX = "event_search_trgm"
TIMELINE_SEARCH_INDEX = "timeline_metadata_trgm"


class Joined(Func):
    """Texts joined with ||: immutable, so PostgreSQL can index it (concat() is not)."""

    template = "(%(expressions)s)"
    arg_joiner = " || "
    output_field = TextField()


def event_search_text() -> Func:
    """An event's message, externalId and metadata's JSON text as one text, SEARCH_SEPARATOR
    between them: what search_events matches.

    Defined once, here. Ingest migration 0007 indexes UPPER() of the same expression written
    as SQL: a migration is history, so it keeps its own copy rather than importing this one
    (which would rewrite history on fresh databases and leave existing ones with the old index
    when this changes). A PostgreSQL-only index cannot live in Event.Meta.indexes, where
    makemigrations would copy the expression: Django's schema editor runs whatever an index's
    create_sql returns, so no index class can do nothing on SQLite. The EXPLAIN tests in
    tests/dashboard/test_search.py fail when the two differ; a change here needs a migration
    that builds the new index and drops the old one.
    message and external_id are NOT NULL; metadata may be NULL, which || would spread.
    """
    separator = Value(SEARCH_SEPARATOR, output_field=TextField())
    return Joined(
        F("message"), separator, F("external_id"), separator,
        Coalesce(Cast("metadata", TextField()), Value("", output_field=TextField())),
    )


def holds(expression: Any, term: str, index: str) -> list[Lookup]:
    """Conditions that `expression` holds `term`: case-insensitive, % and _ taken literally.

    The term itself; on PostgreSQL, when the index's statistics say the term mixes rare words
    with common ones, its rare words instead, which `index` answers, and the whole term checked
    on the rows found, through an expression the index does not cover (`|| ''`) so that the
    planner does not hand the common words to the index as well (workspaces/search_plan.py).
    """
    rare = search_plan.rare_words(index, term) if connection.vendor == "postgresql" else None
    if rare is None:
        return [IContains(expression, term)]
    checked = Joined(expression, Value("", output_field=TextField()))
    return [*(IContains(expression, word) for word in rare), IContains(checked, term)]


def search_events(qs: QuerySet, term: str) -> QuerySet:
    """Ingest-API events whose message, externalId or metadata holds `term`.

    `term` must not hold SEARCH_SEPARATOR (FeedFilters refuses it): then it matches within one
    field only.
    """
    return qs.filter(*holds(event_search_text(), term, EVENT_SEARCH_INDEX))


def matching_workers(workspace: Workspace, term: str) -> QuerySet:
    """The ids of the workspace's workers whose display name or external id holds `term`."""
    return Worker.objects.filter(workspace=workspace).filter(
        Q(display_name__icontains=term) | Q(external_id__icontains=term)
    ).values_list("id", flat=True)


def search_timeline(qs: QuerySet, workspace: Workspace, term: str) -> QuerySet:
    """Timeline events whose worker's name or external id, or whose metadata, holds `term`.

    Timeline events have no message: the worker stands in for it, externalId is the worker's.
    The workspace's matching workers are looked up first (their own indexes), so the timeline
    is read by a list of ids the database can look up by index, not through a join; past
    SEARCH_WORKERS_MAX of them the term is common and a subquery serves as well.
    """
    workers = matching_workers(workspace, term)
    worker_ids: QuerySet | list[int] = list(workers[: SEARCH_WORKERS_MAX + 1])
    if len(worker_ids) > SEARCH_WORKERS_MAX:
        worker_ids = workers
    metadata = holds(Cast("metadata", TextField()), term, TIMELINE_SEARCH_INDEX)
    return qs.filter(Q(worker_id__in=worker_ids) | Q(*metadata))


def _bounded(qs: QuerySet, workspace: Workspace, f: FeedFilters, now: datetime) -> QuerySet:
    """Tenant, retention and time bounds shared by both kinds."""
    qs = qs.filter(workspace=workspace, received_at__gte=retention_cutoff(workspace, now))
    if f.source:
        # By the source's own id, looked up first: the planner then knows how many rows that
        # source has and reads its (source, received_at) index newest first; through a join on
        # public_id it guessed, and sorted every row of a busy source (seconds at 15M rows).
        source_id = (Source.objects.filter(workspace=workspace, public_id=f.source)
                     .values_list("id", flat=True).first())
        qs = qs.filter(source_id=source_id) if source_id is not None else qs.none()
    if f.event_type:
        # A prefix ("deploy." finds deploy.started and deploy.finished): LIKE 'deploy.%', with
        # % and _ escaped, which an index on event_type could serve; never a contains scan.
        qs = qs.filter(event_type__startswith=f.event_type)
    if f.since:
        qs = qs.filter(received_at__gte=f.since)
    if f.until:
        qs = qs.filter(received_at__lt=f.until)
    if f.after:
        # Inclusive: rows sharing the newest instant the page has are re-sent; it dedupes by id.
        qs = qs.filter(received_at__gte=f.after)
    if f.before:
        # Inclusive for the same reason: "load older" must not skip rows sharing an instant.
        qs = qs.filter(received_at__lte=f.before)
    return qs


# The feed's order; the id breaks ties between rows received in the same instant.
NEWEST_FIRST = ("-received_at", "-id")


def events_query(workspace: Workspace, f: FeedFilters, now: datetime) -> QuerySet | None:
    """Ingest-API events matching the filters, or None when a filter excludes the kind."""
    if f.category:
        return None
    qs = _bounded(Event.objects.all(), workspace, f, now)
    if f.status:
        qs = qs.filter(status=f.status)
    if f.q:
        qs = search_events(qs, f.q)
    return qs.select_related("source").order_by(*NEWEST_FIRST)


def timeline_query(workspace: Workspace, f: FeedFilters, now: datetime) -> QuerySet | None:
    """v1 timeline events matching the filters, or None when a filter excludes the kind."""
    if f.status:
        return None
    qs = _bounded(TimelineEvent.objects.all(), workspace, f, now)
    if f.category:
        qs = qs.filter(category=f.category)
    if f.q:
        qs = search_timeline(qs, workspace, f.q)
    return qs.select_related("source", "worker").order_by(*NEWEST_FIRST)


def newest(qs: QuerySet, limit: int, order: tuple[str, ...] = NEWEST_FIRST) -> QuerySet:
    """The first `limit` rows of `qs` in `order`, their ids found first, then the rows by id.

    The ids' query names only the filtered columns and the id, which the type filter's indexes
    carry (ingest.0008): where the filters match few of the rows in an index's range,
    PostgreSQL tests them inside the index (an index-only scan) and then reads only the rows
    shown, instead of a table row per candidate (a type, a source, a status and 7 days at
    15,000,000 events: 52 ms p95 against 230; docs/performance.md). Without such a filter the
    ids come from the (workspace, received_at) index.
    """
    ids = qs.order_by(*order).values("id")[:limit]
    return qs.model.objects.filter(id__in=ids).order_by(*order)


# The workers page (ingest/views.py) imports it under this name.
present_timeline = present_timeline_event


def feed(workspace: Workspace, f: FeedFilters, now: datetime | None = None) -> list[dict]:
    """Newest first, both kinds merged by receivedAt, at most `f.limit` items."""
    now = now or timezone.now()
    streams = []
    # As tuples, not model instances: the same items for half the CPU (ingest/present.py).
    events = events_query(workspace, f, now)
    if events is not None:
        rows = newest(events, f.limit).values_list(*EVENT_ITEM_FIELDS)
        streams.append(event_row_item(row) for row in rows)
    timeline = timeline_query(workspace, f, now)
    if timeline is not None:
        rows = newest(timeline, f.limit).values_list(*TIMELINE_ITEM_FIELDS)
        streams.append(timeline_row_item(row) for row in rows)
    # By instant, not by string: iso() drops a zero microsecond part, which would sort wrongly.
    merged = merge(*streams, key=lambda item: datetime.fromisoformat(item["receivedAt"]), reverse=True)
    return [item for _, item in zip(range(f.limit), merged, strict=False)]


def find_item(workspace: Workspace, item_id: str) -> dict | None:
    """One event of either kind by public id, inside the workspace and its retention."""
    if not (is_event_id(item_id) or is_public_id(item_id, "tle")):
        return None  # junk (a NUL byte, say) never reaches the database
    cutoff = retention_cutoff(workspace)
    if item_id.startswith("tle_"):
        found = (TimelineEvent.objects.select_related("source", "worker")
                 .filter(workspace=workspace, public_id=item_id, received_at__gte=cutoff).first())
        return present_timeline_event(found) if found else None
    found = (Event.objects.select_related("source")
             .filter(workspace=workspace, public_id=item_id, received_at__gte=cutoff).first())
    return present_event(found) if found else None


CHART_STEP = BUCKET


def hourly_chart(workspace: Workspace, now: datetime | None = None) -> dict[str, Any]:
    """Events by status (and v1 timeline events) per quarter hour, over the last 24 whole UTC
    hours and the current one (100 quarters), so the page can sum them into the browser's own
    hours: a quarter hour is the finest step of any zone's offset (+05:30, +05:45).

    Read from the counters the database keeps as rows are stored (stats.EventCount), never by
    counting rows. Retention applies per quarter hour: one is shown when it starts at or after
    the retention cut-off, so nothing past retention is ever counted in (the quarter hour
    holding the cut-off instant is left out whole).
    """
    now = now or timezone.now()
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=24)
    count = 25 * 4
    start = max(first, retention_cutoff(workspace, now))
    series = {s: [0] * count for s in [*EventStatus.values, Kind.TIMELINE]}
    rows = (
        EventCount.objects.filter(workspace=workspace, bucket__gte=start,
                                  bucket__lt=first + count * CHART_STEP)
        .values_list("bucket", "kind").annotate(n=Sum("count")).order_by()
    )
    for bucket, kind, n in rows:
        series[kind][(bucket - first) // CHART_STEP] += n
    return {"start": iso(first), "stepSeconds": int(CHART_STEP.total_seconds()), "series": series}


def rejections_summary(workspace: Workspace, now: datetime | None = None) -> list[dict]:
    """Refused requests per (source, code) over the last 24 hours, most first."""
    now = now or timezone.now()
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    rows = (
        Rejection.objects.filter(workspace=workspace, hour__gte=since)
        .values("source__public_id", "source__name", "code")
        .annotate(total=Sum("count"))
        .order_by("-total", "code")
    )
    return [
        {"source": {"id": r["source__public_id"], "name": r["source__name"]},
         "code": r["code"], "count": r["total"]}
        for r in rows
    ]
