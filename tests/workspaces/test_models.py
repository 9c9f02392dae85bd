"""Models and ids: prefixed ULIDs, ObjectId-layout event ids, per-workspace uniqueness, plans."""

from __future__ import annotations

import re
import time

import pytest
from django.db import IntegrityError, transaction
from ulid import ULID

from ackly.ids import new_event_id
from billing.models import Plan
from ingest.models import Event
from sources.models import Source
from sources.services import SlugTaken, SourceLimitReached, create_source
from workspaces.models import Membership, Role, Worker
from workspaces.services import create_workspace

pytestmark = pytest.mark.django_db
ULID_BODY = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def assert_public_id(value: str, prefix: str) -> None:
    head, _, body = value.partition("_")
    assert head == prefix
    assert ULID_BODY.fullmatch(body), value
    assert abs(ULID.from_str(body).timestamp - time.time()) < 600


def test_every_named_thing_has_a_prefixed_ulid(workspace, source_and_key):
    source, issued = source_and_key
    worker = Worker.objects.create(workspace=workspace, display_name="Alex")
    assert_public_id(workspace.public_id, "org")
    assert_public_id(source.public_id, "app")
    assert_public_id(issued.key.public_id, "key")
    assert_public_id(worker.public_id, "wrk")


def test_event_ids_are_24_hex_time_ordered_and_counted(db):
    before = int(time.time())
    ids = [new_event_id() for _ in range(2000)]
    after = int(time.time())
    assert len(set(ids)) == len(ids)
    for value in ids:
        assert re.fullmatch(r"[0-9a-f]{24}", value)
        assert before <= int(value[:8], 16) <= after
    seconds = [int(value[:8], 16) for value in ids]
    assert seconds == sorted(seconds)
    # One process: the same 5 random bytes, and the counter steps by one (mod 2^24).
    assert len({value[8:18] for value in ids}) == 1
    counters = [int(value[18:], 16) for value in ids]
    assert all((b - a) % 2**24 == 1 for a, b in zip(counters, counters[1:], strict=False))


def test_a_stored_event_gets_such_an_id(source):
    event = Event.objects.create(workspace=source.workspace, source=source, status="success")
    assert re.fullmatch(r"[0-9a-f]{24}", event.public_id)


def test_the_three_default_plans_match_the_spec(db):
    plans = {
        p.code: (p.monthly_event_limit, p.retention_days, p.max_sources, p.developer_api,
                 p.burst_per_key, p.burst_per_workspace)
        for p in Plan.objects.all()
    }
    assert plans == {
        "free": (10_000, 7, 3, False, 20, 50),
        "starter": (250_000, 30, 25, True, 100, 300),
        "pro": (5_000_000, 90, None, True, 500, 1500),
    }


def test_a_workspace_is_created_with_its_owner(owner):
    workspace = create_workspace("Initech", "starter", owner=owner)
    assert workspace.plan.code == "starter"
    assert Membership.objects.get(workspace=workspace).role == Role.OWNER
    assert workspace.monthly_event_limit == 250_000


def test_the_event_limit_override_wins_over_the_plan(db):
    assert create_workspace("Big deal", "free", event_limit=77).monthly_event_limit == 77


def test_a_user_is_a_member_of_a_workspace_once(workspace, member):
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(workspace=workspace, user=member, role=Role.ADMIN)


def test_worker_email_is_lower_cased_and_unique_per_workspace(workspace, other_workspace):
    worker = Worker.objects.create(workspace=workspace, display_name="A", email="Alex@Example.COM")
    assert Worker.objects.get(pk=worker.pk).email == "alex@example.com"
    with pytest.raises(IntegrityError), transaction.atomic():
        Worker.objects.create(workspace=workspace, display_name="B", email="ALEX@example.com")
    Worker.objects.create(workspace=other_workspace, display_name="C", email="alex@example.com")


def test_worker_external_id_is_unique_per_workspace_and_optional(workspace, other_workspace):
    Worker.objects.create(workspace=workspace, display_name="A", external_id="u-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Worker.objects.create(workspace=workspace, display_name="B", external_id="u-1")
    Worker.objects.create(workspace=other_workspace, display_name="C", external_id="u-1")
    Worker.objects.create(workspace=workspace, display_name="D")
    Worker.objects.create(workspace=workspace, display_name="E")
    assert Worker.objects.for_workspace(workspace).filter(external_id__isnull=True).count() == 2


def test_a_source_slug_is_unique_per_workspace(source, other_workspace):
    with pytest.raises(SlugTaken):
        create_source(source.workspace, "Again", slug=source.slug)
    other, _ = create_source(other_workspace, "Same slug elsewhere", slug=source.slug)
    assert other.slug == source.slug
    assert Source.objects.filter(slug=source.slug).count() == 2


def test_a_slug_is_made_from_the_name_and_the_whitelist_is_cleaned(workspace):
    source, _ = create_source(
        workspace, "Nightly Jobs!", allowed_event_types=[" job.done ", "", "job.done", "job.failed"]
    )
    assert source.slug == "nightly-jobs"
    assert source.allowed_event_types == ["job.done", "job.failed"]


def test_the_plans_source_limit_is_enforced(free_workspace):
    for n in range(3):
        create_source(free_workspace, f"Source {n}")
    with pytest.raises(SourceLimitReached, match="allows 3 sources"):
        create_source(free_workspace, "Fourth")
    assert Source.objects.for_workspace(free_workspace).count() == 3
