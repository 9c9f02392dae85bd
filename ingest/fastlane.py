"""The fast lane: the common case of both ingest APIs on the event loop, as a second executor
of the pipeline's decisions.

Every rule is the pipeline's: a request's headers are read as Django reads them
(ackly.apirules' `request_headers`: a repeated header joined), and it is checked by the
pipeline's functions (sources.auth's `bearer_secret`, `key_refusal` and `past_failure_limit`,
the endpoint's `plan_refusal`, ingest.idempotency's `idempotency_key`, ingest.jsonbody's
`check_size` and `parse_strict_json`, `validate_event` / `events_of`); Django's own middleware
decides the Host, the HTTPS redirect and the security headers (ackly.apirules). An accepted
event is the pipeline's `AcceptedEvent` (ingest.decisions: its row, its idempotency record, its
201 body, its live item), written with the pipeline's SQL pieces (the quota statement, the
record and event INSERTs), a batch's workers found by resolve_actors' own statement
(workspaces.services.find_workers_statement), and answered with ingest.responses' headers and
the request id of ackly.requestid's rule (`request_id_of`). What is this module's own is how
the decisions are written:

`POST /api/ingest`: many requests per commit. `POST /api/v1/ingest/events`: a batch whose
events are all valid and whose workers all exist, in a transaction of its own (see
`_Committer._write_batch`).

ingest.pipeline serves one request at a time in a sync view: each pays its own Redis round
trip, its own statement, its own COMMIT and its own PUBLISH, and under an ASGI server its own
hop to a thread. The fast lane serves the same requests in the server's event loop and writes
every request that arrived while the previous group was being written, together:

  1. one Redis round trip   every key's cached look-up (read on every group, so a revocation
                            holds at once across processes) and both burst counters of every
                            request (INCR + EXPIRE NX, the keys `ingest.ratelimits` uses)
  2. one statement          per workspace and billing period: the quota UPDATE for all of its
                            events, their idempotency records and the events, as CTEs
  3. one COMMIT             for the group; a COMMIT that fails answers 500 (its outcome is
                            unknown: the request is never written a second time). A key whose
                            last_used_at is due is written after it, in a transaction of its own
  4. one PUBLISH            per workspace, carrying all of its events (SPEC §6's `events`
                            message with several items, as a room's shared frame carries)

Only the common case is served here. Everything else is handed, with its body, to the Django
application unchanged, which answers it exactly as before (ingest.pipeline): a dry run or any
query string, a body over the limit or not valid, a header that is missing or malformed, a key
that is not in the shared cache yet or is revoked or expired, a burst window exceeded, a quota
that does not fit (or no counter row yet this period), an Idempotency-Key already taken, a
Host not allowed, an http request that must be redirected, a plan without the developer API
(v1), a batch with any rejected event or naming a worker that does not exist yet, and any
Redis or PostgreSQL error before COMMIT. A request handed over after its burst windows were
counted carries the counts in its ASGI scope (`BURST_COUNTED_SCOPE_KEY`), so the pipeline
never counts it twice. A key not in the shared cache is looked up here first (then the
pipeline finds it cached), except for an address past AUTH_FAILURE_LIMIT: its failure counter
is read in the same round trip as the keys, and the pipeline answers its 429 without a query.

One exception: no connection of the fast lane's pool within DB_POOL_TIMEOUT of the request's
arrival (or none of Django's for a key look-up) is answered here, with the pipeline's 500
envelope and its one log line (`ackly.errors.log_database_unavailable`), for every request of
the group at once: handed over, it would wait for Django's pool as long again.

It runs only where it can keep every guarantee: PostgreSQL, Redis (cache and pub/sub channel
layer) and `INGEST_FAST_LANE` on. Elsewhere (SQLite, no Redis: development and pass 1 of CI)
every request goes to the pipeline.

The 201 or 202 it sends carries the same body and headers as the pipeline's (the API
middleware's, X-Request-Id, X-Quota-*, RateLimit-*): tests/test_apirules.py and
tests/ingest/test_fastlane.py compare them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict, cast, overload

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import caches
from django.db import close_old_connections
from django.urls import resolve
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from ackly.apirules import ApiRules, Headers, asgi_headers, request_headers, request_of
from ackly.cache import queue_incr_windows
from ackly.clientip import client_address
from ackly.compat import cache_value, group_channel
from ackly.errors import (
    ERROR_CODES,
    APIError,
    database_unavailable,
    error_response,
    log_database_unavailable,
)
from ackly.metrics import (
    FASTLANE,
    events_accepted,
    observe_batch_commit,
    observe_group,
    request_served,
)
from ackly.requestid import REQUEST_ID_HEADER, bind_tenant, request_id_of, set_request_id
from billing.services import RESERVE_ALL_SQL, QuotaState, reservation_params
from ingest.api import IngestView, validate_event
from ingest.api_v1 import EventsView, batch_body
from ingest.broadcast import MESSAGE_TYPE, layer_prefix, serialized, warn_failed, workspace_group
from ingest.decisions import CREATED, EVENT_COLUMNS, EVENT_INSERT, AcceptedEvent
from ingest.idempotency import RECORD_COLUMNS, RECORD_INSERT, Claim, idempotency_key, request_hash
from ingest.jsonbody import check_size, parse_strict_json
from ingest.pipeline import BURST_COUNTED_SCOPE_KEY, IngestEndpoint, body_text
from ingest.present import events_message, source_ref, timeline_message
from ingest.ratelimits import BurstState, burst_state, burst_window, window_timeout
from ingest.responses import JSON_CONTENT_TYPE, state_headers
from ingest.services import TIMELINE_COLUMNS, TIMELINE_TABLE_COLUMNS, timeline_rows
from ingest.validation_v1 import events_of, validate_event_list
from sources.auth import bearer_secret, failure_counter, key_refusal, past_failure_limit
from sources.keys import KeyContext, digest_of, key_cache_name, lookup_key
from sources.services import claim_touches, touch_statement
from workspaces.services import WorkerRow, find_workers_statement, index_workers

logger = logging.getLogger(__name__)

_INGEST_PATH, _BATCH_PATH = "/api/ingest", "/api/v1/ingest/events"
PATHS = frozenset({_INGEST_PATH, _INGEST_PATH + "/"})
BATCH_PATHS = frozenset({_BATCH_PATH, _BATCH_PATH + "/"})
# Each endpoint's path, resolved once to the URL name the pipeline's metrics label it by.
_ENDPOINT_PATHS: dict[type[IngestEndpoint], str] = {
    IngestView: _INGEST_PATH, EventsView: _BATCH_PATH,
}
# At most this many requests share one group (one statement per workspace, one COMMIT).
MAX_GROUP = 256
# Key look-ups kept per process (each is re-checked against Redis on every group).
MAX_CACHED_KEYS = 10_000
# The wait for one of the fast lane's own connections, counted from the request's arrival
# (DB_POOL_TIMEOUT when Django's pool is configured): past it the request is answered 500.
POOL_TIMEOUT_SECONDS = 3.0
POOL_MAX_SIZE = 3


class _Handover(Exception):
    """The request goes to the Django application (with its burst counts, when counted)."""

    def __init__(self, counted: tuple[int, list[int]] | None = None) -> None:
        self.counted = counted


@dataclass(eq=False)
class _Request:
    """What both lanes know of a request before its key is read: checked, parsed, waiting."""

    digest: str
    idem_key: str | None
    request_hash: str | None
    received_at: datetime
    future: asyncio.Future
    key: KeyContext | None = None
    # Set once its transaction committed: from then on it is never handed over (the pipeline
    # would write it a second time), whatever goes wrong before it is answered.
    committed: bool = False
    start: int = 0
    counts: list[int] | None = None
    burst: BurstState | None = None
    # The peer and X-Forwarded-For, for `address` (read only when the key is not cached).
    peer: str = ""
    forwarded_for: str | None = None
    # What Django's API middleware adds to its answer (ackly.apirules).
    security: Headers = field(default_factory=list)
    arrived: float = field(default_factory=time.monotonic)

    # The pipeline's endpoint that would answer it: its plan check (402 before counting any
    # burst) and its Allow header.
    endpoint: ClassVar[type[IngestEndpoint]] = IngestView

    def admissible(self, key: KeyContext) -> bool:
        """Whether the fast lane may count and serve this request for `key`: the pipeline's
        checks of a known key and of its plan pass."""
        return key_refusal(key) is None and self.endpoint.plan_refusal(key.limits) is None

    def hand_over(self) -> None:
        if self.committed:
            self.answer(_AMBIGUOUS)
        elif not self.future.done():
            counted = None if self.counts is None else (self.start, self.counts)
            self.future.set_exception(_Handover(counted))

    def answer(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def refuse(self, error: BaseException) -> None:
        """No connection in time (`error`): 500 at once, not a handover to wait again."""
        if isinstance(error, PoolTimeout):  # the fast lane's pool: say how long this one waited
            waited = time.monotonic() - self.arrived
            error = PoolTimeout(f"couldn't get a connection after {waited:.2f} sec")
        self.answer(_AMBIGUOUS if self.committed else _Unavailable(error))

    @property
    def address(self) -> str:
        """The client's address by the one rule (ackly.clientip), as the pipeline counts it."""
        return client_address(self.peer, self.forwarded_for)

    def claim(self) -> Claim | None:
        """Its claim on the Idempotency-Key, once its key is known."""
        if self.idem_key is None or self.key is None or self.request_hash is None:
            return None
        return Claim(self.key.source_id, self.idem_key, self.request_hash, self.received_at)


