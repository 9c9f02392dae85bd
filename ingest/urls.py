"""API routes of both ingest APIs (no reverse() on the hot path: clients know these paths)."""

from django.urls import re_path

from ingest.api import IngestView
from ingest.api_read import EventsReadView
from ingest.api_v1 import EventsView, PingView, SnapshotsView

urlpatterns: list = [
    # With and without the trailing slash, no redirect (a redirect would drop the POST body).
    re_path(r"^api/ingest/?$", IngestView.as_view(), name="api-ingest"),
    # The developer API (v1), also with and without the trailing slash.
    re_path(r"^api/v1/ingest/ping/?$", PingView.as_view(), name="api-v1-ping"),
    re_path(r"^api/v1/ingest/events/?$", EventsView.as_view(), name="api-v1-events"),
    re_path(r"^api/v1/ingest/snapshots/?$", SnapshotsView.as_view(), name="api-v1-snapshots"),
    # The read API (a read key): the workspace's events, newest first, by pages.
    re_path(r"^api/v1/events/?$", EventsReadView.as_view(), name="api-v1-events-read"),
]
