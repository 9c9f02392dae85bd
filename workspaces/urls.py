"""Dashboard URLs: accounts, home, the live events page and its feed (mounted at "")."""

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import path

from workspaces import accounts, views

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
    path("workspaces/new/", views.workspace_new, name="workspace-new"),
    path("w/<str:org_id>/", views.workspace_home, name="workspace-home"),
    path("w/<str:org_id>/events/", views.live_events, name="live-events"),
    path("w/<str:org_id>/rejections/", views.rejected_requests, name="rejected-requests"),
    path("w/<str:org_id>/events/feed.json", views.live_feed, name="live-feed"),
    path("w/<str:org_id>/events/<str:item_id>/", views.event_detail, name="event-detail"),
]