@dataclass(eq=False)
class _Pending(_Request):
    """One single event (`POST /api/ingest`) waiting for its group: its validated fields, then
    the pipeline's decision for it (ingest.decisions)."""

    fields: dict[str, Any] = field(default_factory=dict)
    event: AcceptedEvent | None = None


@dataclass(eq=False)
class _Batch(_Request):
    """One v1 batch (`POST /api/v1/ingest/events`): its `events` array as parsed."""

    events: list[Any] = field(default_factory=list)
    # Made on arrival: its 202 body names it (ackly.requestid's rule: a given id is kept).
    request_id: str = field(default_factory=lambda: request_id_of(None))
    endpoint = EventsView


if TYPE_CHECKING:
    # What `_Committer._admit` returns, for the type checker only: the same objects, their key
    # read and their burst counted (annotations cost the hot path nothing; checks would).
    class _AdmittedPending(_Pending):
        key: KeyContext
        burst: BurstState
        event: AcceptedEvent

    class _AdmittedBatch(_Batch):
        key: KeyContext
        burst: BurstState


class _Common(TypedDict):
    """The fields `FastLane._request` gives either kind of request."""

    peer: str
    forwarded_for: str | None
    security: Headers
    digest: str
    idem_key: str | None
    request_hash: str | None
    received_at: datetime
    future: asyncio.Future[Any]


