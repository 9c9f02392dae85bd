"""Prometheus metrics: every metric Ackly exports, the functions that move them, and `GET /metrics`.

Each metric is defined once, here, and moved through a small named function (`events_accepted`,
`observe_group`, …) so the code that calls it reads as what happened, not as instrumentation.

Processes: under uvicorn's `--workers` (and with Daphne beside it) each process counts in its
own files in `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multiprocess mode, chosen when the
library is first imported, so the variable must be in the environment of every process), and a
scrape of any one process sums the files of all of them. Without the variable (`make run`, the
tests) the process's own registry is scraped. Live gauges (open sockets) of a process that
exits are dropped at exit, and those of a process that died without exiting (SIGKILL, OOM) at
the next scrape; counters of dead processes stay in the sums, so totals never go backwards.

`GET /metrics` is answered by `MetricsMiddleware`, right after the health probes and so before
the Host check and the HTTPS redirect: Prometheus scrapes each machine by its own address
(the counts are per machine), over the private network, with the bearer token. Without
`METRICS_TOKEN` the middleware steps aside and the path is an unknown URL like any other.
"""

from __future__ import annotations

import atexit
import hmac
import os
import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

PATH = "/metrics"

# Read when prometheus-client is imported (here), as the library itself decides.
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")

# Executors: who answered a request or stored an event.
PIPELINE = "pipeline"  # Django: the per-request pipeline, the dashboard, the admin
FASTLANE = "fastlane"  # ingest/fastlane.py, on the server's event loop

# --- The metrics ------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "ackly_http_requests",
    "HTTP requests answered, by URL route name (the view's dotted path when unnamed; "
    "'unmatched' for none), executor and status. Health probes and scrapes are not counted.",
    ["endpoint", "executor", "status"],
)
EVENTS_ACCEPTED = Counter(
    "ackly_events_accepted",
    "Events committed (the quota they used), by endpoint and executor.",
    ["endpoint", "executor"],
)
EVENTS_REJECTED = Counter(
    "ackly_events_rejected",
    "Refused events by error code: one per refused request, one per refused event of a v1 "
    "batch. Dry runs are not counted.",
    ["code"],
)
QUOTA_REFUSED = Counter(
    "ackly_quota_refused",
    "Quota reservations refused in full or in part (the monthly quota is used up), by endpoint.",
    ["endpoint"],
)
GROUP_SIZE = Histogram(
    "ackly_fastlane_group_size",
    "Requests written by one COMMIT of the fast lane's single events.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
COMMIT_SECONDS = Histogram(
    "ackly_fastlane_commit_seconds",
    "Seconds a fast-lane COMMIT took: lane group (single events) or batch (a v1 batch, with "
    "its quota statement).",
    ["lane"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
WEBSOCKETS_OPEN = Gauge(
    "ackly_websockets_open",
    "Dashboard websockets accepted and not yet closed, summed over live processes.",
    multiprocess_mode="livesum",
)
BROADCAST_FAILURES = Counter(
    "ackly_broadcast_failures",
    "Live messages that could not be sent to the channel layer (Redis); pages catch up over HTTP.",
)

# --- What the rest of the code calls ----------------------------------------------------------

# Children by label values: `.labels()` costs a lock and a tuple build per call; the hot path
# only reads this dict (a race adds the same child twice, harmlessly).
_served: dict[tuple[str, str, int], Callable[[], None]] = {}


def endpoint_of(request: HttpRequest) -> str:
    """The request's URL route name (its view's dotted path when unnamed), never the raw path:
    a label with a bounded number of values."""
    match = request.resolver_match
    return "unmatched" if match is None else match.view_name


def request_served(endpoint: str, executor: str, status: int) -> None:
    """Count one answered HTTP request."""
    inc = _served.get((endpoint, executor, status))
    if inc is None:
        inc = _served[(endpoint, executor, status)] = HTTP_REQUESTS.labels(
            endpoint, executor, str(status)
        ).inc
    inc()


_accepted: dict[tuple[str, str], Callable[[float], None]] = {}


def events_accepted(endpoint: str, n: int, executor: str = PIPELINE) -> None:
    """Count `n` events of one request (call it after COMMIT)."""
    inc = _accepted.get((endpoint, executor))
    if inc is None:
        inc = _accepted[(endpoint, executor)] = EVENTS_ACCEPTED.labels(endpoint, executor).inc
    inc(n)


def events_rejected(counts: dict[str, int]) -> None:
    """Count refused events, {code: n}."""
    for code, n in counts.items():
        EVENTS_REJECTED.labels(code).inc(n)


def quota_refused(endpoint: str) -> None:
    """Count one quota reservation that was refused in full or in part."""
    QUOTA_REFUSED.labels(endpoint).inc()


def observe_group(size: int, commit_seconds: float) -> None:
    """One committed group of the fast lane's single events: its size and its COMMIT's seconds."""
    GROUP_SIZE.observe(size)
    COMMIT_SECONDS.labels("group").observe(commit_seconds)


def observe_batch_commit(commit_seconds: float) -> None:
    """One committed v1 batch of the fast lane: its quota statement and COMMIT's seconds."""
    COMMIT_SECONDS.labels("batch").observe(commit_seconds)


def socket_opened() -> None:
    WEBSOCKETS_OPEN.inc()


def socket_closed() -> None:
    WEBSOCKETS_OPEN.dec()


def broadcast_failed() -> None:
    BROADCAST_FAILURES.inc()


# --- Processes (multiprocess mode) ------------------------------------------------------------

# The one file-name convention relied on: a live gauge's file per process is
# gauge_live<mode>_<pid>.db (what mark_process_dead itself deletes). tests/test_metrics.py
# fails if the library changes it.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]*_(\d+)\.db")


def forget_dead_processes(path: str) -> None:
    """Drop the live gauges of processes that died without exiting (SIGKILL, OOM)."""
    for name in os.listdir(path):
        match = _LIVE_GAUGE_FILE.fullmatch(name)
        if match is not None and not _alive(int(match[1])):
            mark_process_dead(int(match[1]), path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


if MULTIPROCESS_DIR:
    # os.getpid() at exit, not now: a process forked after import is a process of its own.
    atexit.register(lambda: mark_process_dead(os.getpid(), MULTIPROCESS_DIR))


def exposition() -> bytes:
    """Every metric in the Prometheus text format: all processes' sums in multiprocess mode."""
    if not MULTIPROCESS_DIR:
        return generate_latest(REGISTRY)
    forget_dead_processes(MULTIPROCESS_DIR)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, MULTIPROCESS_DIR)
    return generate_latest(registry)


# --- GET /metrics and the request counter -----------------------------------------------------


def authorized(request: HttpRequest, token: str) -> bool:
    """Whether the request carries `Authorization: Bearer <token>` (constant-time comparison)."""
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def metrics_view(request: HttpRequest, token: str) -> HttpResponse:
    """GET /metrics with the token: the text format; 401 without it. Never logs the token."""
    if not authorized(request, token):
        response = HttpResponse(
            b"Unauthorized: send Authorization: Bearer <METRICS_TOKEN>\n",
            status=401, content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if request.method not in ("GET", "HEAD"):
        response = HttpResponse(status=405)
        response["Allow"] = "GET, HEAD"
        return response
    response = HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response


class MetricsMiddleware:
    """Counts every response of the chain after it by route, executor and status, and answers
    GET /metrics when METRICS_TOKEN is set (in both chains, right after the health probes)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == PATH and (token := settings.METRICS_TOKEN):
            return metrics_view(request, token)
        response = self.get_response(request)
        request_served(endpoint_of(request), PIPELINE, response.status_code)
        return response
