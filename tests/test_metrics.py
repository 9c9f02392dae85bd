"""GET /metrics: who may scrape it, and that each metric moves by exactly what happened.

Values are read the way Prometheus reads them: the text format, parsed with prometheus-client's
own parser, before and after. Every test compares differences, never absolute values: the
metrics live as long as the process.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from ackly import metrics
from ackly.routing import websocket_urlpatterns
from tests.ingest.v1support import post_events, seed_event
from tests.servers import ROOT, server_env, uvicorn

TOKEN = "test-metrics-token-0123456789abcdef"
BEARER = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
SEED = {"status": "success", "message": "Nightly backup completed"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parsed(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.fixture
def scrape(client, metrics_token):
    """The parsed samples of GET /metrics, as Prometheus scrapes them."""

    def get() -> Samples:
        response = client.get("/metrics", **BEARER)
        assert response.status_code == 200, response.content
        return parsed(response.content.decode())

    return get


@pytest.fixture
def ingest(client, auth_header):
    def send(body, path: str = "/api/ingest", **extra):
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return client.post(path, data, content_type="application/json", **{**auth_header, **extra})

    return send


# --- Who may scrape ------------------------------------------------------------------------------


def test_without_the_token_setting_metrics_is_an_unknown_url(client, settings):
    settings.METRICS_TOKEN = None
    settings.DEBUG = False
    response = client.get("/metrics", **BEARER)
    unknown = client.get("/metricz", **BEARER)
    assert response.status_code == unknown.status_code == 404
    assert response["Content-Type"] == unknown["Content-Type"]
    assert response.content.replace(b"metrics", b"metricz") == unknown.content


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer{TOKEN}",
     TOKEN],
    ids=["missing", "wrong", "basic", "longer", "no-space", "no-scheme"],
)
def test_it_refuses_a_missing_or_wrong_token(client, metrics_token, authorization):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    response = client.get("/metrics", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert TOKEN.encode() not in response.content
    assert b"ackly_" not in response.content


def test_with_the_token_it_answers_the_prometheus_text_format(client, metrics_token):
    response = client.get("/metrics", **BEARER)
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST  # text/plain; version=…
    assert response["Cache-Control"] == "no-store"
    families = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {
        "ackly_http_requests", "ackly_events_accepted", "ackly_events_rejected",
        "ackly_quota_refused", "ackly_fastlane_group_size", "ackly_fastlane_commit_seconds",
        "ackly_websockets_open", "ackly_broadcast_failures",
    } <= families


def test_the_token_is_never_logged(client, metrics_token, caplog):
    with caplog.at_level(logging.DEBUG):
        client.get("/metrics", **BEARER)
        client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}-wrong")
    assert TOKEN not in caplog.text
    assert all(TOKEN not in str(record.args) for record in caplog.records)


def test_it_is_answered_before_the_host_check(client, metrics_token):
    """Prometheus scrapes each machine by its own address, which ALLOWED_HOSTS need not list."""
    response = client.get("/metrics", HTTP_HOST="10.0.0.11:8001", **BEARER)
    assert response.status_code == 200


# --- Requests, accepted and rejected events ------------------------------------------------------


@pytest.mark.django_db
def test_requests_and_events_move_by_exactly_what_was_served(
    scrape, ingest, client, django_capture_on_commit_callbacks
):
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        assert ingest(SEED).status_code == 201
    assert ingest({"status": "nope"}).status_code == 400
    assert client.get("/api/no-such-endpoint").status_code == 404
    assert client.get("/no-such-page/").status_code == 404
    after = scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "ackly_http_requests_total"
    assert moved(requests, endpoint="api-ingest", executor="pipeline", status="201") == 1
    assert moved(requests, endpoint="api-ingest", executor="pipeline", status="400") == 1
    assert moved(requests, endpoint="ackly.views.api_not_found", executor="pipeline",
                 status="404") == 1
    assert moved(requests, endpoint="unmatched", executor="pipeline", status="404") == 1
    assert moved("ackly_events_accepted_total", endpoint="api-ingest", executor="pipeline") == 1
    assert moved("ackly_events_rejected_total", code="invalid_body") == 1
    # Four requests in all: the scrapes themselves are not counted.
    total = sum(v for (name, _), v in after.items() if name == requests)
    assert total - sum(v for (name, _), v in before.items() if name == requests) == 4


@pytest.mark.django_db
def test_a_refusal_without_a_known_source_is_counted_by_its_code(scrape, client):
    before = scrape()
    client.post("/api/ingest", json.dumps(SEED), content_type="application/json")
    client.post("/api/ingest", json.dumps(SEED), content_type="application/json",
                HTTP_AUTHORIZATION="Bearer ak_live_" + "x" * 40)
    after = scrape()
    for code in ("missing_authorization", "invalid_key"):
        name = "ackly_events_rejected_total"
        assert value(after, name, code=code) - value(before, name, code=code) == 1


@pytest.mark.django_db
def test_a_revoked_key_is_counted_once(scrape, ingest, source_and_key):
    from sources.services import revoke_key

    revoke_key(source_and_key[1].key)
    before = scrape()
    assert ingest(SEED).status_code == 401
    after = scrape()
    name = "ackly_events_rejected_total"
    assert value(after, name, code="key_revoked") - value(before, name, code="key_revoked") == 1


@pytest.mark.django_db
def test_a_v1_batch_counts_each_accepted_and_each_rejected_event(
    scrape, client, auth_header, django_capture_on_commit_callbacks
):
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        response = post_events(
            client, [seed_event(), seed_event(eventType="not.allowed"), seed_event()], auth_header
        )
    assert response.status_code == 207, response.content
    (rejection,) = response.json()["results"]["rejected"]
    after = scrape()
    accepted = "ackly_events_accepted_total"
    assert value(after, accepted, endpoint="api-v1-events", executor="pipeline") - value(
        before, accepted, endpoint="api-v1-events", executor="pipeline") == 2
    rejected = "ackly_events_rejected_total"
    code = rejection["code"]
    assert value(after, rejected, code=code) - value(before, rejected, code=code) == 1


@pytest.mark.django_db
def test_a_batch_past_the_quota_counts_only_the_events_it_stored(
    scrape, client, auth_header, workspace, django_capture_on_commit_callbacks
):
    workspace.event_limit_override = 2
    workspace.save()
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        response = post_events(client, [seed_event(), seed_event(), seed_event()], auth_header)
    assert response.status_code == 207, response.content
    assert response.json()["accepted"] == 2
    after = scrape()
    accepted, rejected = "ackly_events_accepted_total", "ackly_events_rejected_total"
    assert value(after, accepted, endpoint="api-v1-events", executor="pipeline") - value(
        before, accepted, endpoint="api-v1-events", executor="pipeline") == 2
    assert value(after, rejected, code="quota_exceeded") - value(
        before, rejected, code="quota_exceeded") == 1
    assert value(after, "ackly_quota_refused_total", endpoint="api-v1-events") - value(
        before, "ackly_quota_refused_total", endpoint="api-v1-events") == 1


@pytest.mark.django_db
def test_a_replayed_request_counts_its_event_once(
    scrape, ingest, django_capture_on_commit_callbacks
):
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        first = ingest(SEED, HTTP_IDEMPOTENCY_KEY="metrics-once")
        again = ingest(SEED, HTTP_IDEMPOTENCY_KEY="metrics-once")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    after = scrape()
    name = "ackly_events_accepted_total"
    assert value(after, name, endpoint="api-ingest", executor="pipeline") - value(
        before, name, endpoint="api-ingest", executor="pipeline") == 1


@pytest.mark.django_db
def test_a_dry_run_counts_no_event(scrape, ingest, django_capture_on_commit_callbacks):
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        assert ingest(SEED, path="/api/ingest?dryRun=true").status_code == 201
        assert ingest({"status": "nope"}, path="/api/ingest?dryRun=true").status_code == 400
    after = scrape()
    for name in ("ackly_events_accepted_total", "ackly_events_rejected_total"):
        assert [(k, v) for k, v in after.items() if k[0] == name] == [
            (k, v) for k, v in before.items() if k[0] == name
        ]


@pytest.mark.django_db
def test_a_quota_refusal_is_counted_once(scrape, ingest, workspace, django_capture_on_commit_callbacks):
    workspace.event_limit_override = 1
    workspace.save()
    with django_capture_on_commit_callbacks(execute=True):
        assert ingest(SEED).status_code == 201
    before = scrape()
    assert ingest(SEED).status_code == 429
    assert ingest(SEED, path="/api/ingest?dryRun=true").status_code == 429  # reserves nothing
    after = scrape()
    refused = "ackly_quota_refused_total"
    assert value(after, refused, endpoint="api-ingest") - value(before, refused, endpoint="api-ingest") == 1
    rejected = "ackly_events_rejected_total"
    assert value(after, rejected, code="quota_exceeded") - value(
        before, rejected, code="quota_exceeded") == 1


# --- Broadcasts, sockets -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_broadcast_is_counted(scrape, ingest, monkeypatch, django_capture_on_commit_callbacks):
    def layer_down():
        raise ConnectionError("redis is down")

    monkeypatch.setattr("ingest.broadcast.get_channel_layer", layer_down)
    # The warning it logs starts the once-per-interval clock: leave it as it was for later tests.
    monkeypatch.setattr("ingest.broadcast._last_warning", float("-inf"))
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        assert ingest(SEED).status_code == 201
    after = scrape()
    name = "ackly_broadcast_failures_total"
    assert value(after, name) - value(before, name) == 1


def open_sockets() -> float:
    return value(parsed(metrics.exposition().decode()), "ackly_websockets_open")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_open_socket_moves_the_gauge_until_it_closes(member, outsider, workspace):
    path = f"/ws/workspaces/{workspace.public_id}/"
    try:
        before = open_sockets()
        refused = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        refused.scope["user"] = outsider
        assert (await refused.connect())[0] is False
        assert open_sockets() == before

        socket = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        socket.scope["user"] = member
        assert (await socket.connect())[0] is True
        assert open_sockets() == before + 1
        await socket.disconnect()
        assert open_sockets() == before
    finally:
        await database_sync_to_async(connections.close_all)()


# --- What the fast lane calls (ingest/fastlane.py) -----------------------------------------------


def test_the_fast_lanes_calls_move_their_metrics():
    before = parsed(metrics.exposition().decode())
    metrics.observe_group(3, 0.004)
    metrics.observe_batch_commit(0.02)
    metrics.events_accepted("api-ingest", 3, metrics.FASTLANE)
    metrics.request_served("api-ingest", metrics.FASTLANE, 201)
    after = parsed(metrics.exposition().decode())

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("ackly_fastlane_group_size_count") == 1
    assert moved("ackly_fastlane_group_size_sum") == 3
    assert moved("ackly_fastlane_group_size_bucket", le="2.0") == 0
    assert moved("ackly_fastlane_group_size_bucket", le="4.0") == 1
    assert moved("ackly_fastlane_commit_seconds_count", lane="group") == 1
    assert moved("ackly_fastlane_commit_seconds_bucket", lane="group", le="0.005") == 1
    assert moved("ackly_fastlane_commit_seconds_count", lane="batch") == 1
    assert moved("ackly_events_accepted_total", endpoint="api-ingest", executor="fastlane") == 3
    assert moved("ackly_http_requests_total", endpoint="api-ingest", executor="fastlane",
                 status="201") == 1


# --- Several processes ---------------------------------------------------------------------------


def _in_a_process(directory: Path, code: str) -> None:
    """Run `code` in a new Python process counting in `directory` (multiprocess mode)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