@dataclass(frozen=True)
class _Stored:
    """A committed request: what its 201 or 202 reports."""

    status: int
    body: str
    quota: QuotaState
    burst: BurstState
    request_id: str | None = None  # a batch's body names its request id already


_AMBIGUOUS = object()  # COMMIT failed, or a committed request failed after it: answer 500


@dataclass(frozen=True)
class _Unavailable:
    """The database could not serve (no connection in time; or lost at COMMIT, as
    `ackly.errors.database_unavailable` tells): answer the pipeline's 500 with its one log line.
    Handing over would make the request wait for Django's pool a second time."""

    error: BaseException


# --- SQL ------------------------------------------------------------------------------------

_EVENT_TYPES = (  # of EVENT_COLUMNS
    "text", "bigint", "bigint", "text", "text", "text", "text", "text", "float8", "text",
    "timestamptz",
)
_RECORD_TYPES = ("bigint", "text", "text", "int4", "text", "timestamptz")  # of RECORD_COLUMNS


def _unnest(columns: tuple[str, ...], types: tuple[str, ...]) -> str:
    arrays = ", ".join(f"%s::{t}[]" for t in types)
    return f"unnest({arrays}) AS t({', '.join(columns)})"


def _select(columns: tuple[str, ...]) -> str:
    return ", ".join("t.metadata::jsonb" if c == "metadata" else f"t.{c}" for c in columns)


# The statements are the pipeline's pieces, for many rows: the quota statement
# (billing.services.RESERVE_ALL_SQL) as the CTE q, the idempotency records' and the events'
# INSERTs (ingest.idempotency.RECORD_INSERT, ingest.decisions.EVENT_INSERT) joined to q's row,
# so nothing is written when the quota does not fit. A record that is taken is skipped (DO
# NOTHING) and missing from the claimed list: the caller then rolls back and hands that request
# to the pipeline (which replays).
_QUOTA_CTE = f"WITH q AS ({RESERVE_ALL_SQL})"
# A group's single events for one workspace: the quota, the records and the events in ONE
# statement (a few rows: arrays cost less than a second round trip).
_STORE_SQL = (
    f"{_QUOTA_CTE}, r AS ({RECORD_INSERT}SELECT {_select(RECORD_COLUMNS)} "
    f"FROM {_unnest(RECORD_COLUMNS, _RECORD_TYPES)}, q "
    "ON CONFLICT DO NOTHING RETURNING source_id, key), "
    f"e AS ({EVENT_INSERT}SELECT {_select(EVENT_COLUMNS)} FROM {_unnest(EVENT_COLUMNS, _EVENT_TYPES)}, q) "
    "SELECT (SELECT events FROM q), ARRAY(SELECT source_id::text || ' ' || key FROM r)"
)
# A batch: its rows by COPY first (psycopg adapts 500 rows of arrays at ~5x COPY's CPU,
# measured), then the quota and its one record (scalar parameters: its 202 body is ~30 kB),
# so the counter row is locked only until COMMIT. Binary COPY: half the client CPU of text
# COPY per batch (0.78 vs 1.6 ms, measured), and the server parses no text.
_COPY_TIMELINE_SQL = f"COPY {TIMELINE_TABLE_COLUMNS} FROM STDIN (FORMAT BINARY)"
_TIMELINE_COPY_TYPES = (
    "text", "int8", "int8", "int8", "text", "text", "timestamptz", "int4", "jsonb", "text",
    "timestamptz",
)
_METADATA = TIMELINE_COLUMNS.index("metadata")
# They fail with division_by_zero unless the quota was reserved (a row from q) and the record
# claimed (a row from r): plain SQL has no RAISE, and this needs no function.
_RESERVE_OR_FAIL_SQL = f"{_QUOTA_CTE} SELECT (SELECT events FROM q) + 0 / (SELECT count(*) FROM q)"
_RESERVE_AND_CLAIM_OR_FAIL_SQL = (
    f"{_QUOTA_CTE}, r AS ({Claim.INSERT_SQL}q ON CONFLICT DO NOTHING RETURNING 1) "
    "SELECT (SELECT events FROM q) + 0 / ((SELECT count(*) FROM q) * (SELECT count(*) FROM r))"
)
# --- The per-process writer -----------------------------------------------------------------


