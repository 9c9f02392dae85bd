"""Accounts: sign-up in two steps behind an emailed link, and sign-in throttled without lock-outs.

Sign-up never says whether an address has an account: the first step answers "check your
inbox" either way, and the email says the rest (a link to finish signing up, or that an account
exists and where to log in). Only someone holding a valid link can see username errors. The
link's token leaves the URL at once: its page keeps it in the session and redirects to a
token-free form, so no error answer (logged, sent to Sentry) ever carries a valid token.

Sign-in (OWASP's "device cookies"): a successful sign-in leaves a signed cookie naming that
user and their current password. Attempts from a browser holding one for the username typed
spend that device's own budget; every other attempt spends the client address's budget and,
while the address is within it, the username's, with back-off steps. Strangers' wrong passwords
can hold strangers off a username, never the user on a browser they have signed in from since
their last password change (docs/decisions.md, "Sign-in throttle").
"""

from __future__ import annotations

import logging
import secrets
import smtplib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.http import url_has_allowed_host_and_scheme
from django_ratelimit.core import is_ratelimited

from workspaces.forms import FinishSignupForm, SignupForm
from workspaces.models import Workspace
from workspaces.services import create_workspace

logger = logging.getLogger(__name__)

DEVICE_SALT = "ackly.accounts.device"
SIGNUP_SALT = "ackly.accounts.signup"
SIGNUP_SESSION_TOKEN = "_signup_token"  # the link's token, once its page has been opened
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
TOO_MANY_SIGN_INS = "Too many sign-in attempts. Wait a minute, then try again."
TOO_MANY_SIGN_UPS = "Too many sign-up requests from your network. Please try again later."
MAIL_FAILED = "We could not send the email just now. Please try again in a few minutes."


def fixed_key(value: str) -> Callable[[str, HttpRequest], str]:
    """A django-ratelimit key that is this one value."""
    return lambda group, request: value


def spent(request: HttpRequest, group: str, key: str | Callable, rates: list[str]) -> bool:
    """Counts the request against each rate of `group` (all of them, so every step sees it)."""
    limited = [
        is_ratelimited(request, group=group, key=key, rate=rate, increment=True) for rate in rates
    ]
    return any(limited)


# --- Device cookies ---------------------------------------------------------------------------


def _user_tag(user) -> str:
    # The cookie is signed, not encrypted: it names the user by a keyed digest, not their pk.
    # The session auth hash (a digest of the password hash) is in it too, so a password change
    # or reset voids every device cookie of the user, as it ends their other sessions.
    value = f"{user.pk}:{user.get_session_auth_hash()}"
    return salted_hmac(DEVICE_SALT, value, algorithm="sha256").hexdigest()[:32]


def remember_device(response: HttpResponse, user) -> None:
    """Marks the browser as one `user` signed in from, with a fresh budget of its own."""
    value = signing.dumps({"u": _user_tag(user), "n": secrets.token_urlsafe(16)}, salt=DEVICE_SALT)
    response.set_cookie(
        settings.LOGIN_DEVICE_COOKIE_NAME,
        value,
        max_age=settings.LOGIN_DEVICE_COOKIE_DAYS * 24 * 3600,
        path=reverse("login"),  # only the sign-in form needs it
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


def known_device(request: HttpRequest, username: str) -> str | None:
    """The device's nonce when the request carries a device cookie of `username`, else None."""
    value = request.COOKIES.get(settings.LOGIN_DEVICE_COOKIE_NAME)
    if not value or not username:
        return None
    try:
        device = signing.loads(
            value, salt=DEVICE_SALT, max_age=timedelta(days=settings.LOGIN_DEVICE_COOKIE_DAYS)
        )
    except signing.BadSignature:
        return None
    user_model = get_user_model()
    # The same exact match the ModelBackend signs in with.
    user = (
        user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username})
        .only("pk", "password")
        .first()
    )
    if user is None or not constant_time_compare(device["u"], _user_tag(user)):
        return None
    return device["n"]


