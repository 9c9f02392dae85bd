"""The Workers pages (mounted at /w/<org_id>/workers/)."""

from django.urls import path

from ingest import views

urlpatterns = [
    path("", views.worker_list, name="worker-list"),
    path("<str:wrk_id>/", views.worker_detail, name="worker-detail"),
    path("<str:wrk_id>/feed.json", views.worker_feed, name="worker-feed"),
]