class _Committer:
    """Groups the requests of one process and writes each group (see the module docstring)."""

    def __init__(self, routes: dict[type[IngestEndpoint], str]) -> None:
        import redis.asyncio
        from channels.layers import get_channel_layer
        from psycopg_pool import AsyncConnectionPool

        self.routes = routes

        db = settings.DATABASES["default"]
        options = {k: v for k, v in db.get("OPTIONS", {}).items() if k not in _NOT_CONNINFO}
        kwargs: dict[str, Any] = {"dbname": db["NAME"], **options}
        for name, value in (("user", db.get("USER")), ("password", db.get("PASSWORD")),
                            ("host", db.get("HOST")), ("port", db.get("PORT"))):
            if value:
                kwargs[name] = str(value)
        pool = db.get("OPTIONS", {}).get("pool")
        self.pool_timeout = float(
            pool.get("timeout", POOL_TIMEOUT_SECONDS) if isinstance(pool, dict)
            else POOL_TIMEOUT_SECONDS
        )
        # One connection writes the groups of single events; the others, batches in flight.
        self.pool = AsyncConnectionPool(
            kwargs=kwargs, min_size=1, max_size=POOL_MAX_SIZE, timeout=self.pool_timeout,
            open=False,
        )
        self.redis = redis.asyncio.Redis.from_url(
            cast(str, settings.REDIS_URL),  # not None: only made once fast_lane_available()
            socket_connect_timeout=0.25, socket_timeout=0.5,
        )
        self.layer = get_channel_layer()
        self.channel_prefix = layer_prefix()
        self.auth_cache = caches["auth"]
        self.burst_cache = caches["default"]
        self.keys: dict[str, tuple[bytes, KeyContext]] = {}
        self.queue: list[_Pending] = []
        self.running = False

    async def open(self) -> None:
        """Start connecting now (in the background), so the first group does not wait."""
        await self.pool.open(wait=False)

    def submit(self, item: _Pending) -> None:
        self.queue.append(item)
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self.queue:
                group, self.queue = self.queue[:MAX_GROUP], self.queue[MAX_GROUP:]
                try:
                    await self._flush(group)
                except Exception:  # noqa: BLE001 - a bug here must not strand the requests
                    logger.exception("fast lane: a group failed; handing it to the pipeline")
                for item in group:
                    item.hand_over()
        finally:
            self.running = False

    @asynccontextmanager
    async def _connection(self, arrived: float):
        """A pooled connection whose transaction is rolled back unless the block committed it:
        psycopg_pool COMMITs a transaction left open when the connection goes back.

        Waited for until `pool_timeout` after `arrived` (the oldest request it serves): a group
        queued behind one that waited does not wait the whole timeout again (PoolTimeout)."""
        left = arrived + self.pool_timeout - time.monotonic()
        async with self.pool.connection(timeout=max(left, 0.001)) as conn:
            try:
                yield conn
            finally:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    with suppress(Exception):  # a broken connection: the pool discards it
                        await conn.rollback()

    # 1. Keys and burst windows: one Redis round trip (two when keys are new to this process).
    @overload
    async def _admit(self, group: list[_Pending]) -> list[_AdmittedPending]: ...
    @overload
    async def _admit(self, group: list[_Batch]) -> list[_AdmittedBatch]: ...
    async def _admit(self, group: Sequence[_Request]) -> list[Any]:
        missing: dict[str, list[_Request]] = defaultdict(list)
        for item in group:
            if item.digest not in self.keys:
                missing[item.digest].append(item)
        if missing:
            await self._load_keys(missing)
        digests = list({item.digest for item in group if item.digest in self.keys})
        if not digests:
            for item in group:
                item.hand_over()  # the pipeline looks the keys up, or answers 401
            return []
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.mget([self._key_name(d) for d in digests])
        counted: list[_Request] = []
        window = window_timeout(settings.RATELIMIT_WINDOW_SECONDS)
        for item in group:
            cached = self.keys.get(item.digest)
            if cached is None or not item.admissible(cached[1]):
                item.hand_over()  # the pipeline looks it up, or answers 401/402 (nothing counted)
                continue
            key = cached[1]
            item.start, names = burst_window(key, key.limits, now)
            queue_incr_windows(pipe, [self.burst_cache.make_key(name) for name in names], window)
            counted.append(item)
        if not counted:
            return []
        replies = await pipe.execute()
        fresh = dict(zip(digests, replies[0], strict=True))
        admitted: list[_Request] = []
        for n, item in enumerate(counted):
            item.counts = [replies[1 + 4 * n], replies[3 + 4 * n]]
            raw = fresh.get(item.digest)
            if raw is None:  # forgotten since (revoked, rotated, plan changed): look it up again
                self.keys.pop(item.digest, None)
                item.hand_over()
                continue
            if raw != self.keys[item.digest][0]:
                self._remember(item.digest, raw)
            item.key = key = self.keys[item.digest][1]
            if not item.admissible(key):
                item.hand_over()
                continue
            item.burst = burst_state(key.limits, item.start, item.counts, now)
            if item.burst.exceeded:
                item.hand_over()  # the pipeline answers 429 with these counts
                continue
            admitted.append(item)
        return admitted

    async def _load_keys(self, missing: dict[str, list[_Request]]) -> None:
        """Keys new to this process, from the shared cache, with the failure counters of their
        requests' addresses in the same round trip. A key not cached is looked up in the
        database unless every request naming it comes from an address past AUTH_FAILURE_LIMIT
        (sources.auth): those are handed over uncached and the pipeline answers its 429 (one
        rule, one place) without a query."""
        digests = list(missing)
        now = time.time()
        counters = {
            item.address: failure_counter(item.address, now)[0]
            for items in missing.values() for item in items
        }
        addresses = list(counters)
        # Bytes (decode_responses is off): redis-py's types cannot tell, so they say bytes | str.
        values = cast("list[bytes | None]", await self.redis.mget(
            [self._key_name(d) for d in digests]
            + [self.burst_cache.make_key(counters[a]) for a in addresses]
        ))
        blocked = {
            address for address, raw in zip(addresses, values[len(digests):], strict=True)
            if raw is not None and past_failure_limit(cache_value(raw))
        }
        unavailable: BaseException | None = None
        for digest, raw in zip(digests, values[:len(digests)], strict=True):
            items = missing[digest]
            if raw is None and not all(item.address in blocked for item in items):
                if unavailable is None:
                    try:
                        if await _look_up(digest):
                            raw = cast("bytes | None", await self.redis.get(self._key_name(digest)))
                    except Exception as exc:
                        if not _no_connection_in_time(exc):
                            raise
                        unavailable = exc  # the other look-ups would wait for it again
                if unavailable is not None:
                    for item in items:
                        item.refuse(unavailable)
            if raw is not None:
                self._remember(digest, raw)

    def _key_name(self, digest: str) -> str:
        return self.auth_cache.make_key(key_cache_name(digest))

    def _remember(self, digest: str, raw: bytes) -> None:
        if len(self.keys) >= MAX_CACHED_KEYS:
            self.keys.clear()
        self.keys[digest] = (raw, cache_value(raw))

    async def _flush(self, group: list[_Pending]) -> None:
        try:
            admitted = await self._admit(group)
        except Exception as exc:  # noqa: BLE001 - Redis down or slow: the pipeline copes (fails open)
            _warn("fast lane: admitting a group failed; handing it to the pipeline", exc)
            return
        # A key taken twice in one group: the second waits for the pipeline (it replays).
        seen: set[tuple[int, str]] = set()
        ready: list[_AdmittedPending] = []
        for item in admitted:
            if item.idem_key is not None:
                claim = (item.key.source_id, item.idem_key)
                if claim in seen:
                    item.hand_over()
                    continue
                seen.add(claim)
            item.event = AcceptedEvent(item.key, item.fields, item.received_at, item.claim())
            ready.append(item)
        for _attempt in range(2):
            if not ready:
                return
            refused = await self._store(ready)
            if refused is None:
                return
            for item in refused:
                item.hand_over()
            ready = [item for item in ready if item not in refused]

    # 2-4. The statements, the COMMIT, the broadcast.
    async def _store(self, ready: list[_AdmittedPending]) -> set[_AdmittedPending] | None:
        """Write `ready` in one transaction; None when done, else the requests that could not
        be (the transaction was rolled back: the caller retries the others)."""
        shares: dict[tuple[int, datetime], list[_AdmittedPending]] = defaultdict(list)
        for item in ready:
            start, _end = item.key.limits.period(item.received_at)
            shares[(item.key.workspace_id, start)].append(item)
        refused: set[_AdmittedPending] = set()
        stored: list[tuple[_AdmittedPending, _Stored]] = []
        try:
            arrived = min(item.arrived for item in ready)
            async with self._connection(arrived) as conn, conn.cursor() as cursor:
                # Sorted: concurrent groups of several processes lock counters in one order.
                for (workspace_id, start), items in sorted(shares.items()):
                    await cursor.execute(_STORE_SQL, _store_params(workspace_id, start, items))
                    used, claimed = await cursor.fetchone()
                    if used is None:
                        refused.update(items)
                        continue
                    claimed = set(claimed)
                    limits = items[0].key.limits
                    end = limits.period(items[0].received_at)[1]
                    first = used - len(items)
                    for n, item in enumerate(items):
                        if item.idem_key is not None and (
                            f"{item.key.source_id} {item.idem_key}" not in claimed
                        ):
                            refused.add(item)
                        quota = QuotaState(limits.monthly_event_limit, first + n + 1, 1, end)
                        stored.append((item, _Stored(CREATED, item.event.body, quota, item.burst)))
                if refused:
                    return refused  # rolled back by _connection
                started = time.perf_counter()
                try:
                    await conn.commit()
                except Exception as exc:  # noqa: BLE001 - the outcome is unknown: never write it again
                    outcome = _commit_failed(exc)
                    for item in ready:
                        item.answer(outcome)
                    return None
                for item in ready:
                    item.committed = True
                observe_group(len(ready), time.perf_counter() - started)
                events_accepted(self.routes[IngestView], len(ready), FASTLANE)
                await _touch(conn, [item.key.key_id for item in ready], datetime.now(UTC))
        except Exception as exc:  # noqa: BLE001 - PostgreSQL down or slow: nothing was committed
            if any(item.future.done() for item in ready):
                return None
            if _no_connection_in_time(exc):  # the whole group, at once
                for item in ready:
                    item.refuse(exc)
                return None
            _warn("fast lane: PostgreSQL failed before COMMIT; handing the group over", exc)
            return set(ready)
        await self._broadcast(ready)
        for item, outcome in stored:
            item.answer(outcome)
        return None

    # A v1 batch: admitted like a group of one, then written in its own transaction (it holds
    # up to 500 events already); batches in flight run side by side, one connection each.
    def submit_batch(self, batch: _Batch) -> None:
        asyncio.get_running_loop().create_task(self._run_batch(batch))

    async def _run_batch(self, batch: _Batch) -> None:
        try:
            admitted = await self._admit([batch])
            if admitted:
                await self._write_batch(admitted[0])
        except Exception as exc:  # noqa: BLE001 - Redis down, or a bug: the pipeline answers
            if _no_connection_in_time(exc):
                batch.refuse(exc)
            else:
                _warn("fast lane: a batch failed; handing it to the pipeline", exc)
        finally:
            batch.hand_over()  # unless answered: 402, rejected events, a new worker, a refusal

    async def _write_batch(self, batch: _AdmittedBatch) -> None:
        key = batch.key
        limits = key.limits
        now = batch.received_at
        valid = validate_event_list(batch.events, key.allowed_event_types, now)
        if valid.rejections:
            return  # the pipeline answers 207, or the first rejection's error
        start, end = limits.period(now)
        async with self._connection(batch.arrived) as conn, conn.cursor() as cursor:
            # resolve_actors' look-up (its statement), without its creating: a batch naming a
            # new worker is handed over. Actors' emails are lower-cased by validation.
            await cursor.execute(*find_workers_statement(
                key.workspace_id, {(e.actor.kind, e.actor.value) for e in valid.events}
            ))
            workers = index_workers([WorkerRow(*row) for row in await cursor.fetchall()])
            accepted = [
                (event, workers.get((event.actor.kind, event.actor.value)))
                for event in valid.events
            ]
            if any(worker is None for _, worker in accepted):
                return  # a worker to create, or one not found: the pipeline decides
            rows = timeline_rows(
                accepted, workspace_id=key.workspace_id, source_id=key.source_id,
                source=source_ref(key.source_public_id, key.source_slug, key.source_name),
                now=now, request_id=batch.request_id, adapt_time=_same,
            )
            body = body_text(batch_body(batch.request_id, rows.results, []))
            async with cursor.copy(_COPY_TIMELINE_SQL) as copy:
                copy.set_types(_TIMELINE_COPY_TYPES)
                for row in rows.rows:
                    await copy.write_row(_binary_row(row))
            # The counter row is locked from the reservation to COMMIT: both go in one round
            # trip (a reservation that cannot be made fails its statement, so the COMMIT rolls
            # back), never waiting on this event loop in between.
            started = time.perf_counter()
            try:
                async with conn.pipeline():
                    await cursor.execute(*_reservation(batch, start, len(rows.rows), body))
                    await conn.commit()
                batch.committed = True
                observe_batch_commit(time.perf_counter() - started)
                events_accepted(self.routes[EventsView], len(rows.rows), FASTLANE)
            except psycopg.errors.DivisionByZero:  # not reserved: the quota (k of n), or the key
                return
            except Exception as exc:  # noqa: BLE001 - the outcome is unknown: never write it again
                batch.answer(_commit_failed(exc))
                return
            (used,) = await cursor.fetchone()
            await _touch(conn, [key.key_id], now)
        await self._publish({key.workspace_public_id: timeline_message(rows.items)})
        quota = QuotaState(limits.monthly_event_limit, used, len(rows.rows), end)
        batch.answer(_Stored(202, body, quota, batch.burst, batch.request_id))

    async def _broadcast(self, ready: list[_AdmittedPending]) -> None:
        by_workspace: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for item in ready:
            by_workspace[item.key.workspace_public_id].append(item.event.item())
        await self._publish(
            {workspace: events_message(items) for workspace, items in by_workspace.items()}
        )

    async def _publish(self, messages: dict[str, dict[str, Any]]) -> None:
        """One live message per workspace (public id), in one Redis round trip."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for workspace, payload in messages.items():
                message = {"type": MESSAGE_TYPE, "payload": payload}
                pipe.publish(
                    group_channel(self.channel_prefix, workspace_group(workspace)),
                    serialized(self.layer, message),
                )
            await pipe.execute()
        except Exception:  # noqa: BLE001 - committed already: the dashboards catch up over HTTP
            warn_failed(", ".join(messages))


def _no_connection_in_time(exc: BaseException) -> bool:
    """No pooled connection (the fast lane's, or Django's for a key look-up) came within the
    timeout: the request has waited its time, and the pipeline would wait as long again. A
    connection lost or refused mid-way failed fast: the request is handed over (the database
    may be back, as after a restart, when the pool still holds connections to the old one)."""
    return isinstance(exc, PoolTimeout) or isinstance(exc.__cause__, PoolTimeout)


def _warn(message: str, exc: BaseException) -> None:
    """A failure the pipeline answers for: one line when it is the database being unavailable
    (an outage would flood the log with tracebacks that only say where the request was)."""
    reason = database_unavailable(exc)
    if reason is None:
        logger.warning(message, exc_info=exc)
    else:
        logger.warning("%s: %s", message, reason)


def _commit_failed(exc: BaseException) -> Any:
    """The answer to requests whose COMMIT failed: 500 either way (the outcome is unknown, so
    never written a second time); a lost database is one log line per request, not a trace."""
    if database_unavailable(exc) is not None:
        return _Unavailable(exc)
    logger.exception("fast lane: COMMIT failed; answering 500")
    return _AMBIGUOUS


@sync_to_async
def _look_up(digest: str) -> bool:
    """The key's look-up from the database into the shared cache (sources.keys.lookup_key),
    on the thread Django's sync views use; whether the key exists."""
    try:
        return lookup_key(digest) is not None
    finally:
        close_old_connections()


