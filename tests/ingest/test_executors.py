"""The `api` fixture's two executors answer alike, and `fastlane` really reaches the fast lane."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from billing.models import Usage
from ingest.models import Event, TimelineEvent
from tests.executors import FASTLANE_METRICS_TOKEN, HttpApi
from tests.ingest.v1support import REQUEST_ID, post_events, seed_event

pytestmark = pytest.mark.django_db

# The API middleware's security headers, on every answer of either executor.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
STATE_HEADERS = ("X-Quota-Limit", "X-Quota-Remaining", "X-Quota-Reset", "RateLimit-Limit",
                 "RateLimit-Remaining", "RateLimit-Reset")


def _served(base: str, client) -> dict[tuple[str, str], float]:
    """ackly_http_requests by (executor, status) for POST /api/ingest, from the server's /metrics."""
    text = client.get(f"{base}/metrics",
                      headers={"Authorization": f"Bearer {FASTLANE_METRICS_TOKEN}"}).text
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ackly_http_requests_total" and "ingest" in sample.labels["endpoint"]:
                key = (sample.labels["executor"], sample.labels["status"])
                counts[key] = counts.get(key, 0) + sample.value
    return counts


@pytest.mark.parametrize(
    ("body", "status"), [('{"status": "success"}', 201), ('{"status": "nope"}', 400)]
)
def test_an_answer_carries_the_same_headers_on_both_executors(api, auth_header, body, status):
    response = api.post("/api/ingest", body, **auth_header)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert REQUEST_ID.match(response["X-Request-Id"])
    for name, value in SECURITY_HEADERS.items():
        assert response[name] == value, name
    for name in STATE_HEADERS:
        assert int(response[name]) >= 0, name
    assert response["X-Quota-Limit"] == "5000000"
    assert response["X-Quota-Remaining"] == ("4999999" if status == 201 else "5000000")
    assert Event.objects.count() == (1 if status == 201 else 0)


def test_a_v1_batch_is_stored_alike_on_both_executors(api, auth_header, workspace):
    response = post_events(api, [seed_event(), seed_event(duration=5)], auth_header)
    assert response.status_code == 202, response.content
    assert response["X-Request-Id"] == response.json()["requestId"]
    for name, value in SECURITY_HEADERS.items():
        assert response[name] == value, name
    stored = TimelineEvent.objects.order_by("duration")
    assert [(e.event_type, e.duration, e.worker.external_id) for e in stored] == [
        ("ticket.resolved", 5, "crm-user-42"), ("ticket.resolved", 240, "crm-user-42")]
    assert Usage.objects.get(workspace=workspace).events == 2


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_the_fastlane_executor_serves_the_common_case_on_the_fast_lane(
    fastlane_api_server, auth_header, workspace
):
    base, client = fastlane_api_server
    api = HttpApi(client)
    before = _served(base, client)
    # The workspace's first request makes its counter row for the period (the pipeline's job);
    # the next ones are the common case.
    statuses = [api.post("/api/ingest", '{"status": "success"}', **auth_header).status_code
                for _ in range(3)]
    assert statuses == [201, 201, 201]
    after = _served(base, client)
    assert after.get(("fastlane", "201"), 0) - before.get(("fastlane", "201"), 0) >= 2, after
    assert Event.objects.count() == 3
