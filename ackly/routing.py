"""Websocket routes (the dashboard's live feed)."""

websocket_urlpatterns: list = []
