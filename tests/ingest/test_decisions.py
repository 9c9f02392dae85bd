"""The pieces both ingest executors share: the decision for an accepted event, the idempotency
record's one INSERT, the quota statement and the state headers (ingest/decisions.py,
ingest/idempotency.py, billing/services.py, ingest/responses.py)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing.models import Usage
from billing.services import RESERVE_ALL_SQL, QuotaState, reservation_params, reserve_all
from ingest.decisions import EVENT_COLUMNS, EVENT_INSERT, AcceptedEvent, created_body
from ingest.idempotency import RECORD_INSERT, Claim, find_record
from ingest.models import Event
from ingest.present import present_event
from ingest.ratelimits import BurstState
from ingest.responses import state_headers
from sources.keys import digest_of, lookup_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(secret):
    return lookup_key(digest_of(secret))


def test_an_accepted_events_row_holds_every_column_with_the_defaults_filled_in(key):
    now = timezone.now()
    event = AcceptedEvent(key, {"status": "success", "metadata": {"é": 1}}, now)
    row = dict(zip(EVENT_COLUMNS, event.row(), strict=True))
    assert row == {
        "public_id": event.public_id, "workspace_id": key.workspace_id,
        "source_id": key.source_id, "status": "success", "message": "", "description": "",
        "event_type": "", "external_id": "", "duration_ms": None, "metadata": '{"é":1}',
        "received_at": now,
    }
    assert event.body == created_body(event.public_id) == json.dumps(
        {"id": event.public_id}, separators=(",", ":")
    )
    assert event.record() is None


def test_the_live_item_is_what_the_stored_event_presents(key):
    fields = {"status": "failure", "message": "m", "eventType": "x", "duration_ms": 4820.0,
              "external_id": "ext", "metadata": {"a": [1, 2]}}
    fields.pop("eventType")
    decision = AcceptedEvent(key, {**fields, "event_type": "call.logged"}, timezone.now())
    with connection.cursor() as cursor:
        ops = connection.ops
        values = list(decision.row())
        values[-1] = ops.adapt_datetimefield_value(values[-1])
        cursor.execute(EVENT_INSERT + "SELECT " + ", ".join(["%s"] * len(values)), values)
    stored = Event.objects.select_related("source").get(public_id=decision.public_id)
    assert present_event(stored) == decision.item()


def test_the_record_is_written_once_by_its_one_insert_and_a_second_claim_fails(key):
    now = timezone.now()
    claim = Claim(key.source_id, "idem-1", "hash", now)
    decision = AcceptedEvent(key, {"status": "success"}, now, claim)
    assert decision.record() == [key.source_id, "idem-1", "hash", 201, decision.body, now]
    assert claim.insert_sql(201, decision.body)[0].startswith(RECORD_INSERT)
    with transaction.atomic():
        claim.save(201, decision.body)
    record = find_record(key.source_id, "idem-1")
    assert (record.status_code, record.response_body, record.request_hash) == (
        201, decision.body, "hash"
    )
    assert abs(record.created_at - now) < timedelta(seconds=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Claim(key.source_id, "idem-1", "other", now).save(201, "{}")


def test_the_quota_statement_reserves_all_or_nothing(key):
    limits = key.limits
    now = timezone.now()
    start, end = limits.period(now)
    Usage.objects.create(
        workspace_id=limits.workspace_id, period_start=start, period_end=end,
        events=limits.monthly_event_limit - 2,
    )
    assert reservation_params(limits, 3, start) == [
        3, limits.workspace_id, start, 3, limits.monthly_event_limit
    ]
    assert "UPDATE" in RESERVE_ALL_SQL
    with transaction.atomic():
        assert reserve_all(limits, 3, now) is None
        assert reserve_all(limits, 2, now).used == limits.monthly_event_limit


def test_the_state_headers_name_the_quota_and_the_tighter_burst_window(key):
    end = timezone.now() + timedelta(days=1)
    quota = QuotaState(limit=10, used=12, granted=0, period_end=end)
    burst = BurstState(limit=5, remaining=4, reset_seconds=1, exceeded=False)
    assert dict(state_headers(quota, burst)) == {
        "X-Quota-Limit": "10", "X-Quota-Remaining": "0",
        "X-Quota-Reset": str(int(end.timestamp())),
        "RateLimit-Limit": "5", "RateLimit-Remaining": "4", "RateLimit-Reset": "1",
    }
    assert state_headers(None, None) == []
