"""The Sources page (mounted at /w/<org_id>/sources/)."""

from django.urls import path

from sources import views

urlpatterns = [
    path("", views.source_list, name="source-list"),
    path("new/", views.source_new, name="source-new"),
    path("<str:app_id>/edit/", views.source_edit, name="source-edit"),
    path("<str:app_id>/rotate/", views.source_rotate, name="source-rotate"),
    path("<str:app_id>/keys/new/", views.key_new, name="key-new"),
    path("<str:app_id>/keys/<str:key_id>/", views.key_shown, name="key-shown"),
    path("<str:app_id>/keys/<str:key_id>/revoke/", views.key_revoke, name="key-revoke"),
]
