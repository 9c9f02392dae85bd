"""Fixtures for the dashboard tests: events of both kinds in a workspace."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ingest.models import Event, TimelineEvent
from workspaces.models import Worker


@pytest.fixture
def make_event(source):
    def make(age: timedelta = timedelta(0), src=None, **fields) -> Event:
        src = src or source
        fields.setdefault("status", "success")
        return Event.objects.create(
            workspace=src.workspace, source=src, received_at=timezone.now() - age, **fields
        )

    return make


@pytest.fixture
def worker(workspace):
    return Worker.objects.create(
        workspace=workspace, display_name="Alex Chen", external_id="u-42", email="alex@acme.test"
    )


@pytest.fixture
def make_timeline(source, worker):
    def make(age: timedelta = timedelta(0), **fields) -> TimelineEvent:
        fields.setdefault("event_type", "ticket.resolved")
        fields.setdefault("category", "support")
        now = timezone.now() - age
        return TimelineEvent.objects.create(
            workspace=source.workspace, source=source, worker=fields.pop("worker", worker),
            timestamp=now, received_at=now, request_id="req_test", **fields,
        )

    return make
