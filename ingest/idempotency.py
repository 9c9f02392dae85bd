"""Idempotency-Key (SPEC §5): the first response to (source, key) is replayed for 10 minutes.

The record is written in the same transaction (or the same statement) as what it describes,
so it exists exactly when the events do. The unique (source, key) index is the lock and the
look-up: a request does not look for a record first; a duplicate's INSERT blocks on the index
until the first request commits, fails with IntegrityError, and only then is the record read
and replayed.
Only stored outcomes are recorded; a refused request (4xx raised before storing) leaves no
record, so the client may fix the request and retry with the same key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.http import HttpResponse

from ackly.errors import IdempotencyKeyReused, InvalidBody
from ingest.models import IdempotencyRecord

REPLAYED_HEADER = "Idempotent-Replayed"


def idempotency_key_of(meta: dict) -> str | None:
    """The request's Idempotency-Key, None when absent, InvalidBody when too long or empty."""
    key = meta.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    key = key.strip()
    limit = settings.IDEMPOTENCY_KEY_MAX_LENGTH
    if not key:
        raise InvalidBody("The Idempotency-Key header is empty.")
    if len(key) > limit:
        raise InvalidBody(f"The Idempotency-Key header is longer than {limit} characters.")
    return key


def request_hash(path: str, body: bytes) -> str:
    """What 'the same request' means: the same endpoint and the same body bytes."""
    digest = hashlib.sha256(path.rstrip("/").encode())
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def window_start(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.IDEMPOTENCY_WINDOW_SECONDS)


def find_record(source_id: int, key: str) -> IdempotencyRecord | None:
    """The stored record for (source, key), live or expired (expired ones block the index)."""
    return IdempotencyRecord.objects.filter(source_id=source_id, key=key).first()


def replay_or_conflict(record: IdempotencyRecord, hashed: str) -> HttpResponse:
    """The stored response, byte for byte, or 409 when the body differs."""
    if record.request_hash != hashed:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used within the last "
            f"{settings.IDEMPOTENCY_WINDOW_SECONDS // 60} minutes with a different request body."
        )
    response = HttpResponse(
        record.response_body.encode("utf-8"),
        status=record.status_code,
        content_type="application/json",
    )
    response[REPLAYED_HEADER] = "true"
    return response


def stored_request_id(record: IdempotencyRecord) -> str | None:
    """The requestId inside a stored body (v1 bodies carry one), to keep X-Request-Id equal."""
    if "requestId" not in record.response_body:
        return None
    try:
        body = json.loads(record.response_body)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    found = body.get("requestId") or (error.get("requestId") if isinstance(error, dict) else None)
    return found if isinstance(found, str) else None


def delete_expired(source_id: int, key: str, now: datetime) -> None:
    """Free an expired key for reuse (inside the storing transaction)."""
    IdempotencyRecord.objects.filter(
        source_id=source_id, key=key, created_at__lt=window_start(now)
    ).delete()


_TABLE = IdempotencyRecord._meta.db_table
_COLUMNS = ("source_id", "key", "request_hash", "status_code", "response_body", "created_at")


@dataclass(frozen=True)
class Claim:
    """A request's claim on (source, Idempotency-Key), saved with what the request stored."""

    source_id: int
    key: str
    request_hash: str
    now: datetime

    def save(self, status: int, body: str) -> None:
        """Write the record (IntegrityError when another request holds the key)."""
        IdempotencyRecord.objects.bulk_create(
            [
                IdempotencyRecord(
                    source_id=self.source_id, key=self.key, request_hash=self.request_hash,
                    status_code=status, response_body=body, created_at=self.now,
                )
            ]
        )

    def insert_sql(self, status: int, body: str) -> tuple[str, list]:
        """The record's INSERT for a larger statement: `… SELECT … FROM ` + a CTE's name to
        follow (one row per row of it)."""
        return _INSERT_SELECT, [self.source_id, self.key, self.request_hash, status, body, self.now]


_INSERT_SELECT = (
    f"INSERT INTO {connection.ops.quote_name(_TABLE)} "
    f"({', '.join(connection.ops.quote_name(c) for c in _COLUMNS)}) "
    f"SELECT {', '.join(['%s'] * len(_COLUMNS))} FROM "
)
