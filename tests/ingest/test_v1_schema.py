"""/openapi/v1.yaml describes both APIs completely; /docs/api/ works with no internet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command

from ackly.errors import ERROR_CODES
from ingest.models import Category, EventStatus

pytestmark = pytest.mark.django_db

COMMITTED = Path(settings.BASE_DIR) / "docs" / "openapi" / "v1.yaml"

# Every status each operation can answer (the tests of each endpoint produce them).
EXPECTED_RESPONSES = {
    ("/api/ingest", "post"): {"201", "400", "401", "403", "409", "413", "429", "500"},
    ("/api/v1/ingest/ping", "get"): {"200", "401", "402", "403", "429", "500"},
    ("/api/v1/ingest/events", "post"): {
        "202", "207", "400", "401", "402", "403", "404", "409", "413", "429", "500",
    },
    ("/api/v1/ingest/snapshots", "post"): {
        "202", "400", "401", "402", "403", "404", "409", "413", "429", "500",
    },
    ("/api/v1/events", "get"): {"200", "400", "401", "402", "403", "429", "500"},
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> str:
    """The schema as `make schema` writes it; --fail-on-warn turns any warning into an error."""
    path = tmp_path_factory.mktemp("schema") / "v1.yaml"
    call_command("spectacular", "--file", str(path), "--validate", "--fail-on-warn")
    return path.read_text()


@pytest.fixture(scope="module")
def schema(generated) -> dict:
    return yaml.safe_load(generated)


def test_the_committed_schema_is_the_generated_one(generated):
    assert COMMITTED.read_text() == generated, (
        "docs/openapi/v1.yaml is out of date: run `make schema` and commit the result"
    )


def test_the_served_schema_is_the_committed_one(client):
    response = client.get("/openapi/v1.yaml")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")  # OpenAPI YAML
    assert yaml.safe_load(response.content) == yaml.safe_load(COMMITTED.read_text())


def test_it_describes_every_operation_and_every_status(schema):
    operations = {
        (path, method) for path, item in schema["paths"].items() for method in item
    }
    assert operations == set(EXPECTED_RESPONSES)
    for (path, method), codes in EXPECTED_RESPONSES.items():
        responses = schema["paths"][path][method]["responses"]
        assert set(responses) == codes, (path, method)
        for code, response in responses.items():
            assert "application/json" in response["content"], (path, code)


def test_request_bodies_are_described(schema):
    def body(path: str) -> str:
        content = schema["paths"][path]["post"]["requestBody"]["content"]
        return content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]

    assert body("/api/ingest") == "IngestEvent"
    assert body("/api/v1/ingest/events") == "EventsRequest"
    assert body("/api/v1/ingest/snapshots") == "SnapshotRequest"
    components = schema["components"]["schemas"]
    assert components["EventsRequest"]["properties"]["events"]["maxItems"] == 500
    assert set(components["TimelineEvent"]["required"]) == {"eventType", "category", "actor"}
    metrics = components["SnapshotRequest"]["properties"]["metrics"]
    assert (metrics["minProperties"], metrics["maxProperties"]) == (1, 100)
    assert len(metrics["additionalProperties"]["oneOf"]) == 3


def test_errors_use_the_envelope_with_every_code_and_the_enums(schema):
    components = schema["components"]["schemas"]
    assert components["ErrorEnvelope"]["properties"]["error"]["$ref"].endswith("/Error")
    assert set(components["Error"]["required"]) == {"code", "message", "requestId", "docsUrl"}
    assert components["ErrorCode"]["enum"] == list(ERROR_CODES)
    assert components["Category"]["enum"] == list(Category.values)
    assert components["EventStatus"]["enum"] == list(EventStatus.values)
    events = schema["paths"]["/api/v1/ingest/events"]["post"]["responses"]
    batch_error = events["403"]["content"]["application/json"]["schema"]["$ref"]
    assert batch_error.endswith("/BatchErrorEnvelope")
    assert {"accepted", "rejected", "batchLimit", "results"} <= set(
        components["BatchErrorEnvelope"]["properties"]
    )


def test_the_bearer_scheme_guards_every_operation(schema):
    assert schema["components"]["securitySchemes"]["bearerKey"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "ak_live_ + 40 base62 characters",
        "description": "A source's key, shown once when it is created or rotated.",
    }
    for item in schema["paths"].values():
        for operation in item.values():
            assert operation["security"] == [{"bearerKey": []}]


def test_headers_and_parameters_are_described(schema):
    for (path, method) in EXPECTED_RESPONSES:
        operation = schema["paths"][path][method]
        parameters = {(p["in"], p["name"]) for p in operation.get("parameters", [])}
        responses = operation["responses"]
        if method == "post":
            assert {("header", "Idempotency-Key"), ("query", "dryRun")} <= parameters
            success = min(responses)
            assert "Idempotent-Replayed" in responses[success]["headers"]
        for code, response in responses.items():
            assert "X-Request-Id" in response["headers"], (path, code)
        quota_headers = {
            "X-Quota-Limit", "X-Quota-Remaining", "X-Quota-Reset",
            "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
        }
        assert quota_headers <= set(responses[min(responses)]["headers"])
        assert "Retry-After" in responses["429"]["headers"]


def test_the_interactive_reference_uses_only_local_assets(client):
    response = client.get("/docs/api/")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, "the page loads Swagger UI's assets"
    start_up = [asset for asset in assets if asset.startswith("/docs/api/?")]
    assert len(start_up) == 1, assets  # Swagger UI's start-up script, served beside the page
    for asset in assets:
        assert asset.startswith("/static/") or asset in start_up, asset
        assert client.get(asset).status_code == 200, asset
    script = client.get(start_up[0]).content.decode()
    assert "cdn" not in html.lower() and "cdn" not in script.lower()
    assert "/openapi/v1.yaml" in script