def sign_in_throttled(request: HttpRequest, username: str) -> bool:
    """Counts one sign-in attempt; True when the budget it belongs to is spent."""
    backoff = settings.LOGIN_BACKOFF_RATE_LIMITS
    device = known_device(request, username)
    if device is not None:
        return spent(request, "login-device", fixed_key(device), [settings.LOGIN_DEVICE_RATE_LIMIT, *backoff])
    # The address first: an attempt it refuses spends nothing of the username's, so one
    # address cannot run a username's hour and day steps down and hold its user off new browsers.
    if spent(request, "login-ip", "ip", [settings.LOGIN_RATE_LIMIT]):
        return True
    # Case-folded, so "Alice" and "alice" share one budget.
    return spent(
        request, "login-user", fixed_key(username.strip().lower()), [settings.LOGIN_RATE_LIMIT, *backoff]
    )


class LoginView(auth_views.LoginView):
    """Django's login behind the sign-in throttle; a success remembers the device."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        username = request.POST.get("username") or ""
        if sign_in_throttled(request, username):
            # An unbound form: binding it would check the password anyway.
            form = self.get_form_class()(request, initial={"username": username})
            context = self.get_context_data(form=form, throttled=TOO_MANY_SIGN_INS)
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form) -> HttpResponse:
        response = super().form_valid(form)
        remember_device(response, form.get_user())
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change; the new password voids the user's device cookies but this one's."""

    def form_valid(self, form) -> HttpResponse:
        response = super().form_valid(form)
        remember_device(response, form.user)
        return response


# --- A form whose CSRF token is stale -----------------------------------------------------------


STALE_SIGN_IN = (
    "This sign-in form had expired (its CSRF security token no longer matched), so you were not "
    "signed in. Enter your password again."
)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: still a 403 that changes nothing, in the site's layout.

    A sign-in form left open in a tab (its token rotated by a sign-in elsewhere, or its cookie
    gone) gets the login page again with a fresh token, the username kept and a note, so the
    next submit signs in; it is never signed in on this request (docs/decisions.md).
    """
    if request.method == "POST" and request.path == reverse("login"):
        next_url = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            next_url = ""
        form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
        context = {"form": form, "next": next_url, "stale_form": STALE_SIGN_IN}
        return render(request, "registration/login.html", context, status=403)
    return render(request, "403_csrf.html", status=403)


# --- Password reset ---------------------------------------------------------------------------


TOO_MANY_RESETS = "Too many password reset requests from your network. Please try again later."


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset by email, throttled per client address; the same answer for every address.

    An address past PASSWORD_RESET_EMAIL_RATE_LIMIT gets no more email for a while, yet the page
    answers as always. The link names PUBLIC_BASE_URL when set, else the request's (allowed) host.
    """

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if spent(request, "reset-ip", "ip", [settings.PASSWORD_RESET_RATE_LIMIT]):
            form = self.get_form_class()(initial={"email": request.POST.get("email", "")})
            context = self.get_context_data(form=form, throttled=TOO_MANY_RESETS)
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form) -> HttpResponse:
        email = form.cleaned_data["email"].strip().lower()
        if spent(self.request, "reset-email", fixed_key(email), [settings.PASSWORD_RESET_EMAIL_RATE_LIMIT]):
            logger.warning("Password reset emails to one address over the limit; not sent")
            return redirect(self.get_success_url())
        self.extra_email_context = {
            "base_url": _absolute(self.request, ""),
            "minutes": settings.PASSWORD_RESET_TIMEOUT // 60,
        }
        return super().form_valid(form)


# --- Sign-up ----------------------------------------------------------------------------------


def _absolute(request: HttpRequest, path: str) -> str:
    base = settings.PUBLIC_BASE_URL or request.build_absolute_uri("/")
    return base.rstrip("/") + path