def _collected(directory: Path) -> Samples:
    from prometheus_client import generate_latest

    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(directory))
    return parsed(generate_latest(registry).decode())


def test_a_dead_process_sockets_leave_the_sum_its_counters_stay(tmp_path):
    # Two sockets and a failed broadcast, then killed: no exit hook runs.
    _in_a_process(tmp_path, "import os\nfrom ackly import metrics\nmetrics.socket_opened()\n"
                            "metrics.socket_opened()\nmetrics.broadcast_failed()\nos._exit(0)")
    # One socket, then a normal exit: its socket leaves the sum at once.
    _in_a_process(tmp_path, "from ackly import metrics\nmetrics.socket_opened()")
    assert value(_collected(tmp_path), "ackly_websockets_open") == 2

    metrics.forget_dead_processes(str(tmp_path))  # what every scrape does first

    samples = _collected(tmp_path)
    assert value(samples, "ackly_websockets_open") == 0
    assert value(samples, "ackly_broadcast_failures_total") == 1


def _per_worker(directory: Path, endpoint: str) -> dict[str, float]:
    """This endpoint's 404 count in each process's own counter file (the file names its pid)."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if (sample.name == "ackly_http_requests_total"
                        and sample.labels.get("endpoint") == endpoint
                        and sample.labels.get("status") == "404"):
                    counts[path.name] = counts.get(path.name, 0) + sample.value
    return counts


@pytest.mark.server
def test_a_scrape_sums_the_requests_of_every_uvicorn_worker(tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = server_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", PROMETHEUS_MULTIPROC_DIR=str(directory),
        METRICS_TOKEN=TOKEN,
    )
    env.pop("REDIS_URL", None)
    endpoint = "ackly.views.api_not_found"
    with uvicorn(env, tmp_path / "uvicorn.log", workers=2) as base:

        def miss(_: int) -> int:
            with httpx.Client(timeout=10) as fresh:  # a connection of its own: any worker
                return fresh.get(f"{base}/api/counted-by-a-worker").status_code

        sent = 0
        with ThreadPoolExecutor(8) as pool:
            for _round in range(20):
                assert set(pool.map(miss, range(40))) == {404}
                sent += 40
                if len([n for n in _per_worker(directory, endpoint).values() if n > 0]) == 2:
                    break
                time.sleep(0.1)
        scraped = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scraped.status_code == 200
        samples = parsed(scraped.text)

    per_worker = _per_worker(directory, endpoint)
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
    assert sum(per_worker.values()) == sent
    assert value(samples, "ackly_http_requests_total", endpoint=endpoint, executor="pipeline",
                 status="404") == sent
