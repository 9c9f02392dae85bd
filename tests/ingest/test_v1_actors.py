"""Actor resolution for the developer API: workerId → externalId → email, in bulk."""

from __future__ import annotations

import pytest

from workspaces.models import Worker
from workspaces.services import _insert_workers, resolve_actors

pytestmark = pytest.mark.django_db


def test_a_worker_id_resolves_only_inside_its_own_workspace(workspace, other_workspace):
    mine = Worker.objects.create(workspace=workspace, display_name="Alex Chen")
    theirs = Worker.objects.create(workspace=other_workspace, display_name="Spy")
    resolved = resolve_actors(
        workspace.pk,
        [("workerId", mine.public_id, None), ("workerId", theirs.public_id, None)],
    )
    assert resolved[("workerId", mine.public_id)].pk == mine.pk
    assert resolved[("workerId", theirs.public_id)] is None


def test_an_unknown_external_id_creates_a_worker_and_a_known_one_matches(workspace):
    known = Worker.objects.create(workspace=workspace, display_name="Known", external_id="crm-1")
    resolved = resolve_actors(
        workspace.pk, [("externalId", "crm-1", None), ("externalId", "crm-2", None)]
    )
    assert resolved[("externalId", "crm-1")].pk == known.pk
    created = Worker.objects.get(workspace=workspace, external_id="crm-2")
    assert resolved[("externalId", "crm-2")].pk == created.pk
    assert created.display_name == "crm-2"
    assert created.public_id.startswith("wrk_")


def test_an_email_matches_case_insensitively_and_creates_with_the_local_part(workspace):
    known = Worker.objects.create(
        workspace=workspace, display_name="Alex", email="alex@example.com"
    )
    resolved = resolve_actors(
        workspace.pk,
        [("email", "ALEX@Example.COM", None), ("email", "Sam.Lee@Example.com", None)],
    )
    assert resolved[("email", "alex@example.com")].pk == known.pk
    created = Worker.objects.get(workspace=workspace, email="sam.lee@example.com")
    assert created.display_name == "Sam.Lee".lower()
    assert Worker.objects.filter(workspace=workspace).count() == 2


def test_a_worker_created_from_an_external_id_keeps_a_free_email(workspace):
    Worker.objects.create(workspace=workspace, display_name="Taken", email="taken@example.com")
    resolve_actors(
        workspace.pk,
        [
            ("externalId", "crm-7", "kim@example.com"),
            ("externalId", "crm-8", "taken@example.com"),
            ("externalId", "crm-9", "kim@example.com"),
        ],
    )
    workers = {w.external_id: w for w in Worker.objects.filter(external_id__isnull=False)}
    assert workers["crm-7"].email == "kim@example.com"
    assert workers["crm-7"].display_name == "kim"
    # Emails are unique per workspace: the second claimant is created without one.
    assert workers["crm-8"].email is None
    assert workers["crm-9"].email is None


def test_the_same_external_id_in_another_workspace_is_another_worker(workspace, other_workspace):
    theirs = Worker.objects.create(
        workspace=other_workspace, display_name="Theirs", external_id="crm-1"
    )
    resolved = resolve_actors(workspace.pk, [("externalId", "crm-1", None)])
    assert resolved[("externalId", "crm-1")].pk != theirs.pk
    assert Worker.objects.filter(external_id="crm-1").count() == 2


def test_a_batch_of_many_actors_resolves_with_a_few_queries(
    workspace, django_assert_num_queries
):
    Worker.objects.bulk_create(
        [Worker(workspace=workspace, display_name=f"w{i}", external_id=f"e{i}") for i in range(100)]
    )
    actors = [("externalId", f"e{i}", None) for i in range(200)]
    actors += [("email", f"p{i}@example.com", None) for i in range(50)]
    # One select finds the workers of every kind; then externalId: email check for riders
    # skipped, insert, re-select; email: insert, re-select.
    with django_assert_num_queries(5):
        resolved = resolve_actors(workspace.pk, actors)
    assert len(resolved) == 250
    assert Worker.objects.filter(workspace=workspace).count() == 250


def test_a_dry_run_creates_nothing(workspace):
    resolved = resolve_actors(
        workspace.pk, [("externalId", "crm-1", None), ("email", "a@b.co", None)], create=False
    )
    assert resolved[("externalId", "crm-1")].pk is None
    assert resolved[("email", "a@b.co")].display_name == "a"
    assert not Worker.objects.exists()


def test_inserting_a_worker_another_request_just_created_returns_theirs(workspace):
    """The race of two batches creating one worker: the loser's row is skipped, not an error."""
    theirs = Worker.objects.create(workspace=workspace, display_name="Theirs", external_id="crm-1")
    mine = Worker(workspace_id=workspace.pk, external_id="crm-1", display_name="crm-1")
    found = _insert_workers(workspace.pk, "external_id", [mine])
    assert found["crm-1"].pk == theirs.pk
    assert Worker.objects.filter(external_id="crm-1").count() == 1
