"""The machinery both ingest APIs share: one request, one fixed order of checks, one transaction.

`IngestEndpoint` is a DRF APIView. Its `post` runs, in this order (the first failure answers):

 1. auth           Authorization: Bearer <key> -> 401 missing_authorization / invalid_key /
                   key_revoked / key_expired (a malformed header never reaches the database);
                   429 rate_limited, before the look-up, from an address past
                   AUTH_FAILURE_LIMIT unknown keys (sources/auth.py).
 2. plan           `requires_developer_api = True` -> 402 plan_disabled on plans without it.
 3. burst          per key and per workspace from the plan (django-ratelimit, 'default' cache)
                   -> 429 rate_limited + Retry-After.
 4. idempotency    Idempotency-Key (<= IDEMPOTENCY_KEY_MAX_LENGTH else 400 invalid_body). A live
                   record for (source, key) replays the stored status and body bytes with
                   `Idempotent-Replayed: true`, or 409 idempotency_key_reused for another body.
                   The record is not looked up first: claiming the key in step 8 fails when it
                   is taken, and only then (or when steps 6-8 refuse the request) is it read.
 5. body           at most INGEST_MAX_BODY_BYTES, checked before parsing (Content-Length, and
                   chunked bodies read to limit + 1) -> 413 `too_large_error`'s code.
 6. JSON           strict, whatever the Content-Type (ingest.jsonbody) -> 400 invalid_body.
 7. validate       `validate(payload)` (subclass) -> 400 naming every offending field.
 8. store          `?dryRun=true|1`: `store(validated, ctx)` with ctx.dry_run True, no
                   transaction; it must write nothing. Otherwise `store_at_once` (one
                   statement, where an endpoint offers it: /api/ingest on PostgreSQL) or ONE
                   transaction.atomic(): `store` (reserves quota, inserts) and the idempotency
                   record; then the broadcast, queued with on_commit. A concurrent duplicate
                   (same key) fails on the record's unique index after the first commits and
                   then replays.

Every response after step 1 carries X-Quota-Limit/-Remaining/-Reset (epoch seconds of the
period's end) and RateLimit-Limit/-Remaining/-Reset (seconds; the tighter of key/workspace).
Every refused request whose source is known (so not invalid_key/missing_authorization) is
counted per (source, code, hour) after the transaction, except in dry runs.

Extension points (class attributes and methods of a subclass):

    requires_developer_api: bool = False     # 402 plan_disabled when the plan lacks it
    too_large_error: type[APIError]          # PayloadTooLarge (413 payload_too_large) here
    quota_exceeded_status: int = 429         # 402 for v1
    def validate(self, payload: Any) -> Any  # raise InvalidBody(...); return anything
    def store(self, validated, ctx: IngestContext) -> tuple[int, dict]
        # (status, body dict). Runs inside the transaction, or with ctx.dry_run = True outside
        # one (then write nothing). Raise an APIError to refuse the whole request (rolled back,
        # counted, unless `store` already counted per-event refusals with ctx.count_rejections:
        # then those are the request's count). A returned status >= 400 is *not* counted.

What `store` gets on `ctx` (IngestContext):

    ctx.key (sources.keys.KeyContext), ctx.limits (billing WorkspaceLimits), ctx.now,
    ctx.request_id, ctx.dry_run, ctx.source (the {"id","slug","name"} dict for items)
    ctx.reserve_quota(n) -> granted       # k of n; in a dry run, the room without reserving
    ctx.reserve_all_quota(n) -> bool      # all n or none; reserve late, the row stays locked
    ctx.quota_exceeded() -> APIError      # raise it: status quota_exceeded_status + Retry-After
    ctx.broadcast(message)                # at most one per request; sent after commit only
    ctx.count_rejections({code: n})       # per-event refusals; written after the transaction

The id in a dry run's 201 (or any id a dry run reports) is freshly generated and never stored.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from ackly.clientip import client_ip
from ackly.errors import (
    APIError,
    KeyExpired,
    KeyRevoked,
    PayloadTooLarge,
    PlanDisabled,
    QuotaExceeded,
    RateLimited,
    error_response,
)
from ackly.metrics import endpoint_of, events_accepted, events_rejected, quota_refused
from ackly.requestid import get_request_id, set_request_id
from billing.services import QuotaState, WorkspaceLimits, quota_state, reserve_all
from billing.services import reserve_quota as reserve_workspace_quota
from ingest import idempotency
from ingest.broadcast import broadcast_on_commit
from ingest.jsonbody import parse_strict_json, read_body
from ingest.present import source_ref
from ingest.ratelimits import BurstState, burst_state, count_burst
from ingest.rejections import COUNTED_STATUSES, count_rejections
from ingest.responses import JSON_CONTENT_TYPE, state_headers
from sources.auth import BearerKeyAuthentication, authenticate_key
from sources.keys import KeyContext, digest_of, lookup_key
from sources.services import touch_key

_TRUE = frozenset({"true", "1"})

# ASGI scope entry of a request the fast lane handed over after counting its burst windows:
# (window start, [key count, workspace count]).
BURST_COUNTED_SCOPE_KEY = "ackly.burst_counted"


@dataclass
class IngestContext:
    """One authenticated ingest request: who sent it, under which plan, and what it produced."""

    request: HttpRequest
    key: KeyContext
    now: datetime
    request_id: str
    dry_run: bool
    quota_exceeded_status: int
    limits: WorkspaceLimits | None = None
    quota: QuotaState | None = None
    burst: BurstState | None = None
    message: dict[str, Any] | None = None
    rejections: dict[str, int] = field(default_factory=dict)

    @property
    def source(self) -> dict[str, str]:
        k = self.key
        return source_ref(k.source_public_id, k.source_slug, k.source_name)

    def reserve_quota(self, requested: int) -> int:
        """Reserve up to `requested` events of the period; how many were granted (k of n)."""
        assert self.limits is not None
        if self.dry_run:
            self.quota = quota_state(self.limits, self.now)
            return min(requested, self.quota.remaining)
        self.quota = reserve_workspace_quota(self.limits, requested, self.now)
        if self.quota.granted < requested:
            quota_refused(endpoint_of(self.request))
        return self.quota.granted

    def reserve_all_quota(self, requested: int) -> bool:
        """Reserve all `requested` events or none (one conditional UPDATE; never in a dry run)."""
        assert self.limits is not None and not self.dry_run
        quota = reserve_all(self.limits, requested, self.now)
        if quota is None:
            return False
        self.quota = quota
        return True

    def quota_exceeded(self, message: str | None = None) -> APIError:
        """The quota error to raise, with Retry-After = seconds to the period's end."""
        assert self.limits is not None
        quota = self.quota or quota_state(self.limits, self.now)
        self.quota = quota
        retry = max(1, math.ceil((quota.period_end - self.now).total_seconds()))
        return QuotaExceeded(
            message
            or f"The workspace has used its monthly limit of {quota.limit} events; ingestion "
            f"resumes at {quota.period_end.isoformat()} or after a plan upgrade.",
            status=self.quota_exceeded_status,
            headers={"Retry-After": str(retry)},
        )

    def broadcast(self, message: dict[str, Any]) -> None:
        """The one live message of this request, sent after commit (never in a dry run)."""
        if self.message is not None:
            raise RuntimeError("one broadcast per request: merge the items into one message")
        self.message = message

    def count_rejections(self, counts: dict[str, int]) -> None:
        """Per-event refusals to count (written after the transaction; nothing in a dry run)."""
        for code, n in counts.items():
            self.rejections[code] = self.rejections.get(code, 0) + n