def send_signup_email(request: HttpRequest, email: str, workspace_name: str) -> None:
    """The link to finish signing up, or word that `email` already has an account."""
    if spent(request, "signup-email", fixed_key(email), [settings.SIGNUP_EMAIL_RATE_LIMIT]):
        # Someone is filling this inbox: the page answers as always, the email is not sent.
        logger.warning("Sign-up emails to one address over SIGNUP_EMAIL_RATE_LIMIT; not sent")
        return
    usernames = list(
        get_user_model()
        ._default_manager.filter(email__iexact=email)
        .order_by("pk")
        .values_list("username", flat=True)
    )
    if usernames:
        subject = "You already have an Ackly account"
        body = render_to_string(
            "registration/signup_email_existing.txt",
            {"usernames": usernames, "login_url": _absolute(request, reverse("login"))},
        )
    else:
        token = signing.dumps({"e": email, "w": workspace_name}, salt=SIGNUP_SALT, compress=True)
        subject = "Finish signing up for Ackly"
        body = render_to_string(
            "registration/signup_email_new.txt",
            {
                "link": _absolute(request, reverse("signup-link", args=[token])),
                "hours": settings.SIGNUP_LINK_MAX_AGE_SECONDS // 3600,
            },
        )
    send_mail(subject, body, None, [email])


def signup(request: HttpRequest) -> HttpResponse:
    """Sign-up's first step: an address to send the link to; the same answer for every address."""
    if request.user.is_authenticated:
        return redirect("home")
    if request.method != "POST":
        return render(request, "registration/signup.html", {"form": SignupForm()})
    if spent(request, "signup-ip", "ip", [settings.SIGNUP_RATE_LIMIT]):
        form = SignupForm(initial={"email": request.POST.get("email", "")})
        context = {"form": form, "throttled": TOO_MANY_SIGN_UPS}
        return render(request, "registration/signup.html", context, status=429)
    form = SignupForm(request.POST)
    if not form.is_valid():  # the address's syntax only: nothing here looks at accounts
        return render(request, "registration/signup.html", {"form": form})
    try:
        send_signup_email(request, form.cleaned_data["email"], form.cleaned_data["workspace_name"])
    except (smtplib.SMTPException, OSError):
        logger.exception("Sign-up email could not be sent")
        context = {"form": form, "throttled": MAIL_FAILED}
        return render(request, "registration/signup.html", context, status=503)
    return redirect("signup-sent")


def signup_sent(request: HttpRequest) -> HttpResponse:
    return render(request, "registration/signup_sent.html")


def _refused_link(request: HttpRequest, title: str, message: str, status: int) -> HttpResponse:
    context = {"title": title, "message": message}
    return render(request, "registration/signup_link_refused.html", context, status=status)


def _link_used(request: HttpRequest, email: str) -> HttpResponse:
    # Only the address's owner holds the link, so naming the address tells no one else anything.
    message = f"An account for {email} exists already. Log in with its username and password."
    return _refused_link(request, "This link has been used", message, 409)


def _email_taken(email: str) -> bool:
    return get_user_model()._default_manager.filter(email__iexact=email).exists()


def _username_taken(username: str) -> bool:
    return get_user_model()._default_manager.filter(username__iexact=username).exists()


def _serialise_on(*names: str) -> None:
    """Holds PostgreSQL transaction-level locks on `names`, in the order given.

    auth_user has no unique index on email, nor a case-insensitive one on username: two
    finishes at once would both pass an "is it free" check. On SQLite the IMMEDIATE
    transaction already admits one writer at a time.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])


class EmailTaken(Exception):
    """The link's address has an account by now."""


