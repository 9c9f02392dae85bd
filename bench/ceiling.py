"""The bare ceiling: a Django view doing one raw INSERT, nothing else (part (e)).

Routed only by bench/ceiling_settings.py, which refuses to load unless ACKLY_BENCH_CEILING=1,
so no production configuration can ever expose it. Its table is created by the bench runner
with raw SQL (no migration in any app).
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

TABLE = "bench_ceiling"
CREATE_TABLE_SQL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} "
    "(id bigserial PRIMARY KEY, body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
)
_INSERT_SQL = f"INSERT INTO {TABLE} (body) VALUES (%s) RETURNING id"


def ceiling_insert(request: HttpRequest) -> HttpResponse:
    """Store the raw body in one INSERT and answer 201 with the row id."""
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL, [request.body.decode("utf-8", "replace")])
        (row_id,) = cursor.fetchone()
    return JsonResponse({"id": row_id}, status=201)


def ping(request: HttpRequest) -> HttpResponse:
    """Readiness probe for the runner."""
    return JsonResponse({"ok": True})


urlpatterns = [
    path("bench/ceiling", ceiling_insert),
    path("bench/ping", ping),
]
