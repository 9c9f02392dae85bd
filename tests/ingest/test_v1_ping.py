"""GET /api/v1/ingest/ping, and the plan gate every v1 endpoint shares (402 plan_disabled)."""

from __future__ import annotations

import pytest

from ingest.models import Rejection, SnapshotHistory, TimelineEvent
from sources.services import create_source, revoke_key
from tests.ingest.v1support import seed_event

pytestmark = pytest.mark.django_db


def test_ping_echoes_the_organization_and_the_app(api, auth_header, workspace, source):
    response = api.get("/api/v1/ingest/ping", **auth_header)

    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "organizationId": workspace.public_id,
        "app": {"id": source.public_id, "slug": "crm-hub", "name": "CRM Hub"},
    }
    assert response["X-Request-Id"].startswith("req_")
    assert response["X-Quota-Limit"] == "5000000"
    assert response["RateLimit-Limit"] == "500"


def test_ping_works_with_a_trailing_slash(api, auth_header):
    assert api.get("/api/v1/ingest/ping/", **auth_header).status_code == 200


def test_ping_without_a_key_is_refused(api):
    response = api.get("/api/v1/ingest/ping")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_authorization"


def test_ping_with_a_revoked_key_is_refused(api, auth_header, source_and_key):
    revoke_key(source_and_key[1].key)
    response = api.get("/api/v1/ingest/ping", **auth_header)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "key_revoked"


def test_ping_takes_only_get(api, auth_header):
    response = api.post("/api/v1/ingest/ping", **auth_header)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.fixture
def free_auth(free_workspace):
    source, issued = create_source(free_workspace, "Cron", allowed_event_types=["ticket.resolved"])
    return source, {"HTTP_AUTHORIZATION": f"Bearer {issued.secret}"}


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("get", "/api/v1/ingest/ping", None),
        ("post", "/api/v1/ingest/events", {"events": [seed_event()]}),
        ("post", "/api/v1/ingest/snapshots",
         {"snapshotType": "t", "actor": {"email": "a@b.co"}, "metrics": {"x": 1}}),
    ],
)
def test_every_v1_endpoint_needs_a_plan_with_the_developer_api(
    api, free_auth, method, path, body
):
    source, auth = free_auth
    if method == "get":
        response = api.get(path, **auth)
    else:
        response = api.post(path, body, content_type="application/json", **auth)

    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "plan_disabled"
    assert error["docsUrl"].endswith("/docs/errors/plan_disabled/")
    assert not TimelineEvent.objects.exists() and not SnapshotHistory.objects.exists()
    assert Rejection.objects.get(source=source).code == "plan_disabled"


def test_the_ingest_api_stays_open_on_the_free_plan(api, free_auth):
    _, auth = free_auth
    response = api.post(
        "/api/ingest", {"status": "success"}, content_type="application/json", **auth
    )
    assert response.status_code == 201
