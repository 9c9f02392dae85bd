"""The audits' account attacks, each shown refused.

* A. Guessing passwords: the per-address limit reads the one client-address rule
  (`ackly.clientip`), so rotating what the client writes into X-Forwarded-For buys nothing, and
  the per-username budget never locks the real user out of a browser they signed in from.
* B. Enumerating accounts through sign-up: the first step answers the same bytes for every
  address and is rate-limited; only the holder of an emailed link sees username errors.
* C. Reading a valid sign-up link out of logs: the link's page moves the token into the session
  and redirects, so no error answer is ever logged with it.
* D. Finishing one sign-up twice at once: one account per email, and a username clash is a form
  error, never a 500.
"""

from __future__ import annotations

import logging
import smtplib
import time

import pytest
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client
from django.urls import reverse

from ackly.clientip import client_address
from ackly.settings import email_url_settings
from tests.dashboard.test_accounts import emailed_link, finish_data, open_link, start_signup
from tests.servers import all_at_once
from workspaces.accounts import SIGNUP_SALT, SIGNUP_SESSION_TOKEN
from workspaces.models import Membership, Role, Workspace

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
PROXY = "10.0.0.2"  # the operator's nginx, as the app server sees it


def sign_in(client: Client, username: str, password: str, **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


# --- The client's address -----------------------------------------------------------------------


def test_with_no_trusted_proxy_the_forwarded_header_is_ignored():
    assert client_address("203.0.113.9", "198.51.100.1", hops=0) == "203.0.113.9"


def test_with_one_trusted_proxy_the_right_most_entry_is_the_client():
    assert client_address(PROXY, "198.51.100.1, 203.0.113.7", hops=1) == "203.0.113.7"


def test_rotating_the_client_written_part_of_the_header_changes_nothing():
    seen = {
        client_address(PROXY, f"{left}, 203.0.113.7", hops=1)
        for left in ("198.51.100.1", "198.51.100.2", "1.2.3.4, 5.6.7.8", "unknown", "::1")
    }
    assert seen == {"203.0.113.7"}


def test_garbage_in_the_trusted_entry_falls_back_to_the_peer():
    assert client_address(PROXY, "198.51.100.1, not-an-address", hops=1) == PROXY
    assert client_address(PROXY, " , ", hops=1) == PROXY


def test_fewer_entries_than_trusted_hops_take_the_left_most():
    assert client_address(PROXY, "203.0.113.7", hops=2) == "203.0.113.7"


@pytest.mark.parametrize(("peer", "forwarded", "hops", "client"), [
    ("::ffff:203.0.113.7", None, 0, "203.0.113.7"),  # a dual-stack socket's IPv4 peer
    (PROXY, "::ffff:203.0.113.7", 1, "203.0.113.7"),
    (PROXY, "203.0.113.7:51234", 1, "203.0.113.7"),  # a proxy that appends the port
    (PROXY, "[2001:db8::7]:443", 1, "2001:db8::7"),
    (PROXY, "2001:db8::7", 1, "2001:db8::7"),
])
def test_one_client_is_one_address_however_it_is_written(peer, forwarded, hops, client):
    assert client_address(peer, forwarded, hops=hops) == client


def test_ipv4_clients_seen_through_ipv6_sockets_keep_budgets_of_their_own():
    """Limits count IPv6 per /64: mapped IPv4 addresses would all share ::ffff:0:0/64."""
    from sources.auth import failure_counter

    one = failure_counter(client_address("::ffff:1.2.3.4", None, hops=0), 0.0)[0]
    other = failure_counter(client_address("::ffff:9.9.9.9", None, hops=0), 0.0)[0]
    assert one != other


# --- A. Password guessing -----------------------------------------------------------------------


@pytest.fixture
def tight_login(settings, frozen_rate_clock):
    """Three attempts per budget, and no window boundary inside a test."""
    settings.LOGIN_RATE_LIMIT = "3/m"
    settings.LOGIN_DEVICE_RATE_LIMIT = "3/m"
    return settings


def test_behind_one_proxy_rotating_the_left_of_the_header_still_hits_the_address_limit(
    client, make_user, tight_login
):
    tight_login.TRUSTED_PROXY_HOPS = 1
    real = make_user("real")
    for i in range(3):  # a new username each time: only the address's budget is spent
        forwarded = f"198.51.100.{i}, 203.0.113.7"
        sign_in(client, f"guess{i}", "x", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)
    response = sign_in(
        client, real.username, PASSWORD,
        REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.99, 203.0.113.7",
    )
    assert response.status_code == 429
    assert b"Too many sign-in attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_without_a_proxy_a_forged_forwarded_header_does_not_escape_the_address_limit(
    client, make_user, tight_login
):
    tight_login.TRUSTED_PROXY_HOPS = 0
    real = make_user("real")
    for i in range(3):
        sign_in(client, f"guess{i}", "x", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"10.9.9.{i}")
    response = sign_in(
        client, real.username, PASSWORD, REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.9.9.99"
    )
    assert response.status_code == 429


