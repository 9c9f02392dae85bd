"""`manage.py worker` as real processes: events through the real ingest server, webhooks to a real
receiver on 127.0.0.1, the django-tasks-db queue in a database of the test's own.

With PostgreSQL and Redis the server is uvicorn (the fast lane writes the events); with SQLite
it is Daphne (the pipeline). Settings keep the waits short: retries from 1 s, a 6 s lease.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bench.run import die_with_parent
from tests.alerts.receiver import Receiver
from tests.alerts.test_engine import verify
from tests.servers import ROOT, daphne, manage, own_database, server_env, uvicorn

WORKER_SETTINGS = {
    "WEBHOOK_ALLOW_PRIVATE": "1",
    "WEBHOOK_ALLOW_HTTP": "1",
    "ALERTS_POLL_MS": "100",
    "ALERTS_AGGREGATE_SECONDS": "1",
    "ALERTS_RETRY_BASE_SECONDS": "1",
    # Long enough that a loaded machine does not time an answered request out (a retry would
    # look like a duplicate), short enough that a killed worker's lease runs out soon.
    "ALERTS_DELIVERY_TIMEOUT_SECONDS": "5",
    "ALERTS_DELIVERY_LEASE_SECONDS": "6",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[dict[str, str], str, Path]]:
    """A migrated database of its own and an ingest server on it: (env, base URL, log dir)."""
    logs = tmp_path_factory.mktemp("alerts-worker")
    env = server_env(**WORKER_SETTINGS)
    on_postgres = env.get("DATABASE_URL", "").startswith("postgres")
    with own_database(env, "ackly_alerts_engine", sqlite_dir=logs) as env:
        serve = uvicorn if on_postgres and env.get("REDIS_URL") else daphne
        with serve(env, logs / "server.log") as base:
            yield env, base, logs


@contextmanager
def worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    with open(log_path, "a") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "worker"], cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )
        try:
            # Started: the log's first line is written once Django is set up.
            deadline = time.monotonic() + 60
            while "Alerts worker starting" not in log_path.read_text():
                assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def setup_workspace(env: dict[str, str], url: str, *rule_args: str) -> dict[str, str]:
    """A workspace with a source, a webhook channel to `url` and one rule, by the commands."""
    org = manage(env, "createworkspace", "Alerted", "--plan", "pro").splitlines()[-1]
    source_lines = manage(env, "createsource", org, "Sync").splitlines()
    channel_lines = manage(env, "createchannel", org, "--webhook", url).splitlines()
    rule = manage(env, "createrule", org, "--channel", channel_lines[-2], *rule_args).splitlines()
    return {"org": org, "source": source_lines[-2], "key": source_lines[-1],
            "channel": channel_lines[-2], "secret": channel_lines[-1], "rule": rule[-1]}


def send_event(base: str, key: str, status: str, **fields) -> None:
    answer = httpx.post(f"{base}/api/ingest", json={"status": status, **fields},
                        headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert answer.status_code == 201, answer.text


def query(env: dict[str, str], code: str) -> object:
    """A value computed in a Django shell on the test's database (printed as JSON)."""
    return json.loads(manage(env, "shell", "-c", code).strip().splitlines()[-1])


def deliveries(env: dict[str, str], org: str) -> list[list]:
    return query(env, (
        "import json; from alerts.models import Delivery; print(json.dumps(list("
        f"Delivery.objects.filter(channel__workspace__public_id={org!r})"
        ".order_by('id').values_list('public_id', 'purpose', 'state', 'attempts', 'alert_id'))))"
    ))  # type: ignore[return-value]


def wait_until(check, timeout: float = 40) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("timed out")


