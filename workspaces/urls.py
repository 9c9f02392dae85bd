"""Dashboard URLs: accounts, invitations, home, the live events page and its feed, members, the
audit log (mounted at "")."""

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import path

from workspaces import accounts, export, members, views

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", accounts.signup, name="signup"),
    path("signup/sent/", accounts.signup_sent, name="signup-sent"),
    # The form's URL holds no token, so its 4xx answers log none ("continue" is no valid token).
    path("signup/finish/continue/", accounts.signup_finish, name="signup-finish"),
    path("signup/finish/<str:token>/", accounts.signup_link, name="signup-link"),
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "account/password/",
        accounts.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "account/password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    # Password reset: Django's views; the emailed link's page redirects to a token-free URL.
    path("account/reset/", accounts.PasswordResetView.as_view(), name="password_reset"),
    path(
        "account/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(
            extra_context={"minutes": settings.PASSWORD_RESET_TIMEOUT // 60}
        ),
        name="password_reset_done",
    ),
    path(
        "account/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "account/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    # The invitation link's token leaves the URL at once, as sign-up's does.
    path("invite/", members.invite_accept, name="invite-accept"),
    path("invite/signup/", members.invite_signup, name="invite-signup"),
    path("invite/<str:token>/", members.invite_link, name="invite-link"),
    path("workspaces/new/", views.workspace_new, name="workspace-new"),
    path("w/<str:org_id>/", views.workspace_home, name="workspace-home"),
    path("w/<str:org_id>/events/", views.live_events, name="live-events"),
    path("w/<str:org_id>/rejections/", views.rejected_requests, name="rejected-requests"),
    path("w/<str:org_id>/events/feed.json", views.live_feed, name="live-feed"),
    path("w/<str:org_id>/events/export.csv", export.export, {"fmt": "csv"}, name="export-csv"),
    path("w/<str:org_id>/events/export.ndjson", export.export, {"fmt": "ndjson"},
         name="export-ndjson"),
    path("w/<str:org_id>/events/<str:item_id>/", views.event_detail, name="event-detail"),
    path("w/<str:org_id>/members/", members.members, name="members"),
    path("w/<str:org_id>/members/invite/", members.invite, name="member-invite"),
    path("w/<str:org_id>/members/invitations/revoke/", members.invitation_revoke,
         name="invitation-revoke"),
    path("w/<str:org_id>/members/role/", members.member_role, name="member-role"),
    path("w/<str:org_id>/members/remove/", members.member_remove, name="member-remove"),
    path("w/<str:org_id>/members/leave/", members.leave, name="member-leave"),
    path("w/<str:org_id>/audit/", members.audit_log, name="audit-log"),
    path("w/<str:org_id>/delete/", members.workspace_delete, name="workspace-delete"),
]
