from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularSwaggerSplitView, SpectacularYAMLAPIView

from ackly import docs, views

urlpatterns = [
    path("admin/", admin.site.urls),
    # The two ingest APIs (ingest/api.py).
    path("", include("ingest.urls")),
    # Dashboard: accounts, home, live events (workspaces/views.py).
    path("", include("workspaces.urls")),
    path("w/<str:org_id>/sources/", include("sources.urls")),
    path("w/<str:org_id>/workers/", include("ingest.dashboard_urls")),
    path("w/<str:org_id>/usage/", include("billing.urls")),
    path("w/<str:org_id>/alerts/", include("alerts.urls")),
    path("favicon.ico", views.favicon, name="favicon"),
    path("docs/", docs.index, name="docs"),
    path("docs/errors/<slug:code>/", docs.error_code, name="docs-error"),
    # The OpenAPI document of both APIs (ingest/schema.py) and its offline interactive reference.
    path("openapi/v1.yaml", SpectacularYAMLAPIView.as_view(), name="openapi-schema"),
    path(
        "docs/api/",
        # The split view serves Swagger UI's start-up script as a file: no inline script.
        SpectacularSwaggerSplitView.as_view(url_name="openapi-schema"),
        name="docs-api",
    ),
    path("docs/<slug:slug>/", docs.page, name="docs-page"),
    # Anything else under /api/ is a JSON 404, never Django's HTML page (DEBUG or not).
    re_path(r"^api(?:/.*)?$", views.api_not_found),
]

handler404 = "ackly.views.handler404"
handler500 = "ackly.views.handler500"