def test_behind_one_proxy_two_clients_have_separate_address_budgets(client, make_user, tight_login):
    tight_login.TRUSTED_PROXY_HOPS = 1
    real = make_user("real")
    for i in range(3):
        sign_in(client, f"guess{i}", "x", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert sign_in(
        client, "guess9", "x", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.7"
    ).status_code == 429
    response = sign_in(
        Client(), real.username, PASSWORD, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.8"
    )
    assert response.status_code == 302


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def alices_browser(alice) -> Client:
    """A browser alice signed in from before (it holds her device cookie), now signed out."""
    browser = Client(REMOTE_ADDR="192.0.2.10")
    assert sign_in(browser, "alice", PASSWORD).status_code == 302
    browser.post(reverse("logout"))
    assert browser.cookies["ackly_device"].value
    return browser


def guess_as_a_stranger(username: str, times: int) -> list[int]:
    """Wrong passwords for `username` from a new address and browser each time."""
    return [
        sign_in(Client(), username, f"guess-{i}", REMOTE_ADDR=f"198.51.100.{i}").status_code
        for i in range(times)
    ]


def test_strangers_wrong_passwords_do_not_lock_alice_out_of_her_known_browser(
    alice, alices_browser, tight_login
):
    assert 429 in guess_as_a_stranger("alice", 10)
    response = sign_in(alices_browser, "alice", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    assert alices_browser.session["_auth_user_id"] == str(alice.pk)


def test_an_unknown_browser_is_held_off_the_username_strangers_are_guessing(alice, tight_login):
    statuses = guess_as_a_stranger("alice", 10)
    assert statuses[:3] == [200, 200, 200]
    assert set(statuses[3:]) == {429}
    # Even with the right password: an untrusted client cannot tell a guess from the user.
    response = sign_in(Client(), "ALICE", PASSWORD, REMOTE_ADDR="192.0.2.77")
    assert response.status_code == 429
    assert b"Too many sign-in attempts" in response.content


def test_a_known_browser_guessing_wrong_is_limited_by_its_own_budget(alice, alices_browser, tight_login):
    statuses = [sign_in(alices_browser, "alice", "wrong").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert sign_in(alices_browser, "alice", PASSWORD).status_code == 429
    # Its failures are its own: the username's budget for other browsers is untouched.
    assert sign_in(Client(), "alice", PASSWORD, REMOTE_ADDR="192.0.2.78").status_code == 302


def test_a_device_cookie_of_another_user_earns_no_exemption(alice, make_user, tight_login):
    make_user("mallory")
    mallory = Client(REMOTE_ADDR="198.51.100.200")
    assert sign_in(mallory, "mallory", PASSWORD).status_code == 302
    mallory.post(reverse("logout"))
    statuses = [
        sign_in(mallory, "alice", f"guess-{i}", REMOTE_ADDR=f"198.51.100.{i}").status_code
        for i in range(4)
    ]
    assert statuses == [200, 200, 200, 429]


def test_a_forged_device_cookie_earns_no_exemption(alice, alices_browser, tight_login):
    forger = Client()
    forger.cookies["ackly_device"] = alices_browser.cookies["ackly_device"].value[:-2] + "xx"
    statuses = [
        sign_in(forger, "alice", f"guess-{i}", REMOTE_ADDR=f"198.51.100.{i}").status_code
        for i in range(4)
    ]
    assert statuses == [200, 200, 200, 429]


def test_an_untrusted_client_that_keeps_guessing_backs_off_for_longer(alice, settings, frozen_rate_clock):
    settings.LOGIN_RATE_LIMIT = "100/m"
    settings.LOGIN_BACKOFF_RATE_LIMITS = ["5/h"]
    assert guess_as_a_stranger("alice", 6)[-1] == 429  # past the hour's step, inside the minute's


def test_an_address_over_its_limit_spends_nothing_of_the_usernames_budget(alice, tight_login):
    """One address hammering a username is held off by its own limit alone; otherwise ~100
    quick posts would spend the username's day step and hold alice off every new browser."""
    attacker = Client(REMOTE_ADDR="198.51.100.66")
    for i in range(3):  # the address's budget, spent on other usernames
        sign_in(attacker, f"guess{i}", "x")
    assert {sign_in(attacker, "alice", f"guess-{i}").status_code for i in range(20)} == {429}
    response = sign_in(Client(), "alice", PASSWORD, REMOTE_ADDR="192.0.2.79")
    assert response.status_code == 302


def test_a_password_change_voids_the_users_device_cookies(alice, alices_browser, tight_login):
    alice.set_password("a-new-long-passphrase")
    alice.save(update_fields=["password"])
    assert 429 in guess_as_a_stranger("alice", 10)
    # The old cookie earns nothing now: the browser waits like any other.
    assert sign_in(alices_browser, "alice", "a-new-long-passphrase").status_code == 429


def test_the_browser_that_changes_the_password_keeps_a_working_device_cookie(
    alice, alices_browser, tight_login
):
    assert sign_in(alices_browser, "alice", PASSWORD).status_code == 302
    changed = alices_browser.post(reverse("password_change"), {
        "old_password": PASSWORD,
        "new_password1": "a-new-long-passphrase",
        "new_password2": "a-new-long-passphrase",
    })
    assert changed.status_code == 302
    assert changed.cookies["ackly_device"]["path"] == reverse("login")
    alices_browser.post(reverse("logout"))
    assert 429 in guess_as_a_stranger("alice", 10)
    assert sign_in(alices_browser, "alice", "a-new-long-passphrase").status_code == 302


# --- B. Sign-up without enumeration -------------------------------------------------------------


def headers_of(response) -> dict[str, str]:
    """Every header but the request id, which is unique by design."""
    return {k: v for k, v in response.headers.items() if k != "X-Request-Id"}


def test_signup_answers_the_same_bytes_for_a_new_and_an_existing_email(client, owner):
    new = Client().post(reverse("signup"), {"email": "newcomer@example.com"})
    taken = Client().post(reverse("signup"), {"email": owner.email})
    assert (new.status_code, new["Location"]) == (302, reverse("signup-sent"))
    assert (taken.status_code, taken["Location"]) == (302, reverse("signup-sent"))
    assert new.content == taken.content
    assert headers_of(new) == headers_of(taken)
    assert Client().get(new["Location"]).content == Client().get(taken["Location"]).content
    # Both got an email, each saying what only the address's owner should read.
    assert [m.to for m in mail.outbox] == [["newcomer@example.com"], [owner.email]]
    assert "/signup/finish/" in mail.outbox[0].body
    assert "already an account" in mail.outbox[1].body and owner.username in mail.outbox[1].body
    assert mail.outbox[0].body != mail.outbox[1].body


def test_the_first_step_asks_nothing_that_could_reveal_an_account(client, owner):
    page = client.get(reverse("signup")).content
    assert b'name="username"' not in page
    response = client.post(reverse("signup"), {"email": owner.email, "username": owner.username})
    assert response.status_code == 302  # a username sent anyway is ignored, not checked
    bad = client.post(reverse("signup"), {"email": "not an address"})
    assert bad.status_code == 200
    assert b"Enter a valid email address" in bad.content
    assert b"already" not in bad.content


def test_the_link_makes_the_account_and_workspace_signs_in_and_remembers_the_browser(client):
    path = start_signup(client, "nina@example.com", "Nina's team")
    response = client.post(path, finish_data())
    user = get_user_model().objects.get(username="nina")
    workspace = Workspace.objects.get(name="Nina's team")
    assert response.status_code == 302
    assert response["Location"] == f"/w/{workspace.public_id}/sources/"
    assert Membership.objects.get(workspace=workspace, user=user).role == Role.OWNER
    assert client.session["_auth_user_id"] == str(user.pk)
    assert response.cookies["ackly_device"].value


def test_a_tampered_link_is_refused_clearly_and_shows_nothing(client):
    link = emailed_link(client)
    token = link.split("/")[-2]
    tampered = link.replace(token, token[:-3] + "abc")
    for response in (client.get(tampered), client.post(tampered, finish_data())):
        assert response.status_code == 400
        assert b"This link is not valid" in response.content
        assert b"nina@example.com" not in response.content
        assert token[:-3].encode() not in response.content  # the page does not echo the token
    assert SIGNUP_SESSION_TOKEN not in client.session
    assert not get_user_model().objects.exists()


class _SignedFourDaysAgo(signing.TimestampSigner):
    def timestamp(self) -> str:
        return signing.b62_encode(int(time.time()) - 4 * 24 * 3600)


def test_an_expired_link_is_refused_clearly(client):
    token = _SignedFourDaysAgo(salt=SIGNUP_SALT).sign_object(
        {"e": "late@example.com", "w": ""}, compress=True
    )
    response = client.get(reverse("signup-link", args=[token]))
    assert response.status_code == 400
    assert b"This link has expired" in response.content
    # A link opened in time that expires before the form is sent is refused the same way.
    session = client.session
    session[SIGNUP_SESSION_TOKEN] = token
    session.save()
    response = client.post(reverse("signup-finish"), finish_data())
    assert response.status_code == 400
    assert b"This link has expired" in response.content
    assert not get_user_model().objects.exists()


def test_a_used_link_cannot_make_a_second_account(client):
    link = emailed_link(client)
    path = open_link(client, link)
    assert client.post(path, finish_data()).status_code == 302
    assert SIGNUP_SESSION_TOKEN not in client.session
    client.post(reverse("logout"))
    again = client.post(open_link(client, link), finish_data(username="nina-again"))
    assert again.status_code == 409
    assert b"This link has been used" in again.content
    assert get_user_model().objects.filter(email__iexact="nina@example.com").count() == 1
    assert Workspace.objects.count() == 1


def test_signup_posts_are_rate_limited_per_address_with_a_calm_429(settings, frozen_rate_clock):
    settings.SIGNUP_RATE_LIMIT = "2/h"
    visitor = Client(REMOTE_ADDR="203.0.113.50")
    for i in range(2):
        assert visitor.post(reverse("signup"), {"email": f"n{i}@example.com"}).status_code == 302
    refused = visitor.post(reverse("signup"), {"email": "n9@example.com"})
    assert refused.status_code == 429
    assert b"Too many sign-up requests" in refused.content
    assert b"Create your account" in refused.content
    assert len(mail.outbox) == 2
    other = Client(REMOTE_ADDR="203.0.113.51").post(reverse("signup"), {"email": "n9@example.com"})
    assert other.status_code == 302


def test_one_inbox_is_not_flooded_and_the_page_does_not_say_so(settings, frozen_rate_clock):
    settings.SIGNUP_EMAIL_RATE_LIMIT = "1/h"
    answers = [
        Client(REMOTE_ADDR=f"203.0.113.{60 + i}").post(reverse("signup"), {"email": "v@example.com"})
        for i in range(3)
    ]
    assert {(a.status_code, a["Location"]) for a in answers} == {(302, reverse("signup-sent"))}
    assert len(mail.outbox) == 1


def test_username_errors_need_a_valid_link_and_that_page_is_rate_limited(
    client, owner, settings, frozen_rate_clock
):
    settings.SIGNUP_FINISH_RATE_LIMIT = "2/h"
    path = start_signup(client)
    forged = reverse("signup-link", args=["forged"])
    assert b"already exists" not in client.post(forged, finish_data(username=owner.username)).content
    statuses = [client.post(path, finish_data(username=owner.username)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_the_finish_page_refuses_a_post_without_a_csrf_token(client):
    browser = Client(enforce_csrf_checks=True)
    path = open_link(browser, emailed_link(client))
    response = browser.post(path, finish_data())
    assert response.status_code == 403
    assert not get_user_model().objects.exists()


def test_a_valid_link_leaves_the_url_at_once_and_no_logged_answer_carries_it(
    client, settings, frozen_rate_clock, caplog
):
    settings.SIGNUP_FINISH_RATE_LIMIT = "1/h"
    link = emailed_link(client)
    token = link.split("/")[-2]
    caplog.set_level(logging.INFO)
    opened = client.get(link)
    assert opened.status_code == 302  # a redirect, which Django does not log
    assert token not in opened["Location"]
    path = opened["Location"]
    page = client.get(path)
    assert page.status_code == 200
    assert b"nina@example.com" in page.content
    statuses = [client.post(path, finish_data(password2="mismatch")).status_code for _ in range(2)]
    assert statuses == [200, 429]
    assert "Too Many Requests: /signup/finish/continue/" in caplog.text
    assert token not in caplog.text
    assert client.post(path, finish_data()).status_code == 429  # still limited, nothing made
    assert not get_user_model().objects.exists()


def _finish_in_a_thread(client: Client, path: str, data: dict[str, str]):
    try:
        return client.post(path, data)
    finally:
        connection.close()  # the thread's own connection


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_finishes_of_one_link_at_once_make_one_account():
    browsers = [Client(REMOTE_ADDR=f"203.0.113.{80 + i}") for i in range(2)]
    link = emailed_link(browsers[0])
    paths = [open_link(browser, link) for browser in browsers]
    responses = all_at_once([
        lambda b=browser, p=path, n=n: _finish_in_a_thread(b, p, finish_data(username=f"nina{n}"))
        for n, (browser, path) in enumerate(zip(browsers, paths, strict=True))
    ])
    assert sorted(r.status_code for r in responses) == [302, 409]
    (used,) = [r for r in responses if r.status_code == 409]
    assert b"This link has been used" in used.content
    assert get_user_model().objects.filter(email__iexact="nina@example.com").count() == 1
    assert Workspace.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("usernames", [("nina", "nina"), ("nina", "Nina")])
def test_two_sign_ups_taking_one_username_at_once_get_a_form_error_not_a_500(usernames):
    browsers = [Client(REMOTE_ADDR=f"203.0.113.{90 + i}") for i in range(2)]
    paths = [start_signup(browser, f"nina{i}@example.com") for i, browser in enumerate(browsers)]
    responses = all_at_once([
        lambda b=browser, p=path, n=n: _finish_in_a_thread(b, p, finish_data(username=usernames[n]))
        for n, (browser, path) in enumerate(zip(browsers, paths, strict=True))
    ])
    assert sorted(r.status_code for r in responses) == [200, 302]
    (refused,) = [r for r in responses if r.status_code == 200]
    assert b"A user with that username already exists." in refused.content
    assert get_user_model().objects.filter(username__iexact="nina").count() == 1
    assert Workspace.objects.count() == 1


def test_a_mail_server_failure_says_so_and_makes_nothing(client, monkeypatch):
    def refuse(*args, **kwargs):
        raise smtplib.SMTPServerDisconnected("gone")

    monkeypatch.setattr("workspaces.accounts.send_mail", refuse)
    response = client.post(reverse("signup"), {"email": "nina@example.com"})
    assert response.status_code == 503
    assert b"could not send the email" in response.content
    assert not get_user_model().objects.exists()


# --- Email settings -----------------------------------------------------------------------------


def test_email_url_gives_djangos_smtp_settings():
    smtp = email_url_settings("smtp://mailer%40acme.io:p%3Ass@smtp.acme.io:587")
    assert smtp == {
        "EMAIL_HOST": "smtp.acme.io", "EMAIL_PORT": 587, "EMAIL_HOST_USER": "mailer@acme.io",
        "EMAIL_HOST_PASSWORD": "p:ss", "EMAIL_USE_SSL": False, "EMAIL_USE_TLS": True,
    }
    smtps = email_url_settings("smtps://u:p@smtp.acme.io")
    assert (smtps["EMAIL_PORT"], smtps["EMAIL_USE_SSL"], smtps["EMAIL_USE_TLS"]) == (465, True, False)
    relay = email_url_settings("smtp://localhost:25?starttls=0")
    assert (relay["EMAIL_PORT"], relay["EMAIL_USE_TLS"]) == (25, False)


@pytest.mark.parametrize("url", ["http://smtp.acme.io", "smtp://", "smtp://h?tls=yes"])
def test_a_bad_email_url_fails_start_up(url):
    with pytest.raises(ImproperlyConfigured):
        email_url_settings(url)


# --- The recipe itself: uvicorn with --no-proxy-headers, TRUSTED_PROXY_HOPS=1 -------------------


@pytest.mark.server
@pytest.mark.parametrize("hops", ["0", "1"])
def test_behind_the_recipes_uvicorn_rotating_forwarded_for_buys_no_attempts(tmp_path, hops):
    """uvicorn would take the client from X-Forwarded-For (it trusts the header from
    127.0.0.1); the recipe turns that off and the app counts only what the operator's proxies
    appended. With no proxy (hops 0) the whole header is the client's and is ignored; behind one
    (hops 1) its right-most entry is what the proxy saw. Rotating the rest buys nothing."""
    import re

    import httpx

    from tests.servers import manage, server_env, uvicorn

    # An hour's window: django-ratelimit's windows are fixed, and a minute's could turn over
    # between the 10th and 11th attempt on a loaded machine, giving a fresh budget.
    env = server_env(SQLITE_PATH=str(tmp_path / "db.sqlite3"), TRUSTED_PROXY_HOPS=hops,
                     LOGIN_RATE_LIMIT="10/h")
    for name in ("DATABASE_URL", "REDIS_URL"):  # one process, its own file and cache
        env.pop(name, None)
    manage(env, "migrate", "--noinput", "-v", "0")
    with uvicorn(env, tmp_path / "uvicorn.log") as base, httpx.Client(base_url=base) as browser:
        page = browser.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)

        def attempt(n: int, proxy_saw: str) -> int:
            rotated = f"198.51.{n % 250}.{n % 7 + 1}"  # what the client writes, new each time
            forwarded = rotated if hops == "0" else f"{rotated}, {proxy_saw}"
            return browser.post(
                "/login/", headers={"X-Forwarded-For": forwarded},
                data={"csrfmiddlewaretoken": token, "username": f"guess-{n}", "password": "x"},
            ).status_code

        rotating = [attempt(n, "203.0.113.7") for n in range(12)]
        other_client = attempt(99, "192.0.2.44")

    assert rotating[:10] == [200] * 10  # wrong passwords, the form shown again
    assert rotating[10:] == [429, 429]
    # Behind the proxy another client has a budget of its own; without one, it is the same peer.
    assert other_client == (200 if hops == "1" else 429)
