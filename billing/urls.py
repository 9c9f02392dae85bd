"""The Usage & plan page (mounted at /w/<org_id>/usage/)."""

from django.urls import path

from billing import views

urlpatterns = [
    path("", views.usage, name="usage"),
    path("plan/", views.change_plan, name="change-plan"),
]