def test_the_worker_delivers_a_failure_signed_with_retries_then_its_resolution(stack):
    env, base, logs = stack
    with Receiver([(500, 0), (500, 0)]) as receiver, worker(env, logs / "w1.log"):
        ids = setup_workspace(env, receiver.url, "--on", "failure")
        send_event(base, ids["key"], "failure", message="sync failed", eventType="sync.run")
        requests = receiver.wait_for(3)
        assert len({r.headers["Ackly-Delivery"] for r in requests}) == 1
        assert all(verify(ids["secret"], r.headers["Ackly-Signature"], r.body) for r in requests)
        assert requests[0].json()["events"][0]["message"] == "sync failed"
        send_event(base, ids["key"], "success")
        resolved = receiver.wait_for(4)[3]
        assert resolved.json()["type"] == "alert.resolved"
        rows = wait_until(lambda: [d for d in deliveries(env, ids["org"]) if d[2] == "delivered"]
                          if len(deliveries(env, ids["org"])) == 2 else None)
    assert [(d[1], d[2], d[3]) for d in rows] == [("fired", "delivered", 3),
                                                 ("resolved", "delivered", 1)]


def test_a_worker_killed_mid_delivery_leaves_exactly_one_accepted_delivery(stack):
    env, base, logs = stack
    # The first request is held 4 s: the worker is killed while it waits for the answer.
    with Receiver([(200, 4.0)]) as receiver:
        ids = setup_workspace(env, receiver.url, "--on", "failure")
        with worker(env, logs / "killed.log") as first:
            send_event(base, ids["key"], "failure")
            receiver.wait_for(1)
            first.send_signal(signal.SIGKILL)
            first.wait()
        with worker(env, logs / "restarted.log"):
            requests = receiver.wait_for(2)
            rows = wait_until(lambda: [d for d in deliveries(env, ids["org"]) if d[2] == "delivered"])
    assert len({r.headers["Ackly-Delivery"] for r in requests}) == 1
    assert len(rows) == 1 and rows[0][1] == "fired" and rows[0][3] == 2
    assert len(deliveries(env, ids["org"])) == 1


def test_two_workers_make_no_duplicate_alerts_or_deliveries(stack):
    env, base, logs = stack
    with Receiver() as receiver:
        ids = setup_workspace(env, receiver.url, "--on", "failure")
        with worker(env, logs / "a.log"), worker(env, logs / "b.log"):
            for round_ in range(5):
                send_event(base, ids["key"], "failure", message=f"round {round_}")
                receiver.wait_for(2 * round_ + 1)
                send_event(base, ids["key"], "success")
                receiver.wait_for(2 * round_ + 2)
            time.sleep(2)  # room for a duplicate to show up, if there were one
        rows = deliveries(env, ids["org"])
        requests = list(receiver.requests)
    assert len(rows) == 10 and len({row[4] for row in rows}) == 5, rows
    assert len(requests) == 10, [(r.headers["Ackly-Delivery"], r.json()["type"]) for r in requests]
    assert len({r.headers["Ackly-Delivery"] for r in requests}) == 10
    alerts = query(env, "from alerts.models import Alert; print(Alert.objects.filter("
                        f"workspace__public_id={ids['org']!r}).count())")
    assert alerts == 5


def test_a_silence_fires_within_30_s_of_its_deadline_and_resolves_on_the_next_event(stack):
    env, base, logs = stack
    with Receiver() as receiver, worker(env, logs / "silence.log"):
        ids = setup_workspace(env, receiver.url, "--on", "silence", "--minutes", "60")
        # Bring the deadline to 2 s from now instead of waiting an hour.
        manage(env, "shell", "-c", (
            "from datetime import timedelta; from django.utils import timezone; "
            "from alerts.models import Rule; Rule.objects.filter(public_id="
            f"{ids['rule']!r}).update(deadline=timezone.now() + timedelta(seconds=2))"
        ))
        fired = receiver.wait_for(1, timeout=40)[0].json()
        assert fired["type"] == "alert.fired" and "every 60 minutes" in fired["alert"]["reason"]
        late = query(env, (
            "from alerts.models import Alert; a = Alert.objects.get(rule__public_id="
            f"{ids['rule']!r}); print((a.opened_at - a.rule.deadline).total_seconds())"
        ))
        assert 0 <= late < 30  # type: ignore[operator]
        send_event(base, ids["key"], "success")
        assert receiver.wait_for(2)[1].json()["type"] == "alert.resolved"