def create_account(
    form: FinishSignupForm, join: Callable[[Any], Workspace] | None = None
) -> Workspace | None:
    """The user and their Free workspace, in one transaction; with `join`, the workspace `join`
    gives the new user instead (an invitation's), in the same transaction.

    Raises EmailTaken when the address has an account by now; None (and the form's username
    error) when another sign-up took the username meanwhile. Whatever `join` raises rolls the
    new account back.
    """
    email = form.instance.email
    username = form.cleaned_data["username"]
    try:
        with transaction.atomic():
            # Email, then username: one order for every finish.
            _serialise_on(f"ackly.signup.email:{email.lower()}", f"ackly.signup.username:{username.lower()}")
            if _email_taken(email):
                raise EmailTaken
            if _username_taken(username):
                form.add_error("username", _username_in_use(form))
                return None
            user = form.save()
            if join is not None:
                return join(user)
            return create_workspace(form.workspace_label(), "free", owner=user)
    except IntegrityError:
        # A user made outside sign-up (the admin, a command) can still win the unique index.
        if not _username_taken(username):
            raise
        form.add_error("username", _username_in_use(form))
        return None


def _username_in_use(form: FinishSignupForm) -> ValidationError:
    # The words UserCreationForm uses for the same clash.
    return form.instance.unique_error_message(type(form.instance), ["username"])


def _read_link(request: HttpRequest, token: str) -> dict | HttpResponse:
    """The link's claim, or the page refusing it (which never shows the token)."""
    try:
        claim = signing.loads(token, salt=SIGNUP_SALT, max_age=settings.SIGNUP_LINK_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        return _refused_link(
            request, "This link has expired", "Sign up again to get a fresh link.", 400
        )
    except signing.BadSignature:
        return _refused_link(
            request,
            "This link is not valid",
            "It may have been cut short by your email program. Copy the whole link, or sign up "
            "again to get a fresh one.",
            400,
        )
    return claim


def signup_link(request: HttpRequest, token: str) -> HttpResponse:
    """The emailed link: keeps its token in the session and redirects to the token-free form.

    Django's password reset does the same: every answer that can be an error (and so be logged,
    or reach Sentry with its URL) is on a URL that holds no valid token. A redirect is not logged.
    """
    claim = _read_link(request, token)
    if isinstance(claim, HttpResponse):
        return claim  # a worthless token, and the page does not echo it
    request.session[SIGNUP_SESSION_TOKEN] = token
    return redirect("signup-finish")


def signup_finish(request: HttpRequest) -> HttpResponse:
    """Sign-up's second step, behind the emailed link: username and password, then signed in."""
    token = request.session.get(SIGNUP_SESSION_TOKEN)
    if not token:
        return _refused_link(
            request,
            "Open the link from your email",
            "This page continues the sign-up your email's link started. Open that link again, in "
            "this browser, or sign up again to get a fresh one.",
            400,
        )
    claim = _read_link(request, token)  # it may have expired since
    if isinstance(claim, HttpResponse):
        return claim
    email = claim["e"]
    if _email_taken(email):
        return _link_used(request, email)
    if request.method != "POST":
        form = FinishSignupForm(initial={"workspace_name": claim["w"]}, email=email)
        return render(request, "registration/signup_finish.html", {"form": form, "email": email})
    if spent(request, "signup-finish", "ip", [settings.SIGNUP_FINISH_RATE_LIMIT]):
        form = FinishSignupForm(initial={"workspace_name": claim["w"]}, email=email)
        context = {"form": form, "email": email, "throttled": TOO_MANY_SIGN_UPS}
        return render(request, "registration/signup_finish.html", context, status=429)
    form = FinishSignupForm(request.POST, email=email)
    if not form.is_valid():
        return render(request, "registration/signup_finish.html", {"form": form, "email": email})
    try:
        workspace = create_account(form)
    except EmailTaken:
        return _link_used(request, email)
    if workspace is None:
        return render(request, "registration/signup_finish.html", {"form": form, "email": email})
    request.session.pop(SIGNUP_SESSION_TOKEN, None)
    login(request, form.instance, backend=MODEL_BACKEND)
    response = redirect(f"/w/{workspace.public_id}/sources/")
    remember_device(response, form.instance)
    return response
