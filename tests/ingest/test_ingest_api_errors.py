"""Every error under /api/ is the envelope: ours, DRF's, Django's 404/405/500 (SPEC §5)."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import pytest
from django.test import Client

from ingest.api import IngestView

pytestmark = pytest.mark.django_db


def assert_envelope(response, code: str, status: int) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "requestId", "docsUrl"}
    assert error["code"] == code
    assert error["requestId"].startswith("req_")
    assert error["requestId"] == response["X-Request-Id"]
    assert urlparse(error["docsUrl"]).path == f"/docs/errors/{code}/"
    assert b"<html" not in response.content.lower()
    assert b"Traceback" not in response.content
    return error


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings):
    if request.param and getattr(request.node, "callspec", None) and (
        request.node.callspec.params.get("api") == "fastlane"
    ):
        pytest.skip("the fastlane server runs the production recipe: DEBUG off only")
    settings.DEBUG = request.param
    return request.param


def test_get_on_the_ingest_path_is_a_405_envelope(api, debug, auth_header):
    for path in ("/api/ingest", "/api/ingest/"):
        response = api.get(path, **auth_header)
        error = assert_envelope(response, "method_not_allowed", 405)
        assert "GET" in error["message"]
        assert "POST" in response["Allow"]


def test_put_and_delete_are_405_even_without_a_key(api, debug):
    assert_envelope(api.generic("PUT", "/api/ingest"), "method_not_allowed", 405)
    assert_envelope(api.generic("DELETE", "/api/ingest"), "method_not_allowed", 405)


@pytest.mark.parametrize("path", ["/api/nope", "/api/", "/api", "/api/ingest/extra"])
def test_unknown_api_paths_are_a_404_envelope(api, debug, path):
    # CSRF checks on, as for a real client: no POST under /api/ may meet Django's HTML 403.
    assert_envelope(api.post(path), "not_found", 404)
    assert_envelope(api.generic("PUT", path), "not_found", 404)
    assert_envelope(api.get(path), "not_found", 404)


# In process: the failure is patched into this process's view.
def test_an_unexpected_failure_is_a_500_envelope_without_a_trace(
    client, debug, auth_header, monkeypatch, caplog
):
    def explode(self, validated, ctx):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(IngestView, "store", explode)
    response = Client(raise_request_exception=False).post(
        "/api/ingest", '{"status": "success"}', content_type="application/json", **auth_header
    )
    error = assert_envelope(response, "internal_error", 500)
    assert "secret internal detail" not in response.content.decode()
    assert "retry" in error["message"].lower()
    assert any(r.exc_info for r in caplog.records)  # the trace goes to the log, not the client


# In process: the URLconf is this process's setting.
def test_a_plain_django_view_failing_under_api_is_a_500_envelope(debug, settings, caplog):
    settings.ROOT_URLCONF = "tests.ingest.raising_urls"
    response = Client(raise_request_exception=False).get("/api/boom")
    assert_envelope(response, "internal_error", 500)
    assert "secret internal detail" not in response.content.decode()


def test_django_handler500_answers_the_envelope_on_api_paths(rf):
    from ackly.views import handler500

    response = handler500(rf.post("/api/ingest"))
    assert_envelope(response, "internal_error", 500)


@pytest.mark.parametrize(
    "code",
    ["invalid_body", "missing_authorization", "invalid_key", "key_revoked", "key_expired",
     "payload_too_large", "quota_exceeded", "rate_limited", "idempotency_key_reused",
     "not_found", "method_not_allowed", "internal_error"],
)
def test_every_docs_url_answers_200(client, code):
    response = client.get(urlparse(f"http://testserver/docs/errors/{code}/").path)
    assert response.status_code == 200


def test_the_docs_url_of_a_real_error_answers_200(api):
    error = api.post("/api/ingest").json()["error"]
    assert api.get(urlparse(error["docsUrl"]).path).status_code == 200


# In process: PUBLIC_BASE_URL is this process's setting.
def test_public_base_url_makes_docs_urls_absolute_on_that_host(client, settings):
    settings.PUBLIC_BASE_URL = "https://ackly.example.com/"
    error = client.post("/api/ingest").json()["error"]
    assert error["docsUrl"] == "https://ackly.example.com/docs/errors/missing_authorization/"
