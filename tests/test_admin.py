"""The Django admin as an operator uses it: every model listed, keys shown once, edits live."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.admin.sites import site
from django.urls import reverse
from django.utils import timezone

from billing.models import Plan, Usage
from billing.services import get_workspace_limits
from ingest.models import (
    Event,
    IdempotencyRecord,
    RejectedRequest,
    Rejection,
    Snapshot,
    SnapshotHistory,
    TimelineEvent,
)
from sources.auth import authenticate_key
from sources.keys import digest_of
from sources.models import Key, Source
from tests.keys import refusal
from workspaces.models import Membership, Worker

pytestmark = pytest.mark.django_db
SECRET = re.compile(r"ak_live_[0-9A-Za-z]{40}")
ACTION_BOX = "_selected_action"



def secrets_in(response) -> list[str]:
    return SECRET.findall(response.content.decode())


def url(model, view: str = "changelist", *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def rows(workspace, source, secret):
    """One row of every model, so each admin page has something to render."""
    worker = Worker.objects.create(workspace=workspace, display_name="Alex", email="a@example.com")
    common = {"workspace": workspace, "source": source}
    now = timezone.now()
    Event.objects.create(status="success", message="backup done", **common)
    TimelineEvent.objects.create(
        worker=worker, event_type="ticket.resolved", category="support", timestamp=now,
        request_id="req_1", **common,
    )
    for model in (Snapshot, SnapshotHistory):
        model.objects.create(
            worker=worker, snapshot_type="tickets_open", timestamp=now, metrics={"n": 3},
            request_id="req_1", **common,
        )
    IdempotencyRecord.objects.create(
        source=source, key="k1", request_hash="h", status_code=201, response_body="{}"
    )
    Rejection.objects.create(code="rate_limited", hour=now, count=2, **common)
    RejectedRequest.objects.create(
        code="rate_limited", message="More than 500 requests per 1s", request_id="req_2", **common
    )
    return worker


def test_every_model_is_registered():
    from workspaces.models import Workspace

    models = [Plan, Usage, Workspace, Membership, Worker, Source, Key, Event, TimelineEvent,
              Snapshot, SnapshotHistory, IdempotencyRecord, Rejection, RejectedRequest]
    assert all(site.is_registered(model) for model in models)


def test_every_list_and_detail_page_renders_for_a_superuser(admin_client, rows):
    assert get_workspace_limits(rows.workspace_id)  # a Usage row comes with the first event
    for model in site._registry:
        if model._meta.app_label not in {"billing", "workspaces", "sources", "ingest"}:
            continue
        listing = admin_client.get(url(model), {"q": "a"})
        assert listing.status_code == 200, model
        listing = admin_client.get(url(model))
        assert listing.status_code == 200, model
        obj = model.objects.first()
        if obj is not None:
            assert admin_client.get(url(model, "change", obj.pk)).status_code == 200, model


def test_the_key_digest_is_never_displayed(admin_client, source_and_key):
    source, issued = source_and_key
    pages = [
        admin_client.get(url(Source, "change", source.pk)),
        admin_client.get(url(Key)),
        admin_client.get(url(Key, "change", issued.key.pk)),
    ]
    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        assert issued.key.prefix in html
        assert issued.key.digest not in html
        assert issued.secret not in html


def test_events_are_read_only(admin_client, rows):
    event = Event.objects.get()
    page = admin_client.get(url(Event, "change", event.pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    changed = admin_client.post(url(Event, "change", event.pk), {"message": "edited"})
    assert changed.status_code == 403
    assert admin_client.get(url(Event, "add")).status_code == 403
    assert Event.objects.get().message == "backup done"


# --- Rotate key on sources ----------------------------------------------------------------------


def test_rotate_key_asks_for_a_grace_period_before_rotating(admin_client, source, secret):
    page = admin_client.post(url(Source), {"action": "rotate_keys", ACTION_BOX: [source.pk]})
    assert page.status_code == 200
    assert "Grace period" in page.content.decode()
    assert secrets_in(page) == []
    assert source.keys.count() == 1


def test_rotate_key_shows_the_new_key_once_and_the_old_one_stops(
    admin_client, source, secret, shared_auth_cache
):
    assert refusal(secret) is None  # cached: the rotation must drop it
    page = admin_client.post(
        url(Source),
        {"action": "rotate_keys", ACTION_BOX: [source.pk], "grace_hours": "0", "apply": "1"},
    )
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    shown = secrets_in(page)
    assert len(shown) == 1
    new_secret = shown[0]
    assert authenticate_key(f"Bearer {new_secret}").source_public_id == source.public_id
    assert refusal(secret) == "key_revoked"
    # Never again: not on the next pages, not in the session, cookies or the admin log.
    for later in (url(Source), url(Source, "change", source.pk)):
        assert new_secret not in admin_client.get(later).content.decode()
    assert new_secret not in json.dumps(dict(admin_client.session.items()), default=str)
    assert all(new_secret not in morsel.value for morsel in admin_client.cookies.values())
    logs = " ".join(LogEntry.objects.values_list("change_message", flat=True))
    assert "Rotated key" in logs and new_secret not in logs
    assert Key.objects.filter(digest=digest_of(new_secret), source=source).exists()


def test_rotate_key_with_a_grace_period_keeps_the_old_key_working_until_then(
    admin_client, source, secret
):
    page = admin_client.post(
        url(Source),
        {"action": "rotate_keys", ACTION_BOX: [source.pk], "grace_hours": "1.5", "apply": "1"},
    )
    assert page.status_code == 200
    (new_secret,) = secrets_in(page)
    assert refusal(new_secret) is None
    assert refusal(secret) is None
    old = Key.objects.get(digest=digest_of(secret))
    assert old.revoked_at is None
    left = old.expires_at - timezone.now()
    assert timedelta(hours=1, minutes=29) < left <= timedelta(hours=1, minutes=30)


def test_rotate_key_refuses_a_negative_grace_period(admin_client, source, secret):
    page = admin_client.post(
        url(Source),
        {"action": "rotate_keys", ACTION_BOX: [source.pk], "grace_hours": "-2", "apply": "1"},
    )
    assert page.status_code == 200
    assert secrets_in(page) == []
    assert "greater than or equal to 0" in page.content.decode()
    assert source.keys.count() == 1 and refusal(secret) is None


# --- Keys: revoke and rotate --------------------------------------------------------------------


def test_revoke_key_refuses_the_key_on_the_next_request(
    admin_client, source_and_key, shared_auth_cache
):
    _, issued = source_and_key
    assert refusal(issued.secret) is None
    done = admin_client.post(
        url(Key), {"action": "revoke_keys", ACTION_BOX: [issued.key.pk]}, follow=True
    )
    assert done.status_code == 200
    assert "Revoked 1 key" in done.content.decode()
    assert refusal(issued.secret) == "key_revoked"
    assert Key.objects.get(pk=issued.key.pk).revoked_at is not None


def test_rotate_on_a_key_rotates_its_source_once(admin_client, source_and_key, shared_auth_cache):
    source, issued = source_and_key
    extra = Key.objects.create(source=source, prefix="ak_live_xxxx", digest="0" * 64)
    page = admin_client.post(
        url(Key),
        {"action": "rotate_sources", ACTION_BOX: [issued.key.pk, extra.pk], "grace_hours": "0",
         "apply": "1"},
    )
    assert page.status_code == 200
    (new_secret,) = secrets_in(page)
    assert authenticate_key(f"Bearer {new_secret}").source_public_id == source.public_id
    assert refusal(issued.secret) == "key_revoked"
    assert source.keys.count() == 3


# --- Add forms show the secret once -------------------------------------------------------------


def test_adding_a_source_shows_its_first_key_once(admin_client, workspace):
    page = admin_client.post(
        url(Source, "add"),
        {"workspace": workspace.pk, "name": "Payroll", "slug": "payroll",
         "allowed_event_types": "run.done, run.failed, run.done"},
    )
    assert page.status_code == 200
    (secret,) = secrets_in(page)
    source = Source.objects.get(slug="payroll")
    assert source.allowed_event_types == ["run.done", "run.failed"]
    assert authenticate_key(f"Bearer {secret}").source_public_id == source.public_id
    assert secret not in admin_client.get(url(Source, "change", source.pk)).content.decode()


def test_adding_a_source_with_a_taken_slug_is_a_form_error(admin_client, source):
    page = admin_client.post(
        url(Source, "add"), {"workspace": source.workspace_id, "name": "Dup", "slug": source.slug}
    )
    assert page.status_code == 200
    assert secrets_in(page) == []
    assert Source.objects.filter(slug=source.slug).count() == 1


def test_adding_a_key_shows_it_once_with_its_expiry(admin_client, source, secret):
    page = admin_client.post(
        url(Key, "add"),
        {"source": source.pk, "expires_at_0": "2099-01-01", "expires_at_1": "00:00:00"},
    )
    assert page.status_code == 200
    (new_secret,) = secrets_in(page)
    key = Key.objects.get(digest=digest_of(new_secret))
    assert key.source == source and key.expires_at.year == 2099
    assert key.prefix == new_secret[:12]
    assert refusal(new_secret) is None and refusal(secret) is None


def test_adding_a_key_that_already_expired_is_refused(admin_client, source):
    page = admin_client.post(
        url(Key, "add"),
        {"source": source.pk, "expires_at_0": "2001-01-01", "expires_at_1": "00:00:00"},
    )
    assert page.status_code == 200
    assert "must be in the future" in page.content.decode()
    assert source.keys.count() == 1


# --- Workspace edits take effect on the next request ---------------------------------------------


def _workspace_form(workspace, **changes) -> dict:
    """The change form's POST data as the admin renders it, with `changes` applied."""
    memberships = list(Membership.objects.filter(workspace=workspace).order_by("pk"))
    anchor = timezone.localtime(workspace.billing_anchor)
    data = {
        "name": workspace.name,
        "plan": workspace.plan_id,
        "event_limit_override": workspace.event_limit_override or "",
        "billing_anchor_0": anchor.strftime("%Y-%m-%d"),
        "billing_anchor_1": anchor.strftime("%H:%M:%S"),
        "memberships-TOTAL_FORMS": str(len(memberships)),
        "memberships-INITIAL_FORMS": str(len(memberships)),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for n, membership in enumerate(memberships):
        data.update({
            f"memberships-{n}-id": membership.pk,
            f"memberships-{n}-workspace": workspace.pk,
            f"memberships-{n}-user": membership.user_id,
            f"memberships-{n}-role": membership.role,
        })
    data.update(changes)
    return data


def test_a_plan_change_in_the_admin_applies_on_the_next_request(
    admin_client, free_workspace, shared_auth_cache
):
    assert get_workspace_limits(free_workspace.pk).plan_code == "free"  # cached now
    starter = Plan.objects.get(code="starter")
    saved = admin_client.post(
        url(free_workspace.__class__, "change", free_workspace.pk),
        _workspace_form(free_workspace, plan=starter.pk),
    )
    assert saved.status_code == 302
    limits = get_workspace_limits(free_workspace.pk)
    assert (limits.plan_code, limits.developer_api) == ("starter", True)


def test_an_event_limit_override_in_the_admin_applies_on_the_next_ingest(
    admin_client, client, source_and_key, shared_auth_cache
):
    source, issued = source_and_key
    headers = {"HTTP_AUTHORIZATION": f"Bearer {issued.secret}"}
    body = json.dumps({"status": "success"})
    first = client.post("/api/ingest", body, content_type="application/json", **headers)
    assert first.status_code == 201  # the workspace's limits are cached now
    saved = admin_client.post(
        url(source.workspace.__class__, "change", source.workspace_id),
        _workspace_form(source.workspace, event_limit_override="1"),
    )
    assert saved.status_code == 302
    second = client.post("/api/ingest", body, content_type="application/json", **headers)
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "quota_exceeded"
    assert Event.objects.count() == 1
    # Saving the form kept the billing anchor (to the microsecond), so the period's usage holds.
    assert Usage.objects.get(workspace=source.workspace).events == 1


def test_a_worker_cannot_be_moved_to_another_workspace(admin_client, rows, other_workspace):
    """Its timeline belongs where it is (and the database refuses the move while it has one)."""
    worker = rows
    home = worker.workspace_id
    page = admin_client.get(url(Worker, "change", worker.pk))
    assert page.status_code == 200
    assert "workspace" not in page.context["adminform"].form.fields
    response = admin_client.post(url(Worker, "change", worker.pk), {
        "display_name": "Alex M.", "external_id": "", "email": "a@example.com",
        "workspace": other_workspace.pk,
    })
    assert response.status_code == 302, response.content[:500]
    worker.refresh_from_db()
    assert (worker.display_name, worker.workspace_id) == ("Alex M.", home)
