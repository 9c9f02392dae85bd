"""`GET /healthz` and `GET /readyz` for load balancers and orchestrators.

Answered by the first middleware of both chains, before the Host check, the HTTPS redirect,
sessions and logging: a probe sends whatever Host and scheme its platform uses, and a probe
every few seconds is not traffic worth a session or a log line.

* `/healthz` — the process is alive and serving: no I/O at all.
* `/readyz` — the database and (when `REDIS_URL` is set) Redis answer within
  `READY_TIMEOUT_SECONDS`; otherwise 503 naming each one that failed, so the balancer stops
  sending traffic to a process that can only answer 500.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

PATHS = ("/healthz", "/readyz")

# A checker that hangs (a stalled connection) must not hold the probe past the timeout: each
# check runs on this pool's threads and is abandoned, not waited for, when it is late.
_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


def _database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()  # back to the pool: a probe's thread must not keep one


def _redis(url: str) -> None:
    import redis

    timeout = settings.READY_TIMEOUT_SECONDS
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def dependencies() -> dict[str, Callable[[], None]]:
    """What a ready process needs, by the name a 503 reports."""
    checks: dict[str, Callable[[], None]] = {"database": _database}
    if settings.REDIS_URL:
        checks["redis"] = partial(_redis, settings.REDIS_URL)
    return checks


def readiness() -> dict[str, str]:
    """Each dependency's state: "ok", "timeout" or the exception's class name."""
    futures = {name: _checks.submit(check) for name, check in dependencies().items()}
    states = {}
    for name, future in futures.items():
        try:
            future.result(timeout=settings.READY_TIMEOUT_SECONDS)
            states[name] = "ok"
        except FutureTimeout:
            states[name] = "timeout"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", by name
            states[name] = type(exc).__name__
    return states


def _answer(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse({"status": "method_not_allowed"}, status=405)
        response["Allow"] = "GET, HEAD"
    elif request.path == "/healthz":
        response = JsonResponse({"status": "ok"})
    else:
        states = readiness()
        failed = sorted(name for name, state in states.items() if state != "ok")
        response = JsonResponse(
            {"status": "unavailable" if failed else "ok", "checks": states, "failed": failed},
            status=503 if failed else 200,
        )
    response["Cache-Control"] = "no-store"
    return response


class HealthMiddleware:
    """Answers the two probe paths itself; every other request passes through untouched."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path in PATHS:
            return _answer(request)
        return self.get_response(request)
