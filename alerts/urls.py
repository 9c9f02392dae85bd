"""The Alerts pages (mounted at /w/<org_id>/alerts/)."""

from django.urls import path

from alerts import views

urlpatterns = [
    path("", views.alert_list, name="alerts"),
    path("rules/new/", views.rule_new, name="rule-new"),
    path("rules/<str:rul_id>/edit/", views.rule_edit, name="rule-edit"),
    path("rules/<str:rul_id>/delete/", views.rule_delete, name="rule-delete"),
    path("channels/new/", views.channel_new, name="channel-new"),
    path("channels/<str:chn_id>/", views.channel_detail, name="channel-detail"),
    path("channels/<str:chn_id>/secret/", views.channel_secret, name="channel-secret"),
    path("channels/<str:chn_id>/roll/", views.channel_roll, name="channel-roll"),
    path("channels/<str:chn_id>/test/", views.channel_test, name="channel-test"),
    path("channels/<str:chn_id>/delete/", views.channel_delete, name="channel-delete"),
    path("deliveries/<str:dlv_id>/", views.delivery_detail, name="delivery-detail"),
    path("<str:alr_id>/", views.alert_detail, name="alert-detail"),
]
