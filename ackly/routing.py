"""Websocket routes (the dashboard's live feed)."""

from django.urls import path

from workspaces.consumers import WorkspaceConsumer

websocket_urlpatterns: list = [
    path("ws/workspaces/<str:org_id>/", WorkspaceConsumer.as_asgi()),
]
