"""Documentation pages: quick start, both API references, shared behaviour, every error code.

Error responses link to `/docs/errors/<code>/` (`docsUrl`), so that page must answer for every
code in ERROR_CODES. The examples use this server's own address so they can be pasted as is.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from ackly.errors import ERROR_CODES
from ingest.models import Category

# Which API answers each code, and with what status when the two differ.
_V1_STATUS = {"quota_exceeded": 402}
_INGEST_ONLY = {"payload_too_large"}
_V1_ONLY = {
    "plan_disabled", "forbidden_event_type", "batch_too_large", "missing_actor", "worker_not_found",
}

# What a sender should do about each code: the part of a docs page a developer reads first.
_FIXES: dict[str, str] = {
    "missing_authorization": "Send the header `Authorization: Bearer ak_live_…` on every request.",
    "invalid_key": "Copy the key again from the moment it was created or rotated; keys cannot "
    "be recovered, so rotate the source's key if it is lost.",
    "key_revoked": "Use the source's current key. A revoked key never works again.",
    "key_expired": "Use the source's current key, or issue a new one on the Sources page.",
    "plan_disabled": "Upgrade the workspace to Starter or Pro on the Usage & plan page; the "
    "next request after the change is accepted.",
    "quota_exceeded": "Wait for `Retry-After` seconds (the start of the next billing period) or "
    "upgrade the plan. `X-Quota-Remaining` on every response shows the room left.",
    "rate_limited": "Wait `Retry-After` seconds and retry; spread requests out, or send v1 events "
    "in batches of up to 500 instead of one by one.",
    "forbidden_event_type": "Add the eventType to the source's whitelist on the Sources page, or "
    "fix the sender's spelling. Other events of the batch are unaffected.",
    "invalid_body": "Read the message: it names every offending field (`events[3].category`). "
    "Fix those fields and send again.",
    "payload_too_large": "Keep each request body under 1 MB; move large blobs out of metadata.",
    "batch_too_large": "Split the batch: at most 500 events and 1 MB per request.",
    "missing_actor": "Give each event an `actor` with `workerId`, `externalId` or `email`.",
    "worker_not_found": "Use a `wrk_…` id from this workspace, or identify the worker by "
    "`externalId` or `email`, which create the worker when it is new.",
    "idempotency_key_reused": "Use a new Idempotency-Key for a different request; reuse a key "
    "only to retry exactly the same body.",
    "bad_request": "Send the request to the service's own address (the host in its docs and "
    "dashboard), so that the `Host` header names it; a proxy in front must pass that host on.",
    "not_found": "Check the path: `/api/ingest` or `/api/v1/ingest/{ping,events,snapshots}`.",
    "method_not_allowed": "`/api/v1/ingest/ping` takes GET; every other endpoint takes POST.",
    "internal_error": "Retry with exponential backoff and the same Idempotency-Key; if it "
    "persists, report the `requestId`.",
}

PAGES = {
    "ingest": ("docs/ingest.html", "The ingest API"),
    "v1": ("docs/v1.html", "The developer API (v1)"),
    "behaviour": ("docs/behaviour.html", "Behaviour shared by both APIs"),
    "errors": ("docs/errors.html", "Error codes"),
}


_CODE_SPAN = re.compile(r"`([^`]+)`")


def _inline_code(text: str) -> SafeString:
    """Escaped text with `backticks` shown as <code>, as in the catalogue's descriptions."""
    return mark_safe(_CODE_SPAN.sub(r"<code>\1</code>", escape(text)))  # noqa: S308 - escaped


def _base_url(request: HttpRequest) -> str:
    base = settings.PUBLIC_BASE_URL or request.build_absolute_uri("/")
    return base.rstrip("/")


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": _base_url(request),
        "pages": [(slug, title) for slug, (_, title) in PAGES.items()],
        "error_codes": [_describe(spec.code) for spec in ERROR_CODES.values()],
        "categories": Category.choices,
        "limits": {
            "body_mb": settings.INGEST_MAX_BODY_BYTES // (1024 * 1024),
            "batch": settings.V1_MAX_BATCH,
            "v1_metadata_kb": settings.V1_MAX_METADATA_BYTES // 1024,
            "ingest_metadata_kb": settings.INGEST_MAX_METADATA_BYTES // 1024,
            "metrics": settings.V1_MAX_METRICS,
            "idempotency_minutes": settings.IDEMPOTENCY_WINDOW_SECONDS // 60,
            "idempotency_key": settings.IDEMPOTENCY_KEY_MAX_LENGTH,
            "json_depth": settings.JSON_MAX_DEPTH,
        },
        **extra,
    }


def _describe(code: str) -> dict[str, Any]:
    spec = ERROR_CODES[code]
    if code in _INGEST_ONLY:
        apis = "ingest API"
    elif code in _V1_ONLY:
        apis = "developer API (v1)"
    else:
        apis = "both APIs"
    statuses = [spec.status] if code not in _V1_STATUS else [spec.status, _V1_STATUS[code]]
    return {
        "code": code,
        "status": spec.status,
        "statuses": statuses,
        "title": spec.title,
        "description": _inline_code(spec.description),
        "fix": _inline_code(_FIXES.get(code, "")),
        "apis": apis,
    }


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "docs/index.html", _context(request))


def page(request: HttpRequest, slug: str) -> HttpResponse:
    entry = PAGES.get(slug)
    if entry is None:
        raise Http404("No such docs page")
    template, title = entry
    return render(request, template, _context(request, title=title, slug=slug))


def error_code(request: HttpRequest, code: str) -> HttpResponse:
    if code not in ERROR_CODES:
        raise Http404("No such error code")
    error = _describe(code)
    envelope = {
        "error": {
            "code": code,
            "message": ERROR_CODES[code].title + ".",
            "requestId": "req_01HP3K5V4J3M9NVT8XZKQ9YQ2E",
            "docsUrl": f"{_base_url(request)}/docs/errors/{code}/",
        }
    }
    example = json.dumps(envelope, indent=2)
    return render(
        request,
        "docs/error_code.html",
        _context(request, error=error, example=example, title=code, slug="errors"),
    )
