"""The one error envelope of SPEC §5, and the exception hierarchy that maps onto it.

Every error of every API path goes through `error_response`: our own `APIError`s, DRF's
exceptions (via `api_exception_handler`), Django's 404/405/500 (via `handler404`/`handler500`
in ackly.urls) and the body-size guard.
"""

import json
import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from django import db
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from psycopg_pool import PoolTimeout
from rest_framework import exceptions as drf_exceptions

from ackly.compat import django_request
from ackly.requestid import REQUEST_ID_HEADER, get_request_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    title: str
    description: str


# The catalogue: documentation pages, the OpenAPI enum and the exceptions below all read it.
ERROR_CODES: dict[str, ErrorCode] = {
    e.code: e
    for e in [
        ErrorCode("missing_authorization", 401, "Missing authorization",
                  "No `Authorization` header, or one that is not `Bearer <key>`."),
        ErrorCode("invalid_key", 401, "Invalid key",
                  "The key does not exist or is malformed. Keys look like `ak_live_` followed "
                  "by 40 letters and digits."),
        ErrorCode("key_revoked", 401, "Key revoked",
                  "The key was revoked (or replaced by a rotation). Create or rotate a key on the "
                  "Sources page."),
        ErrorCode("key_expired", 401, "Key expired",
                  "The key is past its expiry time (`expires_at`), for example at the end of a "
                  "rotation's grace period."),
        ErrorCode("wrong_key_scope", 403, "Key of the wrong scope",
                  "An ingest key (`ak_live_…`) only sends events and a read key (`ak_read_…`) only "
                  "reads them: a read key was sent to an ingest endpoint, or an ingest key to "
                  "`GET /api/v1/events`."),
        ErrorCode("plan_disabled", 402, "Plan does not include the developer API",
                  "The workspace's plan does not include the v1 developer API. Upgrade to "
                  "Starter or Pro."),
        ErrorCode("quota_exceeded", 429, "Monthly event quota exceeded",
                  "The workspace has used its monthly event limit. Ingestion resumes when the "
                  "next billing period starts, or at once after a plan upgrade. The ingest API "
                  "answers 429 with `Retry-After`; the developer API answers 402."),
        ErrorCode("rate_limited", 429, "Rate limited",
                  "Too many requests per second for this key or this workspace. Wait for "
                  "`Retry-After` seconds and retry."),
        ErrorCode("forbidden_event_type", 403, "Event type not allowed",
                  "The event's `eventType` is not in the source's whitelist (developer API only)."),
        ErrorCode("invalid_body", 400, "Invalid body",
                  "The body is not valid JSON, not of the documented shape, or a field breaks its "
                  "rule. The message names every offending field."),
        ErrorCode("payload_too_large", 413, "Payload too large",
                  "The request body is larger than 1 MB (ingest API)."),
        ErrorCode("batch_too_large", 413, "Batch too large",
                  "The body is larger than 1 MB or holds more than 500 events (developer API)."),
        ErrorCode("missing_actor", 400, "Missing actor",
                  "The event's `actor` has none of `workerId`, `externalId` and `email`."),
        ErrorCode("worker_not_found", 404, "Worker not found",
                  "The `workerId` does not name a worker of this workspace."),
        ErrorCode("idempotency_key_reused", 409, "Idempotency key reused",
                  "The same `Idempotency-Key` was sent within 10 minutes with a different body."),
        ErrorCode("bad_request", 400, "Bad request",
                  "The request is refused before its body is read: its `Host` header names a "
                  "host this server does not serve."),
        ErrorCode("invalid_query", 400, "Invalid query",
                  "A query parameter of a read endpoint is not valid (an unknown status or "
                  "category, an instant that is not ISO 8601, a cursor this API did not give). "
                  "The message names every offending parameter."),
        ErrorCode("not_found", 404, "Not found", "No API endpoint at this path."),
        ErrorCode("method_not_allowed", 405, "Method not allowed",
                  "The endpoint does not accept this HTTP method."),
        ErrorCode("internal_error", 500, "Internal error",
                  "An unexpected failure on our side. Retry with exponential backoff."),
    ]
}


class APIError(drf_exceptions.APIException):
    """An error answered with the envelope. Subclasses fix the code; status may vary by API."""

    code = "internal_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        spec = ERROR_CODES[self.code]
        self.message = message or spec.description
        self.status_code = status or spec.status
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(self.message, self.code)


def _error(code: str) -> type[APIError]:
    return type("".join(part.title() for part in code.split("_")), (APIError,), {"code": code})


MissingAuthorization = _error("missing_authorization")
InvalidKey = _error("invalid_key")
KeyRevoked = _error("key_revoked")
KeyExpired = _error("key_expired")
WrongKeyScope = _error("wrong_key_scope")
InvalidQuery = _error("invalid_query")
PlanDisabled = _error("plan_disabled")
QuotaExceeded = _error("quota_exceeded")
RateLimited = _error("rate_limited")
ForbiddenEventType = _error("forbidden_event_type")
InvalidBody = _error("invalid_body")
PayloadTooLarge = _error("payload_too_large")
BatchTooLarge = _error("batch_too_large")
MissingActor = _error("missing_actor")
WorkerNotFound = _error("worker_not_found")
IdempotencyKeyReused = _error("idempotency_key_reused")
BadRequest = _error("bad_request")
NotFound = _error("not_found")
MethodNotAllowed = _error("method_not_allowed")
InternalError = _error("internal_error")


