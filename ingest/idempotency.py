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
from typing import ClassVar

from django.conf import settings
from django.db import connection
from django.http import HttpResponse

from ackly.errors import IdempotencyKeyReused, InvalidBody
from ingest.models import IdempotencyRecord

REPLAYED_HEADER = "Idempotent-Replayed"


def idempotency_key_of(meta: dict) -> str | None:
    """The request's Idempotency-Key, None when absent, InvalidBody when too long or empty."""
    return idempotency_key(meta.get("HTTP_IDEMPOTENCY_KEY"))


def idempotency_key(header: str | None) -> str | None:
    """`idempotency_key_of` for the header's value (repeated headers joined by commas)."""
    if header is None:
        return None
    key = header.strip()
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


_q = connection.ops.quote_name
RECORD_COLUMNS = ("source_id", "key", "request_hash", "status_code", "response_body", "created_at")
# The record's INSERT, for every form that writes one (`Claim.save`, `Claim.insert_sql`, and
# the fast lane's rows from arrays): what follows is a SELECT of RECORD_COLUMNS' values.
RECORD_INSERT = (
    f"INSERT INTO {_q(IdempotencyRecord._meta.db_table)} "
    f"({', '.join(_q(c) for c in RECORD_COLUMNS)}) "
)
_VALUES = f"SELECT {', '.join(['%s'] * len(RECORD_COLUMNS))}"


@dataclass(frozen=True)
class Claim:
    """A request's claim on (source, Idempotency-Key), saved with what the request stored."""

    source_id: int
    key: str
    request_hash: str
    now: datetime

    # `insert_sql`'s statement: `… SELECT %s, … FROM ` + a CTE's name to follow.
    INSERT_SQL: ClassVar[str] = f"{RECORD_INSERT}{_VALUES} FROM "

    def values(self, status: int, body: str) -> list:
        """The record's values in RECORD_COLUMNS order."""
        return [self.source_id, self.key, self.request_hash, status, body, self.now]

    def save(self, status: int, body: str) -> None:
        """Write the record (IntegrityError when another request holds the key)."""
        values = self.values(status, body)
        values[-1] = connection.ops.adapt_datetimefield_value(self.now)
        with connection.cursor() as cursor:
            cursor.execute(RECORD_INSERT + _VALUES, values)

    def insert_sql(self, status: int, body: str) -> tuple[str, list]:
        """The record's INSERT for a larger statement: `… SELECT … FROM ` + a CTE's name to
        follow (one row per row of it)."""
        return self.INSERT_SQL, self.values(status, body)
