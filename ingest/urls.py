"""API routes of both ingest APIs (no reverse() on the hot path: clients know these paths)."""

from django.urls import re_path

from ingest.api import IngestView

urlpatterns: list = [
    # With and without the trailing slash, no redirect (a redirect would drop the POST body).
    re_path(r"^api/ingest/?$", IngestView.as_view(), name="api-ingest"),
]
