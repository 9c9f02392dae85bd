"""A Daphne process under ingest load stops on SIGTERM, and the broadcast's wait is bounded.

Before the fix a SIGTERM that arrived while request threads waited on Daphne's event loop
(the broadcast's `async_to_sync`, Django's adapter around sync-only middleware) hung the
process forever: the interpreter's exit joined threads that could never wake.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers, get_channel_layer
from django.conf import settings

from ingest import broadcast as broadcast_module
from ingest.broadcast import broadcast, workspace_group
from tests.servers import collected_static, free_port

ROOT = Path(__file__).resolve().parents[2]
# A correctness bound (the process must end by itself), not a speed figure.
EXIT_BOUND_SECONDS = 15


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL"):
        env.pop(name, None)
    env.update(
        DEBUG="0", SECRET_KEY="shutdown-test-" + "x" * 40, ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0", LOG_LEVEL="WARNING", SQLITE_PATH=str(tmp_path / "db.sqlite3"),
        REDIS_URL=settings.REDIS_URL, STATIC_ROOT=collected_static(),
    )
    return env


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].strip()


@pytest.mark.server
@pytest.mark.redis
def test_daphne_exits_on_sigterm_while_ingest_requests_are_broadcasting(tmp_path):
    env = _env(tmp_path)
    _manage(env, "migrate", "--noinput")
    org = _manage(env, "createworkspace", "Shutdown", "--plan", "pro")
    key = _manage(env, "createsource", org, "shutdown")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "daphne.log", "w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "ackly.asgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        stop = threading.Event()
        created: list[int] = []
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}/login/", timeout=1)
                    break
                except httpx.HTTPError:
                    assert process.poll() is None and time.monotonic() < deadline, log.read()
                    time.sleep(0.2)

            def load() -> None:
                with httpx.Client(timeout=30) as client:
                    while not stop.is_set():
                        try:
                            r = client.post(
                                f"{base}/api/ingest", content=b'{"status":"success","message":"m"}',
                                headers={"Authorization": f"Bearer {key}",
                                         "Content-Type": "application/json"},
                            )
                            if r.status_code == 201:
                                created.append(1)
                        except httpx.HTTPError:
                            pass

            senders = [threading.Thread(target=load, daemon=True) for _ in range(8)]
            for sender in senders:
                sender.start()
            while len(created) < 30 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(created) >= 30, "the server accepted too few events to test a shutdown"

            os.kill(process.pid, signal.SIGTERM)  # while 8 senders keep requests in flight
            try:
                process.wait(timeout=EXIT_BOUND_SECONDS)
            except subprocess.TimeoutExpired:
                pytest.fail(f"Daphne still running {EXIT_BOUND_SECONDS}s after SIGTERM")
            assert process.returncode is not None
        finally:
            stop.set()
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def redis_layer():
    """The configured Redis channel layer, made fresh for the test and dropped after it."""
    channel_layers.backends.pop("default", None)
    yield get_channel_layer()
    channel_layers.backends.pop("default", None)


@pytest.mark.redis
def test_sync_code_publishes_what_the_pubsub_layers_subscribers_receive(redis_layer):
    """broadcast() publishes by itself (no event loop): the layer's serializer and group
    channel name must be the ones channels_redis subscribes to, or sockets hear nothing."""
    group = workspace_group("org_shutdown_test_sender")

    async def listen_while_broadcasting():
        channel = await redis_layer.new_channel()
        await redis_layer.group_add(group, channel)
        try:
            await asyncio.to_thread(
                broadcast, "org_shutdown_test_sender", {"type": "events", "items": [{"id": "e1"}]}
            )
            return await asyncio.wait_for(redis_layer.receive(channel), 5)
        finally:
            await redis_layer.group_discard(group, channel)

    message = async_to_sync(listen_while_broadcasting)()
    assert message == {
        "type": "ackly.message", "payload": {"type": "events", "items": [{"id": "e1"}]}
    }


BIG = {"n": 2**70, "negative": -(2**64), "huge": 10**400, "fits": 2**64 - 1, "ok": [1, True]}


@pytest.mark.redis
def test_integers_msgpack_cannot_hold_still_reach_the_subscribers(redis_layer, caplog):
    """JSON bounds no integer, msgpack holds 64 bits (found by the contract fuzzing: a snapshot's
    metric of 2**70 logged an OverflowError and its live message was lost). They arrive as the
    float a browser's JSON.parse makes of them, or as digits past a float's range."""
    group = workspace_group("org_shutdown_test_big")
    items = [{"id": "e1", "metadata": BIG}]

    async def listen_while_broadcasting():
        channel = await redis_layer.new_channel()
        await redis_layer.group_add(group, channel)
        try:
            await asyncio.to_thread(
                broadcast, "org_shutdown_test_big", {"type": "events", "items": items}
            )
            return await asyncio.wait_for(redis_layer.receive(channel), 5)
        finally:
            await redis_layer.group_discard(group, channel)

    with caplog.at_level(logging.WARNING, logger="ingest.broadcast"):
        message = async_to_sync(listen_while_broadcasting)()
    assert message["payload"]["items"][0]["metadata"] == {
        "n": float(2**70), "negative": float(-(2**64)), "huge": str(10**400), "fits": 2**64 - 1,
        "ok": [1, True],
    }
    assert not caplog.records
    assert items[0]["metadata"] is BIG and BIG["n"] == 2**70  # the caller's value is untouched


def test_a_message_msgpack_can_hold_is_serialized_as_it_is(monkeypatch):
    """The walk happens only for a message that fails: the common case is one serialize."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    layer = RedisPubSubChannelLayer(hosts=["redis://127.0.0.1:1/0"])  # never connected
    calls = []
    monkeypatch.setattr(broadcast_module, "_packable", lambda value: calls.append(value) or value)
    message = {"type": "events", "items": [{"n": 2**63}]}
    assert layer.deserialize(broadcast_module.serialized(layer, message)) == message
    assert calls == []


@pytest.mark.redis
def test_an_unreachable_redis_is_logged_once_and_never_raises(monkeypatch, caplog):
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    layers = {"default": {**settings.CHANNEL_LAYERS["default"]}}
    layers["default"]["CONFIG"] = {**layers["default"]["CONFIG"], "hosts": [dead]}
    monkeypatch.setattr(settings, "CHANNEL_LAYERS", layers)
    monkeypatch.setattr(broadcast_module, "_publisher", None)
    monkeypatch.setattr(broadcast_module, "_last_warning", float("-inf"))
    with caplog.at_level(logging.WARNING, logger="ingest.broadcast"):
        for _ in range(3):
            broadcast("org_shutdown_test_dead", {"type": "events", "items": []})
    warnings = [r for r in caplog.records if "Broadcast to workspace" in r.getMessage()]
    assert len(warnings) == 1
    monkeypatch.setattr(broadcast_module, "_publisher", None)
