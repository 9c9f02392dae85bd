"""The monthly quota and the burst limits of POST /api/ingest (SPEC §3, §5)."""

from __future__ import annotations

import math
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import Plan, Usage
from billing.periods import billing_period
from billing.services import set_plan
from ingest.models import Event, Rejection
from sources.services import create_source, issue_key

URL = "/api/ingest"
BODY = '{"status": "success", "message": "nightly"}'

pytestmark = pytest.mark.django_db


def send(client, secret: str, path: str = URL):
    """POST the body with `secret` through `client` (the `api` fixture or Django's client)."""
    return client.post(path, BODY, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {secret}")


# --- quota ---------------------------------------------------------------------------------------


def test_exactly_the_limit_is_accepted_then_quota_exceeded(api, secret, workspace):
    workspace.event_limit_override = 3
    workspace.save()
    statuses = [send(api, secret).status_code for _ in range(3)]
    assert statuses == [201, 201, 201]
    response = send(api, secret)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"
    _, end = billing_period(workspace.billing_anchor, timezone.now())
    expected = math.ceil((end - timezone.now()).total_seconds())
    assert abs(int(response["Retry-After"]) - expected) <= 2
    assert response["X-Quota-Limit"] == "3"
    assert response["X-Quota-Remaining"] == "0"
    assert response["X-Quota-Reset"] == str(int(end.timestamp()))
    assert Event.objects.count() == 3
    assert Usage.objects.get(workspace=workspace).events == 3
    assert Rejection.objects.get().code == "quota_exceeded"


def test_the_workspace_override_replaces_the_plan_limit(api, secret, workspace):
    workspace.event_limit_override = 1
    workspace.save()
    assert send(api, secret)["X-Quota-Limit"] == "1"
    assert send(api, secret).status_code == 429


# In process: the next period comes by patching this process's clock.
def test_a_new_billing_period_lets_events_through_again(client, secret, workspace, monkeypatch):
    workspace.event_limit_override = 1
    workspace.save()
    assert send(client, secret).status_code == 201
    assert send(client, secret).status_code == 429
    later = timezone.now() + timedelta(days=32)
    monkeypatch.setattr("django.utils.timezone.now", lambda: later)
    response = send(client, secret)
    assert response.status_code == 201
    assert response["X-Quota-Remaining"] == "0"
    assert Usage.objects.filter(workspace=workspace).count() == 2


def test_an_upgrade_lets_the_next_request_through(api, free_workspace):
    Plan.objects.filter(code="free").update(monthly_event_limit=2)
    _, issued = create_source(free_workspace, "Cron")
    assert [send(api, issued.secret).status_code for _ in range(3)] == [201, 201, 429]
    set_plan(free_workspace, "starter")
    response = send(api, issued.secret)
    assert response.status_code == 201
    assert response["X-Quota-Limit"] == "250000"


def test_a_plan_edit_in_the_admin_applies_to_the_next_request(api, free_workspace):
    _, issued = create_source(free_workspace, "Cron")
    assert send(api, issued.secret)["X-Quota-Limit"] == "10000"
    plan = Plan.objects.get(code="free")
    plan.monthly_event_limit = 1
    plan.save()
    assert send(api, issued.secret).status_code == 429


# --- burst ---------------------------------------------------------------------------------------
# In process: the rate clock is frozen (or moved) in this process; a server's real clock could
# split a burst over two 1 s windows (tests/ingest/test_fastlane.py redoes such a burst instead).


@pytest.fixture
def tight_plan(workspace):
    plan = workspace.plan
    plan.burst_per_key = 2
    plan.burst_per_workspace = 3
    plan.save()
    return plan


def test_the_per_key_burst_limit_answers_rate_limited(
    client, secret, tight_plan, frozen_rate_clock
):
    first, second = send(client, secret), send(client, secret)
    assert (first.status_code, second.status_code) == (201, 201)
    assert (first["RateLimit-Limit"], first["RateLimit-Remaining"]) == ("2", "1")
    assert second["RateLimit-Remaining"] == "0"
    third = send(client, secret)
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "rate_limited"
    assert int(third["Retry-After"]) >= 1
    assert third["RateLimit-Remaining"] == "0"
    assert Event.objects.count() == 2
    assert Rejection.objects.get().code == "rate_limited"


def test_the_per_workspace_burst_limit_spans_keys(
    client, source, secret, tight_plan, frozen_rate_clock
):
    other = issue_key(source).secret
    assert send(client, secret).status_code == 201
    assert send(client, secret).status_code == 201
    response = send(client, other)
    assert response.status_code == 201
    # The workspace window (3) binds now, though this key has used only one of its two.
    assert (response["RateLimit-Limit"], response["RateLimit-Remaining"]) == ("3", "0")
    refused = send(client, other)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused["RateLimit-Limit"] == "3"


def test_another_workspace_has_its_own_window(
    client, secret, tight_plan, other_workspace, frozen_rate_clock
):
    _, issued = create_source(other_workspace, "Globex jobs")
    for _ in range(2):
        send(client, secret)
    assert send(client, secret).status_code == 429
    assert send(client, issued.secret).status_code == 201


def test_the_window_resets(client, secret, tight_plan, monkeypatch):
    instant = [float(int(time.time())) + 0.5]
    monkeypatch.setattr("ingest.ratelimits.time.time", lambda: instant[0])
    for _ in range(2):
        send(client, secret)
    assert send(client, secret).status_code == 429
    instant[0] += 1
    assert send(client, secret).status_code == 201
