"""The Sources page: listing, creating, editing, rotating, revoking and adding keys."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from ackly.errors import KeyExpired, KeyRevoked
from sources.auth import authenticate_key
from sources.keys import KEY_PATTERN, digest_of
from sources.models import Key, Source
from sources.services import create_source, issue_key

pytestmark = pytest.mark.django_db

SECRET_IN_PAGE = re.compile(r"ak_live_[0-9A-Za-z]{40}")


def url(ws, suffix: str = "") -> str:
    return f"/w/{ws.public_id}/sources/{suffix}"


def bearer(secret: str) -> str:
    return f"Bearer {secret}"


def issue(client, path: str, data: dict):
    """POST a form that issues a key: a redirect naming only the key, then the GET that shows it."""
    posted = client.post(path, data)
    assert posted.status_code == 302, posted.content[:300]
    assert "ak_live_" not in posted["Location"]
    assert re.fullmatch(r"/w/org_\w+/sources/app_\w+/keys/key_\w+/", posted["Location"])
    shown = client.get(posted["Location"])
    assert shown.status_code == 200
    return shown


def shown_secret(response) -> str:
    """The one secret a key page shows (it appears in the field and in both curl examples)."""
    found = set(SECRET_IN_PAGE.findall(response.content.decode()))
    assert len(found) == 1, found
    return found.pop()


# ---- who may see and do what ------------------------------------------------------------------


def test_a_visitor_is_sent_to_the_login_page(client, workspace):
    response = client.get(url(workspace))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("persona", ["owner", "member"])
def test_members_and_owners_see_sources_with_key_prefixes(client, request, persona, workspace, source):
    key = source.keys.get()
    client.force_login(request.getfixturevalue(persona))

    response = client.get(url(workspace))

    assert response.status_code == 200
    page = response.content.decode()
    assert "CRM Hub" in page and "crm-hub" in page
    assert f"{key.prefix}…" in page
    assert "ticket.resolved" in page and "call.logged" in page
    assert "never" in page  # last use
    assert not SECRET_IN_PAGE.search(page)


def test_the_page_shows_each_keys_status_and_last_use(client, owner, workspace, source):
    active = source.keys.get()
    active.last_used_at = timezone.now() - timedelta(minutes=5)
    active.save(update_fields=["last_used_at"])
    revoked = issue_key(source).key
    revoked.revoked_at = timezone.now()
    revoked.save(update_fields=["revoked_at"])
    expired = issue_key(source, expires_at=timezone.now() - timedelta(hours=1)).key
    client.force_login(owner)

    page = client.get(url(workspace)).content.decode()

    assert '<tr class="key-active">' in page
    assert '<tr class="key-revoked">' in page
    assert '<tr class="key-expired">' in page
    # The last use as a <time> the page's script shows in the browser's zone ("5 min ago").
    used = active.last_used_at.astimezone(UTC).isoformat(timespec="milliseconds")
    assert f'datetime="{used.replace("+00:00", "Z")}" data-when="relative"' in page
    for key in (active, revoked, expired):
        assert f"{key.prefix}…" in page


def test_only_managers_see_the_forms(client, member, owner, workspace, source):
    client.force_login(member)
    member_page = client.get(url(workspace)).content.decode()
    client.force_login(owner)
    owner_page = client.get(url(workspace)).content.decode()

    assert "Revoke" not in member_page and "Rotate" not in member_page
    assert "New source" not in member_page
    assert "Revoke" in owner_page and "Rotate" in owner_page and "New source" in owner_page
    assert 'name="csrfmiddlewaretoken"' in owner_page


def test_an_outsider_gets_404_everywhere(client, outsider, workspace, other_workspace, source):
    key = source.keys.get()
    client.force_login(outsider)
    assert client.get(url(workspace)).status_code == 404
    assert client.get(url(workspace, "new/")).status_code == 404
    assert client.post(url(workspace, "new/"), {"name": "Evil"}).status_code == 404
    assert client.post(url(workspace, f"{source.public_id}/rotate/")).status_code == 404
    assert client.post(url(workspace, f"{source.public_id}/keys/new/")).status_code == 404
    revoke = url(workspace, f"{source.public_id}/keys/{key.public_id}/revoke/")
    assert client.post(revoke).status_code == 404
    assert (
        client.post(url(workspace, f"{source.public_id}/edit/"), {"name": "x", "slug": "x"}).status_code
        == 404
    )
    assert Source.objects.filter(workspace=workspace).count() == 1
    assert source.keys.get().revoked_at is None


def test_a_member_is_refused_every_mutation_with_403(client, member, workspace, source):
    key = source.keys.get()
    client.force_login(member)

    assert client.post(url(workspace, "new/"), {"name": "New"}).status_code == 403
    assert client.post(url(workspace, f"{source.public_id}/rotate/"), {"grace_hours": 0}).status_code == 403
    assert client.post(url(workspace, f"{source.public_id}/keys/new/")).status_code == 403
    assert client.post(url(workspace, f"{source.public_id}/keys/{key.public_id}/revoke/")).status_code == 403
    edit = client.post(url(workspace, f"{source.public_id}/edit/"), {"name": "X", "slug": "x"})
    assert edit.status_code == 403

    assert Source.objects.filter(workspace=workspace).count() == 1
    assert Key.objects.filter(source=source).count() == 1
    source.refresh_from_db()
    assert source.slug == "crm-hub"
    assert Key.objects.get(pk=key.pk).revoked_at is None


def test_ids_from_another_workspace_are_404_even_for_an_owner(client, owner, workspace, other_workspace):
    foreign_source, foreign_issued = create_source(other_workspace, "Globex CI")
    foreign_key = foreign_issued.key
    create_source(workspace, "Mine")
    client.force_login(owner)

    assert client.get(url(workspace, f"{foreign_source.public_id}/edit/")).status_code == 404
    assert (
        client.post(url(workspace, f"{foreign_source.public_id}/rotate/"), {"grace_hours": 0}).status_code
        == 404
    )
    assert client.post(url(workspace, f"{foreign_source.public_id}/keys/new/")).status_code == 404
    revoke = url(workspace, f"{foreign_source.public_id}/keys/{foreign_key.public_id}/revoke/")
    assert client.post(revoke).status_code == 404
    mine = Source.objects.get(workspace=workspace)
    # A foreign key id under one's own source is also 404.
    assert (
        client.post(url(workspace, f"{mine.public_id}/keys/{foreign_key.public_id}/revoke/")).status_code
        == 404
    )

    foreign_key.refresh_from_db()
    assert foreign_key.revoked_at is None
    assert Key.objects.filter(source=foreign_source).count() == 1
    assert authenticate_key(bearer(foreign_issued.secret)).source_id == foreign_source.pk


def test_revoke_only_accepts_post(client, owner, workspace, source):
    key = source.keys.get()
    client.force_login(owner)
    response = client.get(url(workspace, f"{source.public_id}/keys/{key.public_id}/revoke/"))
    assert response.status_code == 405
    key.refresh_from_db()
    assert key.revoked_at is None


def test_forms_are_csrf_protected(owner, workspace, source):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner)
    response = strict.post(url(workspace, "new/"), {"name": "No token"})
    assert response.status_code == 403
    assert not Source.objects.filter(name="No token").exists()


# ---- create ------------------------------------------------------------------------------------


def test_creating_a_source_shows_its_key_once_with_curl_examples(client, owner, workspace):
    client.force_login(owner)

    response = issue(
        client,
        url(workspace, "new/"),
        {
            "name": "Billing Jobs",
            "slug": "",
            "event_types": "ticket.resolved, deploy.shipped\ncall.logged",
        },
    )

    assert "no-store" in response["Cache-Control"]
    secret = shown_secret(response)
    assert KEY_PATTERN.fullmatch(secret)
    page = response.content.decode()
    assert "http://testserver/api/ingest" in page
    assert "http://testserver/api/v1/ingest/events" in page
    assert "ticket.resolved" in page
    assert 'data-copy="#secret"' in page
    source = Source.objects.get(workspace=workspace, name="Billing Jobs")
    assert source.slug == "billing-jobs"
    assert source.allowed_event_types == ["ticket.resolved", "deploy.shipped", "call.logged"]
    key = source.keys.get()
    # Only the digest and the prefix are stored.
    assert key.digest == digest_of(secret) and secret.startswith(key.prefix)
    assert not Key.objects.filter(digest=secret).exists()
    assert authenticate_key(bearer(secret)).source_id == source.pk

    # A reload of the Sources page (or any later page) never shows it again.
    later = client.get(url(workspace))
    assert later.status_code == 200
    assert secret not in later.content.decode()
    assert not SECRET_IN_PAGE.search(later.content.decode())
    assert secret not in str(dict(client.session))


def test_the_source_limit_of_free_is_a_clear_message(client, owner, free_workspace):
    for n in range(3):
        create_source(free_workspace, f"Job {n}")
    client.force_login(owner)

    listing = client.get(url(free_workspace)).content.decode()
    response = client.post(url(free_workspace, "new/"), {"name": "Fourth"})

    assert "3 of 3 sources used" in listing
    assert "allows 3 sources" in listing
    assert response.status_code == 400
    page = response.content.decode()
    assert "The Free plan allows 3 sources" in page
    assert not SECRET_IN_PAGE.search(page)
    assert Source.objects.filter(workspace=free_workspace).count() == 3
    assert not Source.objects.filter(name="Fourth").exists()


def test_a_taken_slug_is_a_form_error_on_create(client, owner, workspace, source):
    client.force_login(owner)
    response = client.post(url(workspace, "new/"), {"name": "Other", "slug": "crm-hub"})
    assert response.status_code == 400
    assert "already uses this slug" in response.content.decode()
    assert Source.objects.filter(workspace=workspace).count() == 1


def test_the_same_slug_is_fine_in_another_workspace(client, owner, workspace, other_workspace):
    create_source(other_workspace, "CRM", slug="crm-hub")
    client.force_login(owner)
    response = client.post(url(workspace, "new/"), {"name": "CRM", "slug": "crm-hub"})
    assert response.status_code == 302
    assert Source.objects.filter(workspace=workspace, slug="crm-hub").exists()


def test_an_invalid_create_form_names_the_field(client, owner, workspace):
    client.force_login(owner)
    response = client.post(url(workspace, "new/"), {"name": "", "slug": "Not a slug!"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "This field is required." in page
    assert "letters, numbers, underscores or hyphens" in page
    assert not Source.objects.filter(workspace=workspace).exists()


# ---- edit --------------------------------------------------------------------------------------


def test_editing_the_whitelist_changes_what_authentication_reports(client, owner, workspace, source, secret):
    assert authenticate_key(bearer(secret)).allowed_event_types == {
        "ticket.resolved",
        "call.logged",
    }
    client.force_login(owner)

    form = client.get(url(workspace, f"{source.public_id}/edit/"))
    response = client.post(
        url(workspace, f"{source.public_id}/edit/"),
        {"name": "CRM Hub", "slug": "crm", "event_types": "deploy.shipped,\n  ticket.resolved ,"},
    )

    assert form.status_code == 200 and "ticket.resolved\ncall.logged" in form.content.decode()
    assert response.status_code == 302
    assert response["Location"] == url(workspace)
    source.refresh_from_db()
    assert source.slug == "crm"
    assert source.allowed_event_types == ["deploy.shipped", "ticket.resolved"]
    context = authenticate_key(bearer(secret))
    assert context.allowed_event_types == {"deploy.shipped", "ticket.resolved"}
    assert context.source_slug == "crm"


def test_a_slug_used_by_another_source_is_a_form_error(client, owner, workspace, source):
    other, _ = create_source(workspace, "Deploys", slug="deploys")
    client.force_login(owner)
    response = client.post(url(workspace, f"{other.public_id}/edit/"), {"name": "Deploys", "slug": "crm-hub"})
    assert response.status_code == 400
    assert "already uses" in response.content.decode()
    other.refresh_from_db()
    assert other.slug == "deploys"


def test_clearing_the_whitelist_allows_none(client, owner, workspace, source, secret):
    client.force_login(owner)
    response = client.post(
        url(workspace, f"{source.public_id}/edit/"),
        {"name": "CRM Hub", "slug": "crm-hub", "event_types": ""},
    )
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.allowed_event_types == []
    assert authenticate_key(bearer(secret)).allowed_event_types == frozenset()
    assert "none — the developer API refuses" in client.get(url(workspace)).content.decode()


# ---- rotate, revoke, add a key -----------------------------------------------------------------


def test_rotating_now_stops_the_old_key_at_once(client, owner, workspace, source, secret):
    authenticate_key(bearer(secret))  # cached look-up, which the rotation must drop
    client.force_login(owner)

    response = issue(client, url(workspace, f"{source.public_id}/rotate/"), {"grace_hours": "0"})

    new_secret = shown_secret(response)
    assert new_secret != secret
    with pytest.raises(KeyRevoked):
        authenticate_key(bearer(secret))
    assert authenticate_key(bearer(new_secret)).source_id == source.pk
    assert new_secret not in client.get(url(workspace)).content.decode()


def test_rotating_with_grace_keeps_the_old_key_until_the_grace_ends(client, owner, workspace, source, secret):
    client.force_login(owner)
    before = timezone.now()

    response = issue(client, url(workspace, f"{source.public_id}/rotate/"), {"grace_hours": "24"})

    new_secret = shown_secret(response)
    old = Key.objects.get(digest=digest_of(secret))
    assert old.revoked_at is None
    assert before + timedelta(hours=24) <= old.expires_at <= timezone.now() + timedelta(hours=24)
    assert authenticate_key(bearer(secret)).key_id == old.pk
    assert authenticate_key(bearer(new_secret)).source_id == source.pk
    # After the grace period the old key is expired.
    Key.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    from sources.keys import forget_keys

    forget_keys(old.digest)
    with pytest.raises(KeyExpired):
        authenticate_key(bearer(secret))


def test_a_bad_grace_period_is_refused(client, owner, workspace, source, secret):
    client.force_login(owner)
    response = client.post(url(workspace, f"{source.public_id}/rotate/"), {"grace_hours": "3"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert Key.objects.filter(source=source).count() == 1
    assert authenticate_key(bearer(secret)).source_id == source.pk


def test_revoking_a_key_stops_it_on_the_next_request(client, owner, workspace, source, secret):
    key = source.keys.get()
    authenticate_key(bearer(secret))
    client.force_login(owner)

    response = client.post(url(workspace, f"{source.public_id}/keys/{key.public_id}/revoke/"))

    assert response.status_code == 302
    assert response["Location"] == url(workspace)
    key.refresh_from_db()
    assert key.revoked_at is not None
    with pytest.raises(KeyRevoked):
        authenticate_key(bearer(secret))
    page = client.get(url(workspace)).content.decode()
    assert "Revoked key" in page and '<tr class="key-revoked">' in page


def test_adding_a_key_with_an_expiry_leaves_the_first_key_working(client, owner, workspace, source, secret):
    client.force_login(owner)
    expires = (timezone.now() + timedelta(days=2)).replace(second=0, microsecond=0)

    response = issue(
        client,
        url(workspace, f"{source.public_id}/keys/new/"),
        {"expires_at": expires.strftime("%Y-%m-%dT%H:%M")},
    )

    extra = shown_secret(response)
    key = Key.objects.get(digest=digest_of(extra))
    assert key.source_id == source.pk
    assert key.expires_at == expires
    assert authenticate_key(bearer(extra)).expires_at == expires
    assert authenticate_key(bearer(secret)).source_id == source.pk
    # Once past its expiry the extra key is refused.
    Key.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    from sources.keys import forget_keys

    forget_keys(key.digest)
    with pytest.raises(KeyExpired):
        authenticate_key(bearer(extra))


def test_an_expiry_in_the_past_is_refused(client, owner, workspace, source):
    client.force_login(owner)
    past = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(url(workspace, f"{source.public_id}/keys/new/"), {"expires_at": past})
    assert response.status_code == 400
    assert "must be in the future" in response.content.decode()
    assert Key.objects.filter(source=source).count() == 1


def test_a_resubmitted_rotation_does_nothing_and_keeps_the_shown_key(client, owner, workspace, source):
    client.force_login(owner)
    page = client.get(url(workspace, f"{source.public_id}/rotate/")).content.decode()
    newest = source.keys.get().public_id
    assert f'name="newest" value="{newest}"' in page
    form = {"grace_hours": "0", "newest": newest}

    first = issue(client, url(workspace, f"{source.public_id}/rotate/"), form)
    again = client.post(url(workspace, f"{source.public_id}/rotate/"), form)  # back + resubmit

    shown = shown_secret(first)
    assert again.status_code == 302
    assert again["Location"] == url(workspace)
    assert "nothing was done" in client.get(url(workspace)).content.decode()
    assert Key.objects.filter(source=source).count() == 2
    assert authenticate_key(bearer(shown)).source_id == source.pk


def test_a_resubmitted_add_key_form_does_not_add_a_second_key(client, owner, workspace, source):
    client.force_login(owner)
    form = {"expires_at": "", "newest": source.keys.get().public_id}
    assert client.post(url(workspace, f"{source.public_id}/keys/new/"), form).status_code == 302
    again = client.post(url(workspace, f"{source.public_id}/keys/new/"), form)
    assert again.status_code == 302 and again["Location"] == url(workspace)
    assert Key.objects.filter(source=source).count() == 2


# ---- a key is shown once: POST → redirect → GET ------------------------------------------------

ISSUING_FORMS = {
    "create": ("new/", {"name": "Billing Jobs", "slug": "billing"}),
    "add": ("{app}/keys/new/", {"expires_at": ""}),
    "rotate": ("{app}/rotate/", {"grace_hours": "24"}),
}


@pytest.mark.parametrize("action", ISSUING_FORMS)
def test_the_key_page_shows_the_secret_on_its_first_get_only(
    client, caplog, owner, workspace, source, action
):
    suffix, data = ISSUING_FORMS[action]
    client.force_login(owner)

    posted = client.post(url(workspace, suffix.format(app=source.public_id)), data)
    first = client.get(posted["Location"])
    reload = client.get(posted["Location"])

    assert posted.status_code == 302
    secret = shown_secret(first)
    assert secret not in posted["Location"] and not SECRET_IN_PAGE.search(posted["Location"])
    assert "no-store" in first["Cache-Control"]
    key = Key.objects.get(digest=digest_of(secret))
    assert posted["Location"] == url(workspace, f"{key.source.public_id}/keys/{key.public_id}/")
    # The session held it only between the redirect and the first GET.
    assert secret not in str(dict(client.session))
    assert reload.status_code == 200
    gone = reload.content.decode()
    assert "This key was shown once and is no longer available" in gone
    assert not SECRET_IN_PAGE.search(gone)
    assert f"{key.prefix}…" in gone
    assert url(workspace, f"{key.source.public_id}/rotate/") in gone
    assert url(workspace, f"{key.source.public_id}/keys/new/") in gone
    assert "no-store" in reload["Cache-Control"]
    assert "already uses this slug" not in gone
    assert Source.objects.filter(workspace=workspace).count() == (2 if action == "create" else 1)
    assert secret not in caplog.text


def test_a_key_page_left_unopened_forgets_the_secret_after_the_hand_over_window(
    client, owner, workspace, source, monkeypatch
):
    client.force_login(owner)
    posted = client.post(url(workspace, f"{source.public_id}/keys/new/"), {"expires_at": ""})
    later = timezone.now() + timedelta(seconds=301)
    monkeypatch.setattr("ackly.handover.timezone.now", lambda: later)

    page = client.get(posted["Location"]).content.decode()

    assert "This key was shown once and is no longer available" in page
    assert not SECRET_IN_PAGE.search(page)
    assert "sources.keys_to_show" not in client.session


def test_another_sources_key_page_does_not_take_the_waiting_secret(client, owner, workspace, source):
    other, other_issued = create_source(workspace, "Deploys")
    client.force_login(owner)
    posted = client.post(url(workspace, f"{source.public_id}/keys/new/"), {"expires_at": ""})

    elsewhere = client.get(url(workspace, f"{other.public_id}/keys/{other_issued.key.public_id}/"))
    mismatched = client.get(posted["Location"].replace(source.public_id, other.public_id))
    mine = client.get(posted["Location"])

    assert "no longer available" in elsewhere.content.decode()
    assert mismatched.status_code == 404
    assert shown_secret(mine)


def test_rotating_asks_first_and_names_the_keys_that_will_stop(client, owner, workspace, source):
    first = source.keys.get()
    second = issue_key(source).key
    gone = issue_key(source).key
    gone.revoked_at = timezone.now()
    gone.save(update_fields=["revoked_at"])
    client.force_login(owner)

    response = client.get(url(workspace, f"{source.public_id}/rotate/"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "These 2 keys stop" in page
    assert f"{first.prefix}…" in page and f"{second.prefix}…" in page
    assert f"{gone.prefix}…" not in page  # already revoked: nothing changes for it
    for choice in ("Now", "In 1 hour", "In 24 hours", "In 7 days"):
        assert choice in page
    assert '<option value="24" selected>' in page
    # Asking changes nothing.
    assert Key.objects.filter(source=source).count() == 3
    assert Key.objects.filter(source=source, revoked_at__isnull=True).count() == 2
    # The Sources page links to the question instead of rotating in one click.
    listing = client.get(url(workspace)).content.decode()
    assert f'href="{url(workspace, f"{source.public_id}/rotate/")}"' in listing
    assert 'name="grace_hours"' not in listing


def test_confirming_a_rotation_with_one_hour_of_grace_keeps_the_old_key_for_that_hour(
    client, owner, workspace, source, secret
):
    client.force_login(owner)
    before = timezone.now()
    newest = source.keys.get().public_id

    shown = issue(
        client, url(workspace, f"{source.public_id}/rotate/"), {"grace_hours": "1", "newest": newest}
    )

    new_secret = shown_secret(shown)
    old = Key.objects.get(digest=digest_of(secret))
    assert old.revoked_at is None
    assert before + timedelta(hours=1) <= old.expires_at <= timezone.now() + timedelta(hours=1)
    assert authenticate_key(bearer(secret)).key_id == old.pk
    assert authenticate_key(bearer(new_secret)).source_id == source.pk


def test_a_rotation_without_a_chosen_grace_is_refused(client, owner, workspace, source, secret):
    client.force_login(owner)
    response = client.post(url(workspace, f"{source.public_id}/rotate/"), {})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert Key.objects.filter(source=source).count() == 1
    assert authenticate_key(bearer(secret)).source_id == source.pk


def test_the_pages_before_and_after_a_key_are_refused_to_members_and_outsiders(
    client, member, outsider, workspace, source
):
    key = source.keys.get()
    pages = [f"{source.public_id}/rotate/", f"{source.public_id}/keys/new/",
             f"{source.public_id}/keys/{key.public_id}/", "new/"]
    client.force_login(member)
    assert [client.get(url(workspace, page)).status_code for page in pages] == [403] * 4
    client.force_login(outsider)
    assert [client.get(url(workspace, page)).status_code for page in pages] == [404] * 4
