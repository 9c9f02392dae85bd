"""Accounts: sign-up in two steps behind an emailed link, and sign-in throttled without lock-outs.

Sign-up never says whether an address has an account: the first step answers "check your
inbox" either way, and the email says the rest (a link to finish signing up, or that an account
exists and where to log in). Only someone holding a valid link can see username errors.

Sign-in (OWASP's "device cookies"): a successful sign-in leaves a signed cookie naming that
user. Attempts from a browser holding one for the username typed spend that device's own
budget; every other attempt spends the client address's budget and the username's, with
back-off steps. Strangers' wrong passwords can hold strangers off a username, never the user
on a browser they have signed in from before (docs/decisions.md, "Sign-in throttle").
"""

from __future__ import annotations

import logging
import secrets
import smtplib
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac
from django_ratelimit.core import is_ratelimited

from workspaces.forms import FinishSignupForm, SignupForm
from workspaces.models import Workspace
from workspaces.services import create_workspace

logger = logging.getLogger(__name__)

DEVICE_SALT = "ackly.accounts.device"
SIGNUP_SALT = "ackly.accounts.signup"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
TOO_MANY_SIGN_INS = "Too many sign-in attempts. Wait a minute, then try again."
TOO_MANY_SIGN_UPS = "Too many sign-up requests from your network. Please try again later."
MAIL_FAILED = "We could not send the email just now. Please try again in a few minutes."


def _key(value: str) -> Callable[[str, HttpRequest], str]:
    """A django-ratelimit key that is this one value."""
    return lambda group, request: value


def _spent(request: HttpRequest, group: str, key: str | Callable, rates: list[str]) -> bool:
    """Counts the request against each rate of `group` (all of them, so every step sees it)."""
    limited = [
        is_ratelimited(request, group=group, key=key, rate=rate, increment=True) for rate in rates
    ]
    return any(limited)


# --- Device cookies ---------------------------------------------------------------------------


def _user_tag(user_pk: int) -> str:
    # The cookie is signed, not encrypted: it names the user by a keyed digest, not their pk.
    return salted_hmac(DEVICE_SALT, str(user_pk)).hexdigest()[:32]


def remember_device(response: HttpResponse, user) -> None:
    """Marks the browser as one `user` signed in from, with a fresh budget of its own."""
    value = signing.dumps({"u": _user_tag(user.pk), "n": secrets.token_urlsafe(16)}, salt=DEVICE_SALT)
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
    pk = (
        user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username})
        .values_list("pk", flat=True)
        .first()
    )
    if pk is None or not constant_time_compare(device["u"], _user_tag(pk)):
        return None
    return device["n"]


def sign_in_throttled(request: HttpRequest, username: str) -> bool:
    """Counts one sign-in attempt; True when the budget it belongs to is spent."""
    backoff = settings.LOGIN_BACKOFF_RATE_LIMITS
    device = known_device(request, username)
    if device is not None:
        return _spent(request, "login-device", _key(device), [settings.LOGIN_DEVICE_RATE_LIMIT, *backoff])
    # Case-folded, so "Alice" and "alice" share one budget.
    by_user = _spent(
        request, "login-user", _key(username.strip().lower()), [settings.LOGIN_RATE_LIMIT, *backoff]
    )
    by_address = _spent(request, "login-ip", "ip", [settings.LOGIN_RATE_LIMIT])
    return by_user or by_address


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


# --- Sign-up ----------------------------------------------------------------------------------


def _absolute(request: HttpRequest, path: str) -> str:
    base = settings.PUBLIC_BASE_URL or request.build_absolute_uri("/")
    return base.rstrip("/") + path


def send_signup_email(request: HttpRequest, email: str, workspace_name: str) -> None:
    """The link to finish signing up, or word that `email` already has an account."""
    if _spent(request, "signup-email", _key(email), [settings.SIGNUP_EMAIL_RATE_LIMIT]):
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
                "link": _absolute(request, reverse("signup-finish", args=[token])),
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
    if _spent(request, "signup-ip", "ip", [settings.SIGNUP_RATE_LIMIT]):
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


def create_account(form: FinishSignupForm) -> Workspace | None:
    """The user and their Free workspace, in one transaction; None when the email got taken."""
    with transaction.atomic():
        if _email_taken(form.instance.email):
            return None
        user = form.save()
        return create_workspace(form.workspace_label(), "free", owner=user)


def signup_finish(request: HttpRequest, token: str) -> HttpResponse:
    """Sign-up's second step, behind the emailed link: username and password, then signed in."""
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
    email = claim["e"]
    if _email_taken(email):
        return _link_used(request, email)
    if request.method != "POST":
        form = FinishSignupForm(initial={"workspace_name": claim["w"]}, email=email)
        return render(request, "registration/signup_finish.html", {"form": form, "email": email})
    if _spent(request, "signup-finish", "ip", [settings.SIGNUP_FINISH_RATE_LIMIT]):
        form = FinishSignupForm(initial={"workspace_name": claim["w"]}, email=email)
        context = {"form": form, "email": email, "throttled": TOO_MANY_SIGN_UPS}
        return render(request, "registration/signup_finish.html", context, status=429)
    form = FinishSignupForm(request.POST, email=email)
    if not form.is_valid():
        return render(request, "registration/signup_finish.html", {"form": form, "email": email})
    workspace = create_account(form)
    if workspace is None:
        return _link_used(request, email)
    login(request, form.instance, backend=MODEL_BACKEND)
    response = redirect(f"/w/{workspace.public_id}/sources/")
    remember_device(response, form.instance)
    return response
