"""Every management command of SPEC §9: what it prints, what it stores, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from billing.services import get_workspace_limits
from ingest.models import (
    Event,
    IdempotencyRecord,
    RejectedRequest,
    Rejection,
    SnapshotHistory,
    TimelineEvent,
)
from sources.auth import authenticate_key
from sources.keys import KEY_PATTERN, digest_of
from sources.models import Key, Source
from sources.services import create_source, revoke_key
from tests.keys import refusal
from workspaces.models import Membership, Role, Worker, Workspace

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> list[str]:
    """Run a command in-process; its stdout as a list of lines."""
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue().rstrip("\n").splitlines()



def counts() -> tuple[int, ...]:
    return tuple(
        model.objects.count() for model in (Workspace, Membership, Source, Key, Worker)
    )


def refused_without_change(*args: str, match: str) -> None:
    before = counts()
    revoked = list(Key.objects.values_list("revoked_at", "expires_at"))
    with pytest.raises(CommandError, match=match):
        run(*args)
    assert counts() == before
    assert list(Key.objects.values_list("revoked_at", "expires_at")) == revoked


# --- createworkspace ----------------------------------------------------------------------------


def test_createworkspace_prints_the_org_id_on_the_last_line(owner):
    lines = run("createworkspace", "Initech", "--plan", "starter", "--owner", owner.username)
    workspace = Workspace.objects.get(public_id=lines[-1])
    assert workspace.name == "Initech"
    assert workspace.plan.code == "starter"
    assert workspace.event_limit_override is None
    assert Membership.objects.get(workspace=workspace).role == Role.OWNER


def test_createworkspace_defaults_to_the_free_plan_and_takes_an_event_limit_override():
    lines = run("createworkspace", "Hooli", "--event-limit", "1234")
    workspace = Workspace.objects.get(public_id=lines[-1])
    assert workspace.plan.code == "free"
    assert workspace.monthly_event_limit == 1234
    assert get_workspace_limits(workspace.pk).monthly_event_limit == 1234


@pytest.mark.parametrize(
    "args, match",
    [
        (["--plan", "platinum"], "unknown plan 'platinum'"),
        (["--owner", "nobody-here"], "unknown user 'nobody-here'"),
        (["--event-limit", "lots"], "--event-limit must be a whole number"),
        (["--event-limit", "0"], "--event-limit must be at least 1"),
    ],
)
def test_createworkspace_refuses_bad_input_and_creates_nothing(args, match):
    refused_without_change("createworkspace", "Nope", *args, match=match)


# --- createsource -------------------------------------------------------------------------------


def test_createsource_prints_the_app_id_then_a_working_key(workspace):
    lines = run(
        "createsource", workspace.public_id, "Billing cron", "--allow", "job.done, job.failed,"
    )
    source = Source.objects.get(public_id=lines[-2])
    assert KEY_PATTERN.fullmatch(lines[-1])
    assert source.workspace == workspace
    assert source.slug == "billing-cron"
    assert source.allowed_event_types == ["job.done", "job.failed"]
    context = authenticate_key(f"Bearer {lines[-1]}")
    assert context.source_public_id == source.public_id
    # Only the digest is stored, never the secret.
    assert Key.objects.get(source=source).digest == digest_of(lines[-1])


def test_createsource_refuses_an_unknown_workspace():
    refused_without_change("createsource", "org_NOPE", "X", match="unknown workspace 'org_NOPE'")


def test_createsource_refuses_a_slug_already_taken(source):
    refused_without_change(
        "createsource", source.workspace.public_id, "Again", "--slug", source.slug,
        match="slug 'crm-hub' already exists",
    )


def test_createsource_refuses_past_the_plans_source_limit(free_workspace):
    for n in range(3):
        run("createsource", free_workspace.public_id, f"Source {n}")
    refused_without_change(
        "createsource", free_workspace.public_id, "One too many", match="allows 3 sources"
    )


# --- createkey ----------------------------------------------------------------------------------


def test_createkey_adds_a_working_key_beside_the_existing_one(source, secret):
    lines = run("createkey", source.public_id)
    assert lines[-1] != secret
    assert refusal(lines[-1]) is None
    assert refusal(secret) is None
    assert source.keys.count() == 2


def test_createkey_sets_the_expiry_and_the_key_expires(source, shared_auth_cache):
    lines = run("createkey", source.public_id, "--expires-at", "2099-01-02T03:04:05Z")
    key = Key.objects.get(digest=digest_of(lines[-1]))
    assert key.expires_at.isoformat() == "2099-01-02T03:04:05+00:00"
    Key.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert refusal(lines[-1]) == "key_expired"


@pytest.mark.parametrize(
    "args, match",
    [
        (["app_NOPE"], "unknown source 'app_NOPE'"),
        (["{source}", "--expires-at", "next tuesday"], "must be an ISO 8601 date-time"),
        (["{source}", "--expires-at", "2026-02-30T00:00:00Z"], "must be an ISO 8601 date-time"),
        (["{source}", "--expires-at", "2001-01-01T00:00:00Z"], "must be in the future"),
    ],
)
def test_createkey_refuses_bad_input_and_creates_nothing(source, args, match):
    args = [arg.format(source=source.public_id) for arg in args]
    refused_without_change("createkey", *args, match=match)


# --- rotatekey ----------------------------------------------------------------------------------


def test_rotatekey_stops_the_old_key_at_once(source, secret, shared_auth_cache):
    assert refusal(secret) is None  # now cached
    lines = run("rotatekey", source.public_id)
    assert refusal(lines[-1]) is None
    assert refusal(secret) == "key_revoked"


def test_rotatekey_with_a_grace_period_keeps_the_old_key_until_it_ends(source, secret):
    before = timezone.now()
    lines = run("rotatekey", source.public_id, "--grace-hours", "2")
    assert refusal(lines[-1]) is None
    assert refusal(secret) is None
    old = Key.objects.get(digest=digest_of(secret))
    assert old.revoked_at is None
    assert before + timedelta(hours=2) <= old.expires_at <= timezone.now() + timedelta(hours=2)


@pytest.mark.parametrize(
    "args, match",
    [
        (["app_NOPE"], "unknown source 'app_NOPE'"),
        (["{source}", "--grace-hours", "soon"], "--grace-hours must be a number"),
        (["{source}", "--grace-hours", "-1"], "--grace-hours must be a number"),
    ],
)
def test_rotatekey_refuses_bad_input_and_changes_nothing(source, secret, args, match):
    args = [arg.format(source=source.public_id) for arg in args]
    refused_without_change("rotatekey", *args, match=match)
    assert refusal(secret) is None


# --- revokekey ----------------------------------------------------------------------------------


def test_revokekey_by_id_refuses_the_key_on_the_very_next_request(
    source_and_key, shared_auth_cache
):
    _, issued = source_and_key
    assert refusal(issued.secret) is None  # cached now: revocation must drop the entry
    lines = run("revokekey", issued.key.public_id)
    assert lines[-1] == issued.key.public_id
    assert refusal(issued.secret) == "key_revoked"


def test_revokekey_accepts_the_secret_itself_and_never_prints_it(source_and_key):
    _, issued = source_and_key
    lines = run("revokekey", issued.secret)
    assert lines[-1] == issued.key.public_id
    assert issued.secret not in "\n".join(lines)
    assert refusal(issued.secret) == "key_revoked"


def test_revokekey_twice_keeps_the_first_revocation_time(source_and_key):
    _, issued = source_and_key
    run("revokekey", issued.key.public_id)
    first = Key.objects.get(pk=issued.key.pk).revoked_at
    lines = run("revokekey", issued.key.public_id)
    assert "already revoked" in lines[0]
    assert Key.objects.get(pk=issued.key.pk).revoked_at == first


def test_revokekey_refuses_an_unknown_key_without_echoing_the_secret(source_and_key):
    unknown = "ak_live_" + "A" * 40
    with pytest.raises(CommandError) as caught:
        run("revokekey", unknown)
    assert unknown not in str(caught.value)
    refused_without_change("revokekey", "key_NOPE", match="unknown key 'key_NOPE'")
    refused_without_change("revokekey", "hunter2", match="expected a key_… id")


# --- setplan ------------------------------------------------------------------------------------


def test_setplan_takes_effect_on_the_next_request(free_workspace, shared_auth_cache):
    assert get_workspace_limits(free_workspace.pk).plan_code == "free"  # cached now
    lines = run("setplan", free_workspace.public_id, "starter")
    assert lines[-1].endswith("Free -> Starter")
    limits = get_workspace_limits(free_workspace.pk)
    assert (limits.plan_code, limits.monthly_event_limit) == ("starter", 250_000)


def test_setplan_reaches_a_cached_key_on_its_next_request(client, free_workspace, shared_auth_cache):
    """A key's cached look-up carries its plan's limits: the plan change must drop it."""
    _, issued = create_source(free_workspace, "Free jobs")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {issued.secret}"}
    assert client.get("/api/v1/ingest/ping", **headers).status_code == 402  # cached with Free
    run("setplan", free_workspace.public_id, "starter")
    assert client.get("/api/v1/ingest/ping", **headers).status_code == 200


def test_editing_a_plan_reaches_the_cached_keys_of_its_workspaces(
    client, free_workspace, shared_auth_cache
):
    _, issued = create_source(free_workspace, "Free jobs")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {issued.secret}"}
    assert client.get("/api/v1/ingest/ping", **headers).status_code == 402  # cached with Free
    plan = free_workspace.plan
    plan.developer_api = True
    plan.save()
    assert client.get("/api/v1/ingest/ping", **headers).status_code == 200


def test_setplan_refuses_an_unknown_plan_or_workspace(free_workspace):
    refused_without_change("setplan", free_workspace.public_id, "gold", match="unknown plan 'gold'")
    refused_without_change("setplan", "org_NOPE", "pro", match="unknown workspace 'org_NOPE'")
    assert Workspace.objects.get(pk=free_workspace.pk).plan.code == "free"


# --- purge_expired ------------------------------------------------------------------------------


def _age(model, days: float, **fields):
    """A row of `model` received `days` ago."""
    when = timezone.now() - timedelta(days=days)
    if model is Rejection:
        return Rejection.objects.create(hour=when, count=1, code="invalid_key", **fields)
    if model is RejectedRequest:
        return RejectedRequest.objects.create(at=when, code="key_revoked", message="m", **fields)
    return model.objects.create(received_at=when, **fields)


def _seed(workspace, source, worker, days: float, tag: str) -> None:
    common = {"workspace": workspace, "source": source}
    _age(Event, days, status="success", message=tag, **common)
    _age(
        TimelineEvent, days, worker=worker, event_type=tag, category="support",
        timestamp=timezone.now(), request_id="req_x", **common,
    )
    _age(
        SnapshotHistory, days, worker=worker, snapshot_type=tag, timestamp=timezone.now(),
        metrics={"n": 1}, request_id="req_x", **common,
    )
    _age(Rejection, days, **common)
    _age(RejectedRequest, days, **common)


def test_purge_expired_deletes_past_each_plans_retention_in_bounded_batches(
    workspace, free_workspace, settings
):
    settings.PURGE_BATCH_SIZE = 2
    pro_source, _ = create_source(workspace, "Pro jobs")
    free_source, _ = create_source(free_workspace, "Free jobs")
    pro_worker = Worker.objects.create(workspace=workspace, display_name="P")
    free_worker = Worker.objects.create(workspace=free_workspace, display_name="F")
    # Pro keeps 90 days, Free 7: 8-day-old rows go only on Free.
    for n in range(5):
        _seed(workspace, pro_source, pro_worker, 91 + n, "pro-old")
        _seed(free_workspace, free_source, free_worker, 8 + n, "free-old")
    _seed(workspace, pro_source, pro_worker, 8, "pro-recent")
    _seed(free_workspace, free_source, free_worker, 6, "free-recent")
    IdempotencyRecord.objects.create(
        source=pro_source, key="old", request_hash="h", status_code=201, response_body="{}",
        created_at=timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_WINDOW_SECONDS + 5),
    )
    IdempotencyRecord.objects.create(
        source=pro_source, key="new", request_hash="h", status_code=201, response_body="{}"
    )

    lines = run("purge_expired")

    # 5 old rows per model per workspace at 2 per batch: 3 DELETEs each (5 models x 2), +1.
    assert lines[-1] == "Purged 51 rows in 31 batches."
    assert "ingest.Event: 10 deleted" in lines
    assert sorted(Event.objects.values_list("message", flat=True)) == ["free-recent", "pro-recent"]
    assert sorted(TimelineEvent.objects.values_list("event_type", flat=True)) == [
        "free-recent", "pro-recent",
    ]
    assert sorted(SnapshotHistory.objects.values_list("snapshot_type", flat=True)) == [
        "free-recent", "pro-recent",
    ]
    assert Rejection.objects.count() == 2
    assert RejectedRequest.objects.count() == 2
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


def test_purge_expired_with_nothing_to_do_says_so(workspace):
    assert run("purge_expired")[-1] == "Purged 0 rows in 0 batches."


def test_purge_expired_refuses_a_bad_batch_size():
    with pytest.raises(CommandError, match="batch size .* must be at least 1, got 0"):
        run("purge_expired", "--batch-size", "0")


# --- demo ---------------------------------------------------------------------------------------


def _demo_keys(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if KEY_PATTERN.fullmatch(line.strip())]


def test_demo_is_idempotent_and_prints_working_keys_every_run():
    first = run("demo", "--base-url", "http://127.0.0.1:9999/")
    after_first = counts()
    second = run("demo", "--base-url", "http://127.0.0.1:9999")
    assert counts() == after_first
    assert after_first == (1, 1, 4, 4, 4)
    keys = _demo_keys(first)
    assert keys == _demo_keys(second) and len(keys) == 4
    slugs = {slug_of_key(key) for key in keys}
    assert slugs == {"nightly-jobs", "crm-hub", "ci-pipeline", "support-agent"}
    text = "\n".join(second)
    for url in ("http://127.0.0.1:9999/", "/admin/", "/docs/"):
        assert url in text
    workspace = Workspace.objects.get(name="Demo")
    assert workspace.plan.code == "pro"
    user = Membership.objects.get(workspace=workspace, role=Role.OWNER).user
    assert user.username == "demo" and user.is_staff and user.is_superuser
    password = next(line for line in first if "Login" in line).split(" / ")[-1]
    assert user.check_password(password)


def slug_of_key(secret: str) -> str:
    """The slug of the source a key authenticates for (fails the test if it is refused)."""
    return authenticate_key(f"Bearer {secret}").source_slug


def test_demo_issues_a_fresh_key_when_its_key_was_revoked(shared_auth_cache):
    old = _demo_keys(run("demo"))
    revoke_key(Key.objects.get(digest=digest_of(old[1])))
    new = _demo_keys(run("demo"))
    assert new[0] == old[0]
    assert new[1] != old[1]
    assert refusal(old[1]) == "key_revoked"
    assert slug_of_key(new[1]) == "crm-hub"


def test_demo_refuses_a_base_url_that_is_not_http():
    refused_without_change("demo", "--base-url", "127.0.0.1:8000", match="--base-url must start")


# --- as a process: exit status and stderr ---------------------------------------------------------


def _env_for_this_database() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLITE_PATH")}
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        env["SQLITE_PATH"] = db["NAME"]
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    env["REDIS_URL"] = settings.REDIS_URL or ""
    return env


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "args, message",
    [
        (["setplan", "org_NOPE", "pro"], "unknown workspace 'org_NOPE'"),
        (["createkey", "app_NOPE"], "unknown source 'app_NOPE'"),
        (["createworkspace", "X", "--plan", "gold"], "unknown plan 'gold'"),
    ],
)
def test_a_command_given_bad_input_exits_non_zero_with_one_line_on_stderr(args, message):
    before = counts()
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=_env_for_this_database(),
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0
    assert message in done.stderr
    assert done.stdout == ""
    assert counts() == before