async def _touch(conn: psycopg.AsyncConnection, key_ids: list[int], now: datetime) -> None:
    """Record the keys' use (those due) after their request's transaction committed, in one of
    its own: statement and COMMIT in one round trip. The write transactions lock counter rows
    and never key rows, so no two of them wait on each other in a cycle. Failing here fails
    nothing: the requests are stored, and the key is written again an interval later."""
    due = claim_touches(key_ids, now)
    if not due:
        return
    try:
        async with conn.pipeline():
            await conn.execute(*touch_statement(due, now))
            await conn.commit()
    except Exception as exc:  # noqa: BLE001 - committed already: never answer 500 for last_used_at
        _warn("fast lane: recording the keys' last use failed", exc)


_NOT_CONNINFO = frozenset({"pool", "server_side_binding", "isolation_level", "assume_role"})


def _store_params(workspace_id: int, start: datetime, items: list[_AdmittedPending]) -> list[Any]:
    """_STORE_SQL's parameters: the quota's, then each record column's and each event column's
    values as an array (the decisions' rows, transposed)."""
    records = [r for r in (item.event.record() for item in items) if r is not None]
    record_columns = [list(c) for c in zip(*records, strict=True)] or [[] for _ in RECORD_COLUMNS]
    event_columns = [list(c) for c in zip(*[item.event.row() for item in items], strict=True)]
    return [
        *reservation_params(items[0].key.limits, len(items), start), *record_columns,
        *event_columns,
    ]


