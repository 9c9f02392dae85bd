"""Key lifecycle (SPEC §2): create, look-up, rotate (with or without grace), revoke, expire."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ackly.errors import APIError
from sources.auth import authenticate_key
from sources.keys import KEY_PATTERN, digest_of, generate_secret
from sources.models import Key, KeyStatus
from sources.services import create_source, issue_key, revoke_key, rotate_key, touch_key
from tests.keys import refusal

pytestmark = pytest.mark.django_db



def test_a_secret_is_ak_live_and_40_base62_characters():
    secrets = {generate_secret() for _ in range(200)}
    assert len(secrets) == 200
    for secret in secrets:
        assert len(secret) == 48
        assert KEY_PATTERN.fullmatch(secret)


def test_only_the_digest_and_a_short_prefix_are_stored(source_and_key):
    _, issued = source_and_key
    key = Key.objects.get(pk=issued.key.pk)
    assert key.digest == digest_of(issued.secret)
    assert key.prefix == issued.secret[:12] and len(key.prefix) < 16
    stored = [str(value) for value in Key.objects.filter(pk=key.pk).values().get().values()]
    assert issued.secret not in stored
    assert key.public_id.startswith("key_")


def test_a_key_authenticates_for_its_own_source_and_workspace(
    source_and_key, other_workspace
):
    source, issued = source_and_key
    _, other = create_source(other_workspace, "Elsewhere")
    mine = authenticate_key(f"Bearer {issued.secret}")
    theirs = authenticate_key(f"Bearer {other.secret}")
    assert (mine.source_public_id, mine.workspace_public_id) == (
        source.public_id, source.workspace.public_id,
    )
    assert mine.allowed_event_types == frozenset({"ticket.resolved", "call.logged"})
    assert theirs.workspace_id == other_workspace.pk != mine.workspace_id


@pytest.mark.parametrize(
    "header, code",
    [
        (None, "missing_authorization"),
        ("", "missing_authorization"),
        ("Basic dXNlcjpwYXNz", "missing_authorization"),
        ("Bearer", "missing_authorization"),
        ("Bearer ak_live_short", "invalid_key"),
        ("Bearer sk_live_" + "a" * 40, "invalid_key"),
    ],
)
def test_a_bad_header_is_refused_before_any_query(header, code, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(APIError) as caught:
        authenticate_key(header)
    assert caught.value.code == code


def test_an_unknown_well_formed_key_is_invalid(db):
    assert refusal(generate_secret()) == "invalid_key"


def test_the_scheme_is_case_insensitive(secret):
    assert authenticate_key(f"bearer {secret}").key_public_id


def test_rotating_without_grace_stops_the_old_key_at_once(source_and_key, other_workspace):
    source, old = source_and_key
    _, bystander = create_source(other_workspace, "Bystander")
    new = rotate_key(source)
    assert refusal(new.secret) is None
    assert refusal(old.secret) == "key_revoked"
    assert Key.objects.get(pk=old.key.pk).status == KeyStatus.REVOKED
    assert refusal(bystander.secret) is None  # other sources are never touched


def test_rotating_with_grace_keeps_the_old_key_until_the_grace_ends(source_and_key):
    source, old = source_and_key
    new = rotate_key(source, grace=timedelta(hours=6))
    assert refusal(old.secret) is None and refusal(new.secret) is None
    key = Key.objects.get(pk=old.key.pk)
    assert key.revoked_at is None
    assert timezone.now() + timedelta(hours=5, minutes=59) < key.expires_at
    # When the grace period is over, the old key is expired.
    assert key.status_at(key.expires_at + timedelta(seconds=1)) == KeyStatus.EXPIRED
    # (An operator shortening it in the admin saves the key, which drops the cached look-up.)
    key.expires_at = timezone.now() - timedelta(seconds=1)
    key.save(update_fields=["expires_at"])
    assert refusal(old.secret) == "key_expired"
    assert refusal(new.secret) is None


def test_a_grace_period_never_extends_an_earlier_expiry(source):
    soon = timezone.now() + timedelta(hours=1)
    issued = issue_key(source, expires_at=soon)
    rotate_key(source, grace=timedelta(days=2))
    assert Key.objects.get(pk=issued.key.pk).expires_at == soon


def test_a_revoked_key_is_refused_and_revoking_again_keeps_the_first_time(source_and_key):
    _, issued = source_and_key
    revoke_key(issued.key)
    first = Key.objects.get(pk=issued.key.pk).revoked_at
    revoke_key(Key.objects.get(pk=issued.key.pk))
    assert Key.objects.get(pk=issued.key.pk).revoked_at == first
    assert refusal(issued.secret) == "key_revoked"


def test_a_key_past_its_expiry_is_refused(source):
    issued = issue_key(source, expires_at=timezone.now() - timedelta(seconds=1))
    assert issued.key.status == KeyStatus.EXPIRED
    assert refusal(issued.secret) == "key_expired"
    assert Key.objects.usable().filter(pk=issued.key.pk).count() == 0


def test_the_look_up_is_cached(secret, shared_auth_cache, django_assert_num_queries):
    authenticate_key(f"Bearer {secret}")
    with django_assert_num_queries(0):
        assert authenticate_key(f"Bearer {secret}").source_slug == "crm-hub"


def test_a_cached_key_is_refused_right_after_revoke(source_and_key, shared_auth_cache):
    _, issued = source_and_key
    assert refusal(issued.secret) is None  # cached now
    revoke_key(issued.key)
    assert refusal(issued.secret) == "key_revoked"


def test_a_cached_key_is_refused_right_after_rotate(source_and_key, shared_auth_cache):
    source, issued = source_and_key
    assert refusal(issued.secret) is None
    rotate_key(source)
    assert refusal(issued.secret) == "key_revoked"


def test_a_deleted_key_is_forgotten(source_and_key, shared_auth_cache):
    _, issued = source_and_key
    assert refusal(issued.secret) is None
    Key.objects.get(pk=issued.key.pk).delete()
    assert refusal(issued.secret) == "invalid_key"


def test_editing_the_source_refreshes_its_cached_whitelist(source_and_key, shared_auth_cache):
    source, issued = source_and_key
    authenticate_key(f"Bearer {issued.secret}")
    source.allowed_event_types = ["deploy.shipped"]
    source.save(update_fields=["allowed_event_types"])
    context = authenticate_key(f"Bearer {issued.secret}")
    assert context.allowed_event_types == frozenset({"deploy.shipped"})


def test_last_used_at_is_written_at_most_once_a_minute(
    source_and_key, django_assert_num_queries
):
    _, issued = source_and_key
    first = timezone.now()
    with django_assert_num_queries(1):
        touch_key(issued.key.pk, first)
    with django_assert_num_queries(0):
        touch_key(issued.key.pk, first + timedelta(seconds=30))
    assert Key.objects.get(pk=issued.key.pk).last_used_at == first
    later = first + timedelta(seconds=61)
    touch_key(issued.key.pk, later)
    assert Key.objects.get(pk=issued.key.pk).last_used_at == later
