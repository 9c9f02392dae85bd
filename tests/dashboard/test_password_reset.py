"""Password reset by email: Django's views, throttled, one answer for every address."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse

from tests.servers import manage, server_env

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-fresh-unusual-passphrase"
LINK = re.compile(r"(https?://\S+/account/reset/\S+/)")


def ask_for_reset(client: Client, email: str):
    return client.post(reverse("password_reset"), {"email": email})


def emailed_link(message) -> str:
    match = LINK.search(message.body)
    assert match, message.body
    return match.group(1)


def test_the_login_page_links_to_the_reset(client):
    page = client.get(reverse("login")).content.decode()
    assert f'href="{reverse("password_reset")}"' in page


def test_a_known_and_an_unknown_address_get_the_same_answer_and_only_the_known_an_email(
    client, owner, settings
):
    settings.PUBLIC_BASE_URL = "https://ackly.example.com"
    known = ask_for_reset(client, owner.email.upper())
    unknown = ask_for_reset(client, "nobody@example.com")

    assert (known.status_code, known["Location"]) == (302, reverse("password_reset_done"))
    assert (unknown.status_code, unknown["Location"]) == (known.status_code, known["Location"])
    [message] = mail.outbox
    assert message.to == [owner.email]
    assert message.subject == "Reset your Ackly password"
    assert emailed_link(message).startswith("https://ackly.example.com/account/reset/")
    assert "it works once, for 60 minutes" in message.body
    done = client.get(known["Location"]).content.decode()
    assert "If an account uses the address you gave" in done


def test_the_link_sets_a_new_password_once_from_a_token_free_page(client, owner):
    ask_for_reset(client, owner.email)
    link = emailed_link(mail.outbox[0]).split("testserver", 1)[1]

    opened = client.get(link)
    assert opened.status_code == 302
    form_url = opened["Location"]
    assert form_url.endswith("/set-password/")  # the token is in the session, not the URL
    assert "Choose a new password" in client.get(form_url).content.decode()
    saved = client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    assert (saved.status_code, saved["Location"]) == (302, reverse("password_reset_complete"))
    assert get_user_model().objects.get(pk=owner.pk).check_password(NEW_PASSWORD)
    again = Client().get(link, follow=True).content.decode()
    assert "This link cannot be used" in again


def test_a_reset_signs_out_every_other_session_of_the_user(client, owner, workspace):
    elsewhere = Client()
    elsewhere.force_login(owner)
    live = reverse("live-events", kwargs={"org_id": workspace.public_id})
    assert elsewhere.get(live).status_code == 200

    ask_for_reset(client, owner.email)
    link = emailed_link(mail.outbox[0]).split("testserver", 1)[1]
    form_url = client.get(link)["Location"]
    client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    signed_out = elsewhere.get(live)
    assert signed_out.status_code == 302
    assert signed_out["Location"].startswith(reverse("login"))


def test_requests_are_throttled_per_client_address(client, owner, settings):
    settings.PASSWORD_RESET_RATE_LIMIT = "2/h"
    assert ask_for_reset(client, "a@example.com").status_code == 302
    assert ask_for_reset(client, "b@example.com").status_code == 302

    refused = ask_for_reset(client, owner.email)

    assert refused.status_code == 429
    assert "Too many password reset requests" in refused.content.decode()
    assert mail.outbox == []


def test_one_address_gets_no_more_emails_past_its_budget_yet_the_same_answer(
    client, owner, settings
):
    settings.PASSWORD_RESET_EMAIL_RATE_LIMIT = "1/h"
    first = ask_for_reset(client, owner.email)
    second = ask_for_reset(client, owner.email)

    assert first["Location"] == second["Location"] == reverse("password_reset_done")
    assert len(mail.outbox) == 1


def test_both_reset_forms_refuse_a_post_without_csrf(owner):
    browser = Client(enforce_csrf_checks=True)
    assert "csrfmiddlewaretoken" in browser.get(reverse("password_reset")).content.decode()
    assert browser.post(reverse("password_reset"), {"email": owner.email}).status_code == 403
    assert mail.outbox == []

    ask_for_reset(Client(), owner.email)
    form_url = browser.get(emailed_link(mail.outbox[0]).split("testserver", 1)[1])["Location"]
    refused = browser.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert refused.status_code == 403
    assert not get_user_model().objects.get(pk=owner.pk).check_password(NEW_PASSWORD)


SHOW_EMAIL = (
    "import json; from django.conf import settings as s; print(json.dumps([s.EMAIL_BACKEND, "
    "s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_USER, s.EMAIL_HOST_PASSWORD, s.EMAIL_USE_TLS, "
    "s.EMAIL_USE_SSL, s.DEFAULT_FROM_EMAIL]))"
)


def email_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in server_env().items() if not k.startswith(("EMAIL_", "DEFAULT_FROM"))}
    env.update(overrides)
    return env


def shown_email_settings(env: dict[str, str]) -> list:
    return json.loads(manage(env, "shell", "-c", SHOW_EMAIL).strip().splitlines()[-1])


def test_email_goes_to_the_console_by_default_and_to_the_server_email_url_names():
    console = shown_email_settings(email_env(DEBUG="1"))
    smtps = shown_email_settings(email_env(
        EMAIL_URL="smtps://ackly:p%40ss@mail.example.com:465",
        DEFAULT_FROM_EMAIL="Ackly <noreply@ackly.example.com>",
    ))

    assert console[0] == "django.core.mail.backends.console.EmailBackend"
    assert smtps == [
        "django.core.mail.backends.smtp.EmailBackend", "mail.example.com", 465, "ackly", "p@ss",
        False, True, "Ackly <noreply@ackly.example.com>",
    ]


def test_the_file_backend_writes_each_email_into_email_file_path(tmp_path):
    env = email_env(
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(tmp_path),
        DEFAULT_FROM_EMAIL="Ackly <noreply@ackly.example.com>",
    )
    manage(env, "sendtestemail", "someone@example.com")

    [written] = list(tmp_path.iterdir())
    text = written.read_text()
    assert "To: someone@example.com" in text
    assert "From: Ackly <noreply@ackly.example.com>" in text