def docs_url(request: HttpRequest | None, code: str) -> str:
    path = f"/docs/errors/{code}/"
    base = settings.PUBLIC_BASE_URL
    if base:
        return base.rstrip("/") + path
    if request is None:
        return path
    try:
        return request.build_absolute_uri(path)
    except DisallowedHost:  # never echo a host we do not serve into a link
        return path


def error_body(request: HttpRequest | None, code: str, message: str) -> dict[str, Any]:
    request_id = get_request_id(request) if request is not None else ""
    return envelope(code, message, request_id, docs_url(request, code))


def envelope(code: str, message: str, request_id: str, docs: str) -> dict[str, Any]:
    """The error body of SPEC §5 (`error_body` for code that has no HttpRequest)."""
    return {"error": {"code": code, "message": message, "requestId": request_id, "docsUrl": docs}}


def error_response(
    request: HttpRequest,
    code: str,
    message: str,
    status: int,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> HttpResponse:
    body = error_body(request, code, message)
    if extra:
        body.update(extra)
    response = HttpResponse(
        json.dumps(body, separators=(",", ":")), status=status, content_type="application/json"
    )
    for name, value in (headers or {}).items():
        response[name] = value
    response[REQUEST_ID_HEADER] = get_request_id(request)
    return response


def response_for_exception(request: HttpRequest, exc: Exception) -> HttpResponse:
    """The envelope for any exception raised while serving an API request."""
    if isinstance(exc, APIError):
        return error_response(
            request, exc.code, exc.message, exc.status_code, exc.headers, exc.extra
        )
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return error_response(request, "method_not_allowed", str(exc.detail), 405)
    if isinstance(exc, drf_exceptions.NotFound):
        return error_response(request, "not_found", str(exc.detail), 404)
    if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
        return error_response(request, "missing_authorization", str(exc.detail), 401)
    if isinstance(exc, drf_exceptions.Throttled):
        return error_response(request, "rate_limited", str(exc.detail), 429)
    if isinstance(exc, DisallowedHost):
        logger.warning("Refused %s %s: %s", request.method, request.path, exc)
        return error_response(
            request, "bad_request", "The Host header names a host this server does not serve.", 400
        )
    if isinstance(exc, drf_exceptions.APIException) and exc.status_code < 500:
        # ParseError, UnsupportedMediaType, ValidationError…: the client's body is at fault.
        return error_response(request, "invalid_body", _detail_text(exc.detail), 400)
    if not log_database_unavailable(request, exc):
        logger.exception("Unhandled error serving %s %s", request.method, request.path)
    mark_logged(request)  # Django's "Internal Server Error" line would repeat it
    return error_response(
        request, "internal_error", ERROR_CODES["internal_error"].description, 500
    )


def database_unavailable(exc: BaseException) -> str | None:
    """Why the database could not serve at all (no pooled connection within DB_POOL_TIMEOUT, a
    refused or lost connection, a shutdown), or None for any other failure.

    These come in floods during an outage, and their tracebacks only say where the request was.
    A server-side error with a SQLSTATE outside 08 (connection) and 57 (operator intervention),
    a deadlock or a statement timeout for example, is a real error and keeps its traceback.

    `exc` as Django raises it (its OperationalError, caused by psycopg's) or as psycopg and
    psycopg_pool raise it (the fast lane's own connections).
    """
    cause = exc.__cause__ if isinstance(exc, db.OperationalError) else exc
    if isinstance(cause, PoolTimeout):
        return str(cause)
    if isinstance(cause, psycopg.OperationalError):
        sqlstate = cause.sqlstate
        if sqlstate is None or sqlstate.startswith(("08", "57")):
            text = str(cause).strip()
            return text.splitlines()[0] if text else type(cause).__name__
    return None


def log_database_unavailable(request: HttpRequest, exc: BaseException) -> bool:
    """One warning line, no traceback, when `exc` is the database being unavailable."""
    return log_database_unavailable_for(request.method, request.path, exc)


def log_database_unavailable_for(method: str | None, path: str, exc: BaseException) -> bool:
    """`log_database_unavailable` for code that has no HttpRequest (the fast lane)."""
    reason = database_unavailable(exc)
    if reason is None:
        return False
    logger.warning("Database unavailable serving %s %s: %s", method, path, reason)
    return True


# A 5xx whose cause we logged already: Django's own line for it ("Internal Server Error: …",
# logger django.request, with the traceback again) is dropped by a filter on that logger,
# which is public API (the record's `request` is documented), instead of marking the response
# with Django's private `_has_been_logged`.
_LOGGED_ATTRIBUTE = "ackly_error_logged"


def mark_logged(request: HttpRequest) -> None:
    """This request's failure is in the log already: Django's line for its 5xx is dropped."""
    setattr(request, _LOGGED_ATTRIBUTE, True)


class DropLoggedAlready(logging.Filter):
    """On `django.request`: drops the records of requests marked by `mark_logged`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(getattr(record, "request", None), _LOGGED_ATTRIBUTE, False)


logging.getLogger("django.request").addFilter(DropLoggedAlready())


def _detail_text(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{field}: {_detail_text(value)}" for field, value in detail.items())
    if isinstance(detail, list):
        return "; ".join(_detail_text(item) for item in detail)
    return str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse:
    """DRF's EXCEPTION_HANDLER: everything a DRF view raises becomes the envelope."""
    return response_for_exception(django_request(context["request"]), exc)


def is_api_path(path: str) -> bool:
    return path.startswith("/api/") or path == "/api" or path.startswith("/openapi")
