"""Fixtures of the alerts tests: a receiver, a webhook channel to it, event rows, the queue."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from alerts.services import create_channel
from ingest.models import Event, TimelineEvent
from tests.alerts.receiver import Receiver
from workspaces.models import Worker


@pytest.fixture(autouse=True)
def _alert_settings(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_ALLOW_HTTP = True  # the receivers are plain http on 127.0.0.1
    settings.ALERTS_RETRY_BASE_SECONDS = 1
    settings.ALERTS_DELIVERY_TIMEOUT_SECONDS = 2
    settings.ALERTS_DELIVERY_LEASE_SECONDS = 4


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def webhook(workspace, receiver):
    channel, secret = create_channel(workspace, kind="webhook", target=receiver.url, name="Ops")
    return channel


def deliver_queued() -> None:
    """Work the delivery queue once: every task due now, in this process (django-tasks-db)."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}
    try:
        call_command("db_worker", queue_name="alerts", batch=True, reload=False,
                     startup_delay=False, verbosity=0)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.fixture
def make_event(workspace, source):
    """An ingest-API event row as either lane commits it."""

    def make(status: str = "failure", ago: float = 0, **fields) -> Event:
        fields.setdefault("workspace", workspace)
        fields.setdefault("source", source)
        return Event.objects.create(
            status=status, received_at=timezone.now() - timedelta(seconds=ago), **fields
        )

    return make


@pytest.fixture
def worker_row(workspace) -> Worker:
    return Worker.objects.create(workspace=workspace, display_name="Alex Chen", external_id="u-1")


@pytest.fixture
def make_timeline(workspace, source, worker_row):
    """A v1 timeline event row."""

    def make(event_type: str = "ticket.resolved", category: str = "support", ago: float = 0,
             **fields) -> TimelineEvent:
        now = timezone.now() - timedelta(seconds=ago)
        return TimelineEvent.objects.create(
            workspace=workspace, source=source, worker=worker_row, event_type=event_type,
            category=category, timestamp=now, received_at=now, request_id="req_test", **fields,
        )

    return make
