"""Key guessing is limited per client address, at no cost to valid keys (sources/auth.py).

Every well-formed key that does not exist costs an indexed query. Past AUTH_FAILURE_LIMIT
unknown keys in a window, an address is answered 429 `rate_limited` with Retry-After before the
database is asked. Both APIs authenticate through the same pipeline, so both are covered.
"""

from __future__ import annotations

import json

import pytest

from ingest.models import Event
from sources.keys import generate_secret
from sources.services import revoke_key

pytestmark = pytest.mark.django_db

LIMIT = 5
GUESSER = "203.0.113.7"
BYSTANDER = "198.51.100.20"

INGEST = ("/api/ingest", {"status": "success", "message": "hello"})
V1 = (
    "/api/v1/ingest/events",
    {"events": [{"eventType": "ticket.resolved", "category": "support",
                 "actor": {"externalId": "agent-1"}}]},
)


@pytest.fixture(autouse=True)
def _tight_limit(settings, monkeypatch):
    """LIMIT failures a minute, and one fixed instant so no test straddles a window."""
    settings.AUTH_FAILURE_LIMIT = f"{LIMIT}/m"
    instant = 1_800_000_000.0 + 10
    monkeypatch.setattr("sources.auth.time.time", lambda: instant)
    return instant


@pytest.fixture(params=[INGEST, V1], ids=["ingest", "v1"])
def api(request):
    return request.param


def send(client, api, secret: str, address: str, **headers):
    path, body = api
    return client.post(
        path, json.dumps(body), content_type="application/json", REMOTE_ADDR=address,
        HTTP_AUTHORIZATION=f"Bearer {secret}", **headers,
    )


def guess(client, api, address: str = GUESSER, times: int = 1) -> list[int]:
    return [send(client, api, generate_secret(), address).status_code for _ in range(times)]


def test_unknown_keys_past_the_limit_are_refused_with_429_before_any_query(
    client, api, django_assert_num_queries
):
    with django_assert_num_queries(1):  # the key's indexed look-up: nothing is saved by a 401
        assert guess(client, api) == [401]
    assert guess(client, api, times=LIMIT - 1) == [401] * (LIMIT - 1)

    with django_assert_num_queries(0):
        response = send(client, api, generate_secret(), GUESSER)
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert "unknown keys from this address" in error["message"]
    assert error["requestId"] == response["X-Request-Id"]
    assert error["docsUrl"].endswith("/docs/errors/rate_limited/")
    assert response["Retry-After"] == "50"  # the window's 60 s, 10 s of them gone
    with django_assert_num_queries(0):
        assert guess(client, api, times=20) == [429] * 20


def test_another_address_is_not_affected(client, api):
    guess(client, api, times=LIMIT)
    assert guess(client, api) == [429]
    assert guess(client, api, address=BYSTANDER) == [401]


def test_the_address_is_let_in_again_when_the_window_ends(client, api, monkeypatch, _tight_limit):
    guess(client, api, times=LIMIT)
    assert guess(client, api) == [429]
    monkeypatch.setattr("sources.auth.time.time", lambda: _tight_limit + 50)
    assert guess(client, api) == [401]


def test_a_valid_key_in_the_shared_cache_still_works_from_a_blocked_address(
    client, api, secret, shared_auth_cache
):
    assert send(client, api, secret, GUESSER).status_code in (201, 202)  # now cached
    guess(client, api, times=LIMIT)
    assert guess(client, api) == [429]
    response = send(client, api, secret, GUESSER)
    assert response.status_code in (201, 202), response.content
    assert Event.objects.count() + _timeline_count() == 2


def test_a_valid_key_that_must_be_looked_up_is_refused_like_a_guess_until_the_window_ends(
    client, api, secret, shared_auth_cache, monkeypatch, _tight_limit
):
    guess(client, api, times=LIMIT)
    assert send(client, api, secret, GUESSER).status_code == 429
    monkeypatch.setattr("sources.auth.time.time", lambda: _tight_limit + 50)
    assert send(client, api, secret, GUESSER).status_code in (201, 202)


def test_valid_keys_are_never_counted(client, api, secret):
    # Cache misses every time (no shared cache in the default settings): each one looks the key
    # up and succeeds; none counts towards the limit.
    assert {send(client, api, secret, GUESSER).status_code for _ in range(LIMIT + 2)} <= {201, 202}
    assert guess(client, api) == [401]


def test_revoked_keys_and_malformed_ones_are_not_counted_as_guesses(client, api, source_and_key):
    _, issued = source_and_key
    revoke_key(issued.key)
    for _ in range(LIMIT + 1):
        assert send(client, api, issued.secret, GUESSER).status_code == 401
        assert send(client, api, "ak_live_short", GUESSER).status_code == 401
    assert guess(client, api) == [401]


def test_a_rotating_x_forwarded_for_buys_a_guesser_nothing(client, api):
    # No trusted proxy (TRUSTED_PROXY_HOPS = 0): the header is the client's own writing.
    codes = [
        send(client, api, generate_secret(), GUESSER, HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code
        for n in range(LIMIT + 1)
    ]
    assert codes == [401] * LIMIT + [429]


def test_an_ipv6_guesser_is_counted_per_64_block(client, api):
    codes = [
        send(client, api, generate_secret(), f"2001:db8:1:2::{n:x}").status_code
        for n in range(1, LIMIT + 2)
    ]
    assert codes == [401] * LIMIT + [429]
    assert guess(client, api, address="2001:db8:1:3::1") == [401]


def _timeline_count() -> int:
    from ingest.models import TimelineEvent

    return TimelineEvent.objects.count()