class IngestEndpoint(APIView):
    """Base of both ingest APIs: see the module docstring for the order and the hooks."""

    authentication_classes = [BearerKeyAuthentication]
    permission_classes: list = []
    parser_classes: list = []
    renderer_classes = [JSONRenderer]

    requires_developer_api = False
    too_large_error: type[APIError] = PayloadTooLarge
    quota_exceeded_status = 429

    # --- hooks ----------------------------------------------------------------------------------
    def validate(self, payload: Any) -> Any:
        """Check the parsed body; raise InvalidBody naming every offending field."""
        raise NotImplementedError

    def store(self, validated: Any, ctx: IngestContext) -> tuple[int, dict[str, Any]]:
        """Reserve quota and write (unless ctx.dry_run); return (status, body)."""
        raise NotImplementedError

    def store_at_once(
        self, validated: Any, ctx: IngestContext, claim: idempotency.Claim | None
    ) -> tuple[int, str] | None:
        """Optional: what `store` and `claim.save` write, in ONE autocommit statement.

        (status, body text) when done; None when it cannot be done that way now (then `store`
        runs in a transaction). A taken Idempotency-Key raises IntegrityError, as there.
        """
        return None

    # --- DRF plumbing ---------------------------------------------------------------------------
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Skip DRF's negotiation, auth, permission and throttle steps: `post` runs its own."""
        self.format_kwarg = None
        request.accepted_renderer = self.renderer_classes[0]()
        request.accepted_media_type = "application/json"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # Django's request, before DRF wraps it: the pipeline works on it (`post` runs below).
        self.http_request = request
        return super().dispatch(request, *args, **kwargs)

    def post(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.ingest(self.http_request)

    # --- the pipeline ---------------------------------------------------------------------------
    def ingest(self, request: HttpRequest) -> HttpResponse:
        """Run the checks in order; every outcome is a response (errors as the envelope)."""
        ctx: IngestContext | None = None
        try:
            ctx = self._authenticate(request)
            response = self._run(request, ctx)
        except APIError as exc:
            response = error_response(
                request, exc.code, exc.message, exc.status_code, exc.headers, exc.extra
            )
            # A request's refusals count once: per event when the endpoint counted them
            # (an all-rejected v1 batch), else the error that answers it.
            if (
                ctx is not None
                and not ctx.dry_run
                and not ctx.rejections
                and exc.status_code in COUNTED_STATUSES
            ):
                ctx.count_rejections({exc.code: 1})
            if ctx is None and not isinstance(exc, KeyRevoked | KeyExpired):
                events_rejected({exc.code: 1})  # no source to count it against, still refused
        if ctx is not None:
            if ctx.rejections and not ctx.dry_run:
                count_rejections(ctx.key, ctx.rejections, ctx.now, answer=response)
            self._add_state_headers(response, ctx)
        return response

    def _authenticate(self, request: HttpRequest) -> IngestContext:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        try:
            key = authenticate_key(header, client_ip(request))
        except (KeyRevoked, KeyExpired) as exc:
            # A known key: count the refusal against its source (one more look-up, error path).
            known = lookup_key(digest_of(header.partition(" ")[2].strip()))
            if known is not None and not self._dry_run(request):
                count_rejections(known, {exc.code: 1})
            raise
        return IngestContext(
            request=request,
            key=key,
            now=timezone.now(),
            request_id=get_request_id(request),
            dry_run=self._dry_run(request),
            quota_exceeded_status=self.quota_exceeded_status,
        )

    @staticmethod
    def _dry_run(request: HttpRequest) -> bool:
        return request.GET.get("dryRun", "").strip().lower() in _TRUE

    @classmethod
    def plan_refusal(cls, limits: WorkspaceLimits) -> APIError | None:
        """402 plan_disabled when the endpoint needs the developer API and the plan lacks it
        (both ingest executors ask this)."""
        if cls.requires_developer_api and not limits.developer_api:
            return PlanDisabled(
                f"The workspace's {limits.plan_code} plan does not include the developer API; "
                "upgrade to Starter or Pro."
            )
        return None

    def admit(self, request: HttpRequest, ctx: IngestContext) -> None:
        """Steps 2-3, plan and burst, for an authenticated request (v1 ping stops here)."""
        key = ctx.key
        ctx.limits = limits = key.limits
        touch_key(key.key_id, ctx.now)
        refusal = self.plan_refusal(limits)
        if refusal is not None:
            raise refusal
        # The fast lane (ingest.fastlane) hands over requests it counted already: never twice.
        counted = getattr(request, "scope", {}).get(BURST_COUNTED_SCOPE_KEY)
        if counted is not None:
            ctx.burst = burst = burst_state(limits, counted[0], counted[1], time.time())
        else:
            ctx.burst = burst = count_burst(key, limits)
        if burst.exceeded:
            raise RateLimited(
                f"More than {burst.limit} requests per {settings.RATELIMIT_WINDOW_SECONDS}s for "
                "this key or workspace; retry after Retry-After seconds.",
                headers={"Retry-After": str(burst.reset_seconds)},
            )

    def _run(self, request: HttpRequest, ctx: IngestContext) -> HttpResponse:
        key = ctx.key
        self.admit(request, ctx)
        idem_key = idempotency.idempotency_key_of(request.META)
        body = read_body(request, settings.INGEST_MAX_BODY_BYTES, self.too_large_error)
        claim = (
            idempotency.Claim(
                key.source_id, idem_key, idempotency.request_hash(request.path, body), ctx.now
            )
            if idem_key is not None
            else None
        )
        if ctx.dry_run:
            if claim is not None:
                record = idempotency.find_record(claim.source_id, claim.key)
                if record is not None and record.created_at >= idempotency.window_start(ctx.now):
                    return self._replay(request, record, claim.request_hash)
            status, payload = self.store(self._parse(body), ctx)
            return _json_response(status, body_text(payload))
        return self._commit(request, ctx, body, claim)

    def _parse(self, body: bytes) -> Any:
        return self.validate(parse_strict_json(body, settings.JSON_MAX_DEPTH))

    def _commit(
        self,
        request: HttpRequest,
        ctx: IngestContext,
        body: bytes,
        claim: idempotency.Claim | None,
    ) -> HttpResponse:
        """Validate and store; a request whose Idempotency-Key is taken replays the first answer.

        No look-up of the key first: the record's unique index decides (IntegrityError when
        the key is taken), and only a failed request looks the record up. A live record is
        replayed (or 409 for another body); an expired one still holding the index is deleted
        and the request stored once more.
        """
        free_expired = False
        while True:
            try:
                status, text = self._store(ctx, self._parse(body), claim, free_expired)
                return _json_response(status, text)
            except (IntegrityError, APIError) as exc:
                if claim is None:
                    raise
                record = idempotency.find_record(claim.source_id, claim.key)
                if record is None:
                    raise
                if record.created_at < idempotency.window_start(ctx.now):
                    if free_expired or not isinstance(exc, IntegrityError):
                        raise
                    free_expired = True
                else:
                    # Answer as the first request did (it committed first, or its events used
                    # the last of the quota): nothing of this one is stored, sent or counted.
                    ctx.rejections.clear()
                    ctx.quota = None
                    return self._replay(request, record, claim.request_hash)
                ctx.message = None
                ctx.rejections.clear()
                ctx.quota = None

    def _store(
        self,
        ctx: IngestContext,
        validated: Any,
        claim: idempotency.Claim | None,
        free_expired: bool,
    ) -> tuple[int, str]:
        """Everything a request writes, atomically: (status, body text)."""
        key = ctx.key
        done = None if free_expired else self.store_at_once(validated, ctx, claim)
        if done is not None:
            status, text = done
        else:
            with transaction.atomic():
                status, payload = self.store(validated, ctx)
                text = body_text(payload)
                if claim is not None:
                    # After `store`: the counter row first, then the record (the lock order of
                    # every write path, docs/decisions.md).
                    if free_expired:
                        idempotency.delete_expired(claim.source_id, claim.key, ctx.now)
                    claim.save(status, text)
        if ctx.quota is not None and ctx.quota.granted:  # committed: the events it reserved
            events_accepted(endpoint_of(ctx.request), ctx.quota.granted)
        if ctx.message is not None:
            broadcast_on_commit(key.workspace_public_id, ctx.message)
        return status, text

    def _replay(self, request: HttpRequest, record: Any, hashed: str) -> HttpResponse:
        response = idempotency.replay_or_conflict(record, hashed)
        original = idempotency.stored_request_id(record)
        if original is not None:
            # The replayed body names the first request's id; the header must say the same.
            set_request_id(request, original)
        return response

    def _add_state_headers(self, response: HttpResponse, ctx: IngestContext) -> None:
        quota = None
        if ctx.limits is not None:
            quota = ctx.quota or quota_state(ctx.limits, ctx.now)
        for name, value in state_headers(quota, ctx.burst):
            response[name] = value


def body_text(payload: dict[str, Any]) -> str:
    """A response body as both lanes write it (compact JSON, ASCII)."""
    return json.dumps(payload, separators=(",", ":"))


def _json_response(status: int, text: str) -> HttpResponse:
    return HttpResponse(text.encode("utf-8"), status=status, content_type=JSON_CONTENT_TYPE)
