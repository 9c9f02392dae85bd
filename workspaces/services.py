"""Workspaces and their members."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import transaction

from billing.services import get_plan
from workspaces.models import Membership, Role, Worker, Workspace


class UnknownUser(ValueError):
    pass


@transaction.atomic
def create_workspace(
    name: str,
    plan_code: str = "free",
    owner=None,
    event_limit: int | None = None,
) -> Workspace:
    """A workspace on a plan, with its owner as the first member."""
    workspace = Workspace.objects.create(
        name=name, plan=get_plan(plan_code), event_limit_override=event_limit
    )
    if owner is not None:
        Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    return workspace


def get_user(username: str):
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise UnknownUser(f"unknown user {username!r}")
    return user


def membership_of(user, workspace) -> Membership | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(user=user, workspace=workspace).first()


# --- Actor resolution (developer API, SPEC §4) ------------------------------------------------
# An actor is (kind, value, email): kind is "workerId", "externalId" or "email", the first the
# sender gave, in that order; email rides along so a worker created from an externalId keeps it.

ActorKey = tuple[str, str]
_WORKER_FIELDS = ("id", "public_id", "display_name", "external_id", "email")


def _workers_of(workspace_id: int):
    return Worker.objects.filter(workspace_id=workspace_id).only(*_WORKER_FIELDS)


def _display_name(external_id: str | None, email: str | None) -> str:
    if email:
        return email.split("@", 1)[0][:200]
    return (external_id or "")[:200]


def _insert_workers(workspace_id: int, field: str, new: list[Worker]) -> dict[str, Worker]:
    """Insert workers, skipping any a concurrent request created first, then read them all back.

    ignore_conflicts turns a race on the unique (workspace, externalId/email) indexes into a
    no-op, so two batches creating the same worker both succeed and share one row.
    """
    if not new:
        return {}
    # Sorted, so two batches inserting overlapping workers take the index locks in the same
    # order: the later one waits for the first to commit instead of deadlocking with it.
    new = sorted(new, key=lambda worker: getattr(worker, field))
    Worker.objects.bulk_create(new, ignore_conflicts=True)
    values = [getattr(worker, field) for worker in new]
    stored = _workers_of(workspace_id).filter(**{f"{field}__in": values})
    return {getattr(w, field): w for w in stored}


def resolve_actors(
    workspace_id: int, actors: Iterable[tuple[str, str, str | None]], create: bool = True
) -> dict[ActorKey, Worker | None]:
    """The worker of each distinct (kind, value) actor, with one query per kind.

    workerId must name a worker of this workspace (else None: `worker_not_found`);
    externalId and email (lower-cased) match or create. With create=False (dry runs) the
    workers that would be created are returned unsaved.
    """
    worker_ids: set[str] = set()
    external_ids: dict[str, str | None] = {}
    emails: set[str] = set()
    for kind, value, email in actors:
        if kind == "workerId":
            worker_ids.add(value)
        elif kind == "externalId":
            if external_ids.get(value) is None:
                external_ids[value] = email
        else:
            emails.add(value.lower())

    resolved: dict[ActorKey, Worker | None] = {}
    if worker_ids:
        # Filtered by workspace: a worker id of another tenant is simply not found.
        found = {w.public_id: w for w in _workers_of(workspace_id).filter(public_id__in=worker_ids)}
        resolved.update((("workerId", value), found.get(value)) for value in worker_ids)

    if external_ids:
        found = {
            w.external_id: w
            for w in _workers_of(workspace_id).filter(external_id__in=list(external_ids))
        }
        missing = [value for value in external_ids if value not in found]
        if missing:
            found.update(_create_by_external_id(workspace_id, missing, external_ids, create))
        resolved.update((("externalId", value), found[value]) for value in external_ids)

    if emails:
        found = {w.email: w for w in _workers_of(workspace_id).filter(email__in=list(emails))}
        missing_emails = [
            Worker(workspace_id=workspace_id, email=e, display_name=_display_name(None, e))
            for e in emails
            if e not in found
        ]
        if missing_emails:
            if create:
                found.update(_insert_workers(workspace_id, "email", missing_emails))
            else:
                found.update((w.email, w) for w in missing_emails)
        resolved.update((("email", value), found[value]) for value in emails)
    return resolved


def _create_by_external_id(
    workspace_id: int, missing: list[str], riders: dict[str, str | None], create: bool
) -> dict[str, Worker]:
    """New workers for unknown externalIds, keeping a given email unless another worker has it."""
    wanted = {rider.lower() for v in missing if (rider := riders[v])}
    taken = set(
        _workers_of(workspace_id).filter(email__in=wanted).values_list("email", flat=True)
    ) if wanted else set()
    new: list[Worker] = []
    for value in missing:
        rider = riders[value]
        email = rider.lower() if rider else None
        if email in taken:
            email = None
        elif email:
            taken.add(email)  # one email, one worker, even within a batch
        new.append(
            Worker(
                workspace_id=workspace_id,
                external_id=value,
                email=email,
                display_name=_display_name(value, email),
            )
        )
    if not create:
        return dict(zip(missing, new, strict=True))  # each one's external_id
    found = _insert_workers(workspace_id, "external_id", new)
    # A concurrent request may have taken one of the emails between our check and the insert:
    # those rows were skipped, so create them again without the email.
    retry = [
        Worker(workspace_id=workspace_id, external_id=w.external_id, display_name=w.display_name)
        for w in new
        if w.external_id not in found
    ]
    found.update(_insert_workers(workspace_id, "external_id", retry))
    return found
