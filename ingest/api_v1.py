"""The developer API (v1, SPEC §4): ping, a batch of timeline events, a snapshot card.

Each endpoint is an ingest.pipeline.IngestEndpoint: auth, plan (402 plan_disabled: every v1
endpoint needs the developer API), burst limits, Idempotency-Key, the 1 MB body limit
(413 batch_too_large here), strict JSON, dry runs, quota headers and the one transaction all
come from there. This module only validates (ingest.validation_v1), resolves actors
(workspaces.services.resolve_actors) and stores (ingest.services).
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from rest_framework.request import Request

from ackly.errors import (
    APIError,
    BatchTooLarge,
    ForbiddenEventType,
    InvalidBody,
    MissingActor,
    WorkerNotFound,
)
from ingest.pipeline import IngestContext, IngestEndpoint
from ingest.present import worker_ref
from ingest.services import record_snapshot, record_timeline_events
from ingest.validation_v1 import (
    EventRejection,
    ValidSnapshot,
    events_of,
    validate_event_list,
    validate_snapshot,
)
from workspaces.services import resolve_actors

# The exception that answers a batch whose every event was rejected, by its first code.
_BATCH_ERRORS: dict[str, type[APIError]] = {
    "invalid_body": InvalidBody,
    "missing_actor": MissingActor,
    "forbidden_event_type": ForbiddenEventType,
    "worker_not_found": WorkerNotFound,
}


def batch_body(
    request_id: str, stored: list[tuple[int, str, str]], rejected: list[EventRejection]
) -> dict[str, Any]:
    """A batch's answer (202/207, or the fields added to an all-rejected batch's error), with
    `stored` as ingest.services.record_timeline_events returns it."""
    return {
        "requestId": request_id,
        "accepted": len(stored),
        "rejected": len(rejected),
        "batchLimit": settings.V1_MAX_BATCH,
        "results": {
            "accepted": [
                {"index": index, "eventType": event_type, "timestamp": timestamp}
                for index, event_type, timestamp in stored
            ],
            "rejected": [
                {"index": r.index, "code": r.code, "message": r.message} for r in rejected
            ],
        },
    }


class V1Endpoint(IngestEndpoint):
    """What every v1 endpoint shares: the plan must include the developer API."""

    requires_developer_api = True
    too_large_error = BatchTooLarge
    quota_exceeded_status = 402


class PingView(V1Endpoint):
    """GET /api/v1/ingest/ping: 200 {ok, organizationId, app} once key, plan and burst pass."""

    http_method_names = ["get", "head"]

    def get(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.ingest(self.http_request)

    def _run(self, request: HttpRequest, ctx: IngestContext) -> HttpResponse:
        # No body, nothing stored: the pipeline's admission checks, then the answer.
        self.admit(request, ctx)
        body = {"ok": True, "organizationId": ctx.key.workspace_public_id, "app": ctx.source}
        return HttpResponse(
            json.dumps(body, separators=(",", ":")), status=200, content_type="application/json"
        )


class _QuotaShort(Exception):
    """The batch's ready events do not all fit in the quota (rolls their savepoint back)."""


class EventsView(V1Endpoint):
    """POST /api/v1/ingest/events: up to 500 timeline events, each accepted or rejected."""

    def validate(self, payload: Any) -> list[Any]:
        # Request-level faults only; per-event rules need the key's whitelist (in `store`).
        return events_of(payload)

    def store(self, events: list[Any], ctx: IngestContext) -> tuple[int, dict[str, Any]]:
        batch = validate_event_list(events, ctx.key.allowed_event_types, ctx.now)
        rejected = batch.rejections
        resolved = resolve_actors(
            ctx.key.workspace_id, [e.actor for e in batch.events], create=not ctx.dry_run
        )
        ready = []
        for event in batch.events:
            worker = resolved[(event.actor.kind, event.actor.value)]
            if worker is None:
                rejected.append(
                    EventRejection(
                        event.index,
                        "worker_not_found",
                        f"events[{event.index}].actor.workerId: '{event.actor.value}' is not "
                        "a worker of this workspace.",
                    )
                )
            else:
                ready.append((event, worker))
        stored = self._store_all_if_they_fit(ctx, ready)
        if stored is None:
            granted = ctx.reserve_quota(len(ready)) if ready else 0
            for event, _ in ready[granted:]:
                rejected.append(
                    EventRejection(
                        event.index,
                        "quota_exceeded",
                        f"events[{event.index}]: the workspace's monthly event quota is used up.",
                    )
                )
            stored = record_timeline_events(ctx, ready[:granted])

        rejected.sort(key=lambda r: r.index)
        body = batch_body(ctx.request_id, stored, rejected)
        counts: dict[str, int] = {}
        for r in rejected:
            counts[r.code] = counts.get(r.code, 0) + 1
        if not stored:
            raise self._all_rejected(ctx, rejected[0], body, counts)
        ctx.count_rejections(counts)
        return (207 if rejected else 202), body

    @staticmethod
    def _store_all_if_they_fit(
        ctx: IngestContext, ready: list[tuple[Any, Any]]
    ) -> list[tuple[int, str, str]] | None:
        """Write every ready event, THEN reserve their quota: the workspace's counter row is
        locked from that UPDATE to the commit only, not while the rows are copied in (in
        `make bench` about half of the batch connections were waiting on that row). None,
        with nothing written, when they do not all fit: the caller grants k of n instead.
        """
        if ctx.dry_run or not ready:
            return None
        try:
            with transaction.atomic():  # a savepoint: undone alone when they do not all fit
                stored = record_timeline_events(ctx, ready)
                if not ctx.reserve_all_quota(len(ready)):
                    raise _QuotaShort
        except _QuotaShort:
            ctx.message = None
            return None
        return stored

    @staticmethod
    def _all_rejected(
        ctx: IngestContext, first: EventRejection, body: dict[str, Any], counts: dict[str, int]
    ) -> APIError:
        """Every event rejected: the first rejection's status, the envelope plus the batch.

        Raised, so the transaction rolls back (workers created for the batch go too) and no
        idempotency record is kept: the sender may fix the batch and retry with the same key.
        """
        extra = {k: v for k, v in body.items() if k != "requestId"}
        message = f"No event was accepted; the first rejection: {first.message}"
        if first.code == "quota_exceeded":
            error = ctx.quota_exceeded(message)
            error.extra = extra
        else:
            error = _BATCH_ERRORS[first.code](message, extra=extra)
        # Every rejected event is counted here; the pipeline then does not count the error too.
        ctx.count_rejections(counts)
        return error


class SnapshotsView(V1Endpoint):
    """POST /api/v1/ingest/snapshots: replace the worker's card unless the stored one is newer."""

    def validate(self, payload: Any) -> ValidSnapshot:
        return validate_snapshot(payload, timezone.now())

    def store(self, snapshot: ValidSnapshot, ctx: IngestContext) -> tuple[int, dict[str, Any]]:
        actor = snapshot.actor
        worker = resolve_actors(ctx.key.workspace_id, [actor], create=not ctx.dry_run)[
            (actor.kind, actor.value)
        ]
        if worker is None:
            raise WorkerNotFound(
                f"actor.workerId: '{actor.value}' is not a worker of this workspace."
            )
        # Snapshots never count towards the monthly event quota: no reservation here.
        record_snapshot(ctx, snapshot, worker)
        return 202, {
            "requestId": ctx.request_id,
            "ok": True,
            "snapshotType": snapshot.snapshot_type,
            "worker": worker_ref(worker.public_id, worker.display_name, worker.external_id),
        }

