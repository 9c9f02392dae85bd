"""GET /healthz and GET /readyz: what a load balancer's probe sees."""

from __future__ import annotations

import httpx
import pytest

from tests.servers import daphne, free_port, server_env


def test_healthz_answers_any_host_over_plain_http_without_touching_the_database(client, settings):
    # A probe uses the machine's address and plain http, which the site itself refuses. No
    # django_db mark: a query here would raise.
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8001")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"
    assert "sessionid" not in response.cookies


@pytest.mark.django_db(transaction=True)
def test_readyz_says_each_dependency_answers(client, settings):
    response = client.get("/readyz", HTTP_HOST="10.1.2.3")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["failed"] == []
    expected = {"database": "ok", **({"redis": "ok"} if settings.REDIS_URL else {})}
    assert body["checks"] == expected


def test_probes_refuse_other_methods(client):
    response = client.post("/healthz")

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


@pytest.mark.server
def test_readyz_names_the_dependencies_that_do_not_answer(tmp_path):
    """A real server whose database and Redis are unreachable: alive, but not ready."""
    dead_port = free_port()  # nothing listens there
    env = server_env(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{dead_port}/nowhere",
        REDIS_URL=f"redis://127.0.0.1:{dead_port}/1",
        READY_TIMEOUT_SECONDS="1",
        DB_POOL_MIN="0",
    )
    with daphne(env, tmp_path / "daphne.log", probe="/healthz") as base:
        alive = httpx.get(f"{base}/healthz", timeout=5)
        ready = httpx.get(f"{base}/readyz", timeout=10)

    assert alive.status_code == 200
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["failed"] == ["database", "redis"]
    assert body["checks"]["database"] != "ok" and body["checks"]["redis"] != "ok"
    assert "Traceback" not in ready.text