def _binary_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A timeline row for binary COPY: its metadata is compact JSON text already."""
    metadata = row[_METADATA]
    if metadata is None:
        return row
    return (*row[:_METADATA], Jsonb(metadata, dumps=_as_is), *row[_METADATA + 1 :])


def _as_is(text: str) -> str:
    return text


def _same(moment: datetime) -> datetime:
    return moment  # psycopg sends aware datetimes as timestamptz


def _reservation(batch: _AdmittedBatch, start: datetime, n: int, body: str) -> tuple[str, list]:
    """A batch's reservation (and record) statement and its parameters."""
    quota = reservation_params(batch.key.limits, n, start)
    claim = batch.claim()
    if claim is None:
        return _RESERVE_OR_FAIL_SQL, quota
    return _RESERVE_AND_CLAIM_OR_FAIL_SQL, [*quota, *claim.values(202, body)]


# --- The ASGI side --------------------------------------------------------------------------


def fast_lane_available() -> bool:
    """PostgreSQL, the Redis cache and the Redis pub/sub layer, and the setting on."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    from ackly.cache import AcklyRedisCache

    if not settings.INGEST_FAST_LANE or not settings.REDIS_URL:
        return False
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return False
    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    return (
        isinstance(caches["auth"], AcklyRedisCache)
        and isinstance(caches["default"], AcklyRedisCache)
        and layer == f"{RedisPubSubChannelLayer.__module__}.{RedisPubSubChannelLayer.__name__}"
    )


class FastLane:
    """ASGI middleware: serves what it can of `POST /api/ingest` and `POST /api/v1/ingest/events`,
    hands the rest to `app`."""

    def __init__(self, app) -> None:
        self.app = app
        self.enabled: bool | None = None
        self.committers: dict[asyncio.AbstractEventLoop, _Committer] = {}
        self.rules: ApiRules | None = None
        self.routes: dict[type[IngestEndpoint], str] = {}
        # DRF's Allow header, as each endpoint's view gives it.
        self.allow: dict[type[IngestEndpoint], bytes] = {
            view: view().default_response_headers["Allow"].encode()
            for view in (IngestView, EventsView)
        }

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or (scope["path"] not in PATHS and scope["path"] not in BATCH_PATHS)
            or scope.get("query_string")
            or not self._enabled()
        ):
            return await self.app(scope, receive, send)
        # At most INGEST_MAX_BODY_BYTES + 1 bytes: ackly.asgi.BodyLimitGuard, in front, caps
        # every API body (and ends it there); `_request` asks the size rule of what came.
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away before sending its body
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        item = self._request(scope, body)
        if item is None:
            return await self._hand_over(scope, body, receive, send, None)
        # Made (and its pool opened) by the first request it can serve: none for a process
        # that only ever hands over (tests of the handlers, a server behind the pipeline).
        committer = await self._committer()
        if isinstance(item, _Batch):
            committer.submit_batch(item)
        else:
            committer.submit(item)
        try:
            outcome = await item.future
        except _Handover as handover:  # the pipeline answers and counts it
            return await self._hand_over(scope, body, receive, send, handover.counted)
        endpoint = self.routes[item.endpoint]
        if outcome is _AMBIGUOUS or isinstance(outcome, _Unavailable):
            request_served(endpoint, FASTLANE, 500)
            return await self._send_internal_error(send, scope, item, outcome)
        request_served(endpoint, FASTLANE, outcome.status)
        return await self._send_stored(send, item, outcome)

    def _enabled(self) -> bool:
        if self.enabled is None:
            self.enabled = fast_lane_available()
            self.rules = ApiRules()
            # The label the pipeline's metrics give each endpoint (ackly.metrics.endpoint_of).
            self.routes = {
                view: resolve(path).view_name for view, path in _ENDPOINT_PATHS.items()
            }
        return self.enabled

    async def _committer(self) -> _Committer:
        loop = asyncio.get_running_loop()
        committer = self.committers.get(loop)
        if committer is None:
            committer = self.committers[loop] = _Committer(self.routes)
            await committer.open()
        return committer

    def _request(self, scope, body: bytes) -> _Pending | _Batch | None:
        """The request, checked as far as it can be without I/O; None: the pipeline answers."""
        assert self.rules is not None
        security = self.rules.for_scope(scope)  # None: Django answers (Host, HTTPS redirect…)
        if security is None:
            return None
        batch = scope["path"] in BATCH_PATHS
        headers = request_headers(scope)
        auth = headers.get(b"authorization")
        forwarded_for = headers.get(b"x-forwarded-for")
        idem_header = headers.get(b"idempotency-key")
        try:
            check_size(len(body), settings.INGEST_MAX_BODY_BYTES,
                       (EventsView if batch else IngestView).too_large_error)
            secret = bearer_secret(None if auth is None else auth.decode("latin-1"))
            idem_key = idempotency_key(None if idem_header is None else idem_header.decode("latin-1"))
            client = scope.get("client")
            common: _Common = {
                "peer": client[0] if client else "",
                "forwarded_for": None if forwarded_for is None else forwarded_for.decode("latin-1"),
                "security": security,
                "digest": digest_of(secret),
                "idem_key": idem_key,
                "request_hash": None if idem_key is None else request_hash(scope["path"], body),
                "received_at": datetime.now(UTC),
                "future": asyncio.get_running_loop().create_future(),
            }
            payload = parse_strict_json(body, settings.JSON_MAX_DEPTH)
            if batch:
                return _Batch(**common, events=events_of(payload))
            return _Pending(**common, fields=validate_event(payload))
        except APIError:  # the pipeline answers (missing_authorization, invalid_body, …)
            return None

    async def _hand_over(self, scope, body, receive, send, counted) -> None:
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if counted is not None:
            scope = {**scope, BURST_COUNTED_SCOPE_KEY: counted}
        return await self.app(scope, replay, send)

    async def _send_stored(self, send, item: _Request, stored: _Stored) -> None:
        """The pipeline's answer: its body, its state headers (ingest.responses), DRF's Allow,
        the API middleware's headers (ackly.apirules) and the request id."""
        body = stored.body.encode()
        request_id = request_id_of(stored.request_id)
        headers = [
            (b"content-type", _JSON),
            *[(name.encode(), value.encode()) for name, value in state_headers(stored.quota, stored.burst)],
            (b"allow", self.allow[item.endpoint]),
            (b"content-length", str(len(body)).encode()),
            *item.security,
            (_REQUEST_ID, request_id.encode()),
        ]
        await send({"type": "http.response.start", "status": stored.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _send_internal_error(self, send, scope, item: _Request, outcome: Any) -> None:
        """The pipeline's 500 (ackly.errors), through the API middleware's response side."""
        assert self.rules is not None
        request = request_of(scope)
        set_request_id(request, request_id_of(getattr(item, "request_id", None)))
        if isinstance(outcome, _Unavailable):  # its one log line names the request and tenant
            if item.key is not None:
                bind_tenant(item.key.workspace_public_id, item.key.source_public_id)
            log_database_unavailable(request, outcome.error)
        code = "internal_error"
        response = error_response(request, code, ERROR_CODES[code].description, 500)
        response = self.rules.finish(request, response)
        await send({
            "type": "http.response.start", "status": 500, "headers": asgi_headers(response),
        })
        await send({"type": "http.response.body", "body": response.content})


_JSON = JSON_CONTENT_TYPE.encode()
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()
