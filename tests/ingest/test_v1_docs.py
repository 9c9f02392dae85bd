"""Docs pages: every error code (the docsUrl targets), the references, the quick start."""

from __future__ import annotations

import pytest

from ackly.errors import ERROR_CODES
from ingest.models import Category

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_error_code_has_a_page(client, code):
    response = client.get(f"/docs/errors/{code}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"<code>{code}</code>" in html
    assert str(ERROR_CODES[code].status) in html
    assert "What to do" in html


def test_an_unknown_error_code_has_no_page(client):
    assert client.get("/docs/errors/no_such_code/").status_code == 404


def test_the_quick_start_has_copy_paste_curl_for_both_apis(client):
    response = client.get("/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'export ACKLY_BASE_URL="http://testserver"' in html
    assert "/api/ingest" in html and "/api/v1/ingest/ping" in html
    assert "Idempotency-Key: crm-batch-8412" in html
    assert "crm-user-42" in html and "ticket.resolved" in html


@pytest.mark.parametrize(
    "slug, words",
    [
        ("ingest", ["durationMs", "payload_too_large", "201"]),
        ("v1", ["Actor resolution", "snapshotType", "207", "batch_too_large", "unit"]),
        ("behaviour", ["Idempotent-Replayed", "X-Quota-Remaining", "RateLimit-Reset",
                       "dryRun=true", "rejections"]),
        ("errors", ["docsUrl", "worker_not_found"]),
    ],
)
def test_each_reference_page_covers_its_topics(client, slug, words):
    response = client.get(f"/docs/{slug}/")
    assert response.status_code == 200
    html = response.content.decode()
    for word in words:
        assert word in html


def test_the_v1_page_lists_the_seven_categories(client):
    html = client.get("/docs/v1/").content.decode()
    for value in Category.values:
        assert f"<code>{value}</code>" in html
    assert len(Category.values) == 7


def test_the_errors_page_links_every_code(client):
    html = client.get("/docs/errors/").content.decode()
    for code in ERROR_CODES:
        assert f'href="/docs/errors/{code}/"' in html


def test_an_error_response_links_to_an_existing_docs_page(client):
    response = client.get("/api/nowhere")
    docs_url = response.json()["error"]["docsUrl"]
    assert docs_url == "http://testserver/docs/errors/not_found/"
    assert client.get(docs_url.removeprefix("http://testserver")).status_code == 200
