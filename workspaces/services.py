"""Workspaces and their members."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, NamedTuple, Protocol, TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from billing.services import get_plan
from workspaces import audit
from workspaces.models import Invitation, Membership, Role, Worker, Workspace
from workspaces.roles import Permission, allows, grantable_roles

logger = logging.getLogger(__name__)


class UnknownUser(ValueError):
    pass


@transaction.atomic
def create_workspace(
    name: str,
    plan_code: str = "free",
    owner=None,
    event_limit: int | None = None,
    actor=None,
) -> Workspace:
    """A workspace on a plan, with its owner as the first member; `actor` defaults to the owner."""
    workspace = Workspace.objects.create(
        name=name, plan=get_plan(plan_code), event_limit_override=event_limit
    )
    details: dict = {"name": name, "plan": plan_code}
    if owner is not None:
        Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
        details["owner"] = owner.get_username()
    audit.record(workspace, "workspace.created", workspace, actor=actor or owner, details=details)
    return workspace


# --- Members, invitations and roles (docs/teams.md) ----------------------------------------
# Every change locks the workspace's row first, then re-reads the memberships it is about, so
# two changes at once (two owners demoting each other, say) are decided one after the other and
# a workspace always keeps an owner.


class MemberChangeRefused(Exception):
    """A change the roles table or the last-owner rule forbids; the message is for the page."""


class InvitationUnusable(Exception):
    """An invitation link that cannot be used: the message says why (expired, used, revoked)."""

    def __init__(self, title: str, message: str) -> None:
        super().__init__(message)
        self.title = title
        self.message = message


LAST_OWNER = (
    "A workspace needs an owner: make another member an owner first, or delete the workspace."
)


def invitation_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _locked(workspace: Workspace | int) -> Workspace:
    pk = workspace if isinstance(workspace, int) else workspace.pk
    return Workspace.objects.select_for_update().get(pk=pk)


def _current(membership: Membership) -> Membership:
    """The membership as it is now (under the workspace's lock), or refused if it is gone."""
    found = Membership.objects.select_related("user").filter(pk=membership.pk).first()
    if found is None:
        raise MemberChangeRefused("That person is no longer a member of this workspace.")
    return found


def _require(actor: Membership, permission: str) -> None:
    if not allows(actor.role, permission):
        raise MemberChangeRefused("Your role in this workspace does not allow this.")


def _may_grant(actor: Membership, role: str) -> None:
    if role not in grantable_roles(actor.role):
        if role == Role.OWNER:
            raise MemberChangeRefused("Only an owner can make or remove owners.")
        raise MemberChangeRefused("Your role in this workspace does not allow this.")


def refuse_last_owner_loss(losing: Iterable[Membership], *, lock: bool = False) -> None:
    """The last-owner rule: MemberChangeRefused(LAST_OWNER) when `losing` holds every owner of
    a workspace.

    `losing` are the memberships a change removes or gives another role. Every such change
    goes through here: the members page's services below and the Django admin. Call it inside
    the change's transaction with the workspace locked, or with `lock=True`: their workspaces
    are locked and `losing` re-read as it is now.
    """
    if lock:
        losing = list(losing)
        for workspace_id in sorted({m.workspace_id for m in losing}):
            _locked(workspace_id)
        losing = Membership.objects.filter(pk__in=[m.pk for m in losing])
    owners = [m for m in losing if m.role == Role.OWNER]
    for workspace_id in sorted({m.workspace_id for m in owners}):
        others = (
            Membership.objects.owners()
            .filter(workspace_id=workspace_id)
            .exclude(pk__in=[m.pk for m in owners])
        )
        if not others.exists():
            raise MemberChangeRefused(LAST_OWNER)


def _member_target(membership: Membership) -> dict[str, str]:
    return {"target_type": "user", "target_id": membership.user.get_username()}


@transaction.atomic
def invite_member(actor: Membership, email: str, role: str) -> tuple[Invitation, str]:
    """A new invitation and its link's token (returned once, to be emailed; only its digest is
    kept). An earlier pending invitation to the same address stops working."""
    workspace = _locked(actor.workspace_id)
    actor = _current(actor)
    _require(actor, Permission.MANAGE_MEMBERS)
    _may_grant(actor, role)
    email = email.strip().lower()
    if Membership.objects.filter(workspace=workspace, user__email__iexact=email).exists():
        raise MemberChangeRefused(f"{email} is already a member of this workspace.")
    now = timezone.now()
    Invitation.objects.pending(now).filter(workspace=workspace, email=email).update(revoked_at=now)
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        workspace=workspace,
        email=email,
        role=role,
        digest=invitation_digest(token),
        invited_by=actor.user,
        created_at=now,
        expires_at=now + timedelta(days=settings.INVITATION_MAX_AGE_DAYS),
    )
    audit.record(workspace, "member.invited", invitation, actor=actor.user,
                 details={"email": email, "role": role})
    return invitation, token


def find_invitation(token: str) -> Invitation | None:
    """The invitation a link's token opens (any state), or None for a token never issued."""
    return (
        Invitation.objects.select_related("workspace", "invited_by")
        .filter(digest=invitation_digest(token))
        .first()
    )


def check_usable(invitation: Invitation, now=None) -> None:
    """Raises InvitationUnusable when the invitation was used, revoked or has expired."""
    if invitation.accepted_at is not None:
        raise InvitationUnusable(
            "This invitation has been used",
            "It was accepted already. Log in to open the workspace, or ask for a new invitation.",
        )
    if invitation.revoked_at is not None:
        raise InvitationUnusable(
            "This invitation was withdrawn",
            "An owner or admin of the workspace revoked it, or sent a newer one. Ask them for a "
            "new invitation.",
        )
    if invitation.expires_at <= (now or timezone.now()):
        raise InvitationUnusable(
            "This invitation has expired",
            f"Invitations work for {settings.INVITATION_MAX_AGE_DAYS} days. Ask an owner or admin "
            "of the workspace to invite you again.",
        )


@transaction.atomic
def accept_invitation(invitation: Invitation, user) -> Membership:
    """The user joins with the invitation's role (a member already keeps their role)."""
    _locked(invitation.workspace_id)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    check_usable(invitation)
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    existing = Membership.objects.filter(workspace_id=invitation.workspace_id, user=user).first()
    if existing is not None:
        return existing
    membership = Membership.objects.create(
        workspace_id=invitation.workspace_id, user=user, role=invitation.role
    )
    audit.record(
        invitation.workspace_id, "member.joined", actor=user, **_member_target(membership),
        details={"role": invitation.role, "invitation": invitation.public_id,
                 "email": invitation.email},
    )
    return membership


@transaction.atomic
def revoke_invitation(actor: Membership, invitation_id: str) -> Invitation:
    _locked(actor.workspace_id)
    actor = _current(actor)
    _require(actor, Permission.MANAGE_MEMBERS)
    invitation = (
        Invitation.objects.pending()
        .filter(workspace_id=actor.workspace_id, public_id=invitation_id)
        .first()
    )
    if invitation is None:
        raise MemberChangeRefused("That invitation is no longer pending.")
    _may_grant(actor, invitation.role)
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit.record(actor.workspace_id, "invitation.revoked", invitation, actor=actor.user,
                 details={"email": invitation.email, "role": invitation.role})
    return invitation


@transaction.atomic
def change_role(actor: Membership, target: Membership, role: str) -> Membership:
    """Give `target` another role: admins up to admin, owners any; never the last owner's away."""
    _locked(actor.workspace_id)
    actor, target = _current(actor), _current(target)
    _require(actor, Permission.MANAGE_MEMBERS)
    if role not in Role.values:
        raise MemberChangeRefused("Choose one of the roles listed.")
    _may_grant(actor, target.role)
    _may_grant(actor, role)
    if target.role == role:
        return target
    refuse_last_owner_loss([target])
    previous = target.role
    target.role = role
    target.save(update_fields=["role"])
    audit.record(actor.workspace_id, "member.role_changed", actor=actor.user,
                 **_member_target(target), details={"from": previous, "to": role})
    return target


@transaction.atomic
def remove_member(actor: Membership, target: Membership) -> None:
    """Remove `target` (their sockets of this workspace close: workspaces/signals.py)."""
    _locked(actor.workspace_id)
    actor, target = _current(actor), _current(target)
    if actor.pk == target.pk:
        raise MemberChangeRefused("To leave the workspace, use Leave.")
    _require(actor, Permission.MANAGE_MEMBERS)
    _may_grant(actor, target.role)
    refuse_last_owner_loss([target])
    target.delete()
    audit.record(actor.workspace_id, "member.removed", actor=actor.user,
                 **_member_target(target), details={"role": target.role})


@transaction.atomic
def leave_workspace(membership: Membership) -> None:
    """The member leaves; the last owner cannot."""
    _locked(membership.workspace_id)
    membership = _current(membership)
    refuse_last_owner_loss([membership])
    membership.delete()
    audit.record(membership.workspace_id, "member.left", actor=membership.user,
                 **_member_target(membership), details={"role": membership.role})


@transaction.atomic
def delete_workspace(actor: Membership, confirmation: str) -> None:
    """Delete the workspace and everything in it (its audit log too); owners only, by name."""
    workspace = _locked(actor.workspace_id)
    actor = _current(actor)
    _require(actor, Permission.DELETE_WORKSPACE)
    if confirmation.strip() != workspace.name.strip():
        raise MemberChangeRefused("Type the workspace's name exactly to delete it.")
    logger.info("Workspace %s deleted by %s", workspace.public_id, actor.user.get_username())
    workspace.delete()


def record_membership_saved(membership: Membership, previous_role: str | None, actor) -> None:
    """Audit a membership the Django admin made or changed (previous_role None: added)."""
    target = _member_target(membership)
    if previous_role is None:
        audit.record(membership.workspace_id, "member.added", actor=actor, **target,
                     details={"role": membership.role})
    elif previous_role != membership.role:
        audit.record(membership.workspace_id, "member.role_changed", actor=actor, **target,
                     details={"from": previous_role, "to": membership.role})


def record_membership_deleted(membership: Membership, actor) -> None:
    audit.record(membership.workspace_id, "member.removed", actor=actor,
                 **_member_target(membership), details={"role": membership.role})


def record_invitation_deleted(invitation: Invitation, actor) -> None:
    """Audit an invitation the Django admin deleted (its link stops working with it)."""
    audit.record(invitation.workspace_id, "invitation.deleted", invitation, actor=actor,
                 details={"email": invitation.email, "role": invitation.role})


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
WORKER_FIELDS = ("id", "public_id", "display_name", "external_id", "email")
# The column each kind of actor names its worker by (emails are stored lower-cased).
_ACTOR_COLUMNS = {"workerId": "public_id", "externalId": "external_id", "email": "email"}


class FoundWorker(Protocol):
    """What the look-up reads of a worker: a Worker, or a row of WORKER_FIELDS (the fast lane)."""

    @property
    def public_id(self) -> str: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...


class WorkerRow(NamedTuple):
    """A row of `find_workers_statement`, read without the ORM (the fast lane)."""

    id: int
    public_id: str
    display_name: str
    external_id: str | None
    email: str | None


W = TypeVar("W", bound=FoundWorker)


def find_workers_statement(workspace_id: int, keys: Iterable[ActorKey]) -> tuple[str, list[Any]]:
    """The one statement that reads the existing workers of a workspace that actors name, and
    its parameters: `keys` are distinct (kind, value) pairs, an email lower-cased.

    Standard SQL (an IN list per kind), so both executors run this very text: resolve_actors
    through Django's cursor on either database, the fast lane through psycopg's. Filtered by
    workspace: a worker id of another tenant is simply not found."""
    values: dict[str, list[str]] = {kind: [] for kind in _ACTOR_COLUMNS}
    for kind, value in keys:
        values[kind].append(value)
    clauses = [
        f"{_ACTOR_COLUMNS[kind]} IN ({', '.join(['%s'] * len(named))})"
        for kind, named in values.items() if named
    ] or ["1 = 0"]
    sql = (
        f"SELECT {', '.join(WORKER_FIELDS)} FROM {Worker._meta.db_table} "
        f"WHERE workspace_id = %s AND ({' OR '.join(clauses)})"
    )
    return sql, [workspace_id, *(value for named in values.values() for value in named)]


def index_workers(workers: Iterable[W]) -> dict[ActorKey, W]:
    """The workers the statement read, by every (kind, value) that names each of them."""
    found: dict[ActorKey, W] = {}
    for worker in workers:
        found[("workerId", worker.public_id)] = worker
        if worker.external_id is not None:
            found[("externalId", worker.external_id)] = worker
        if worker.email is not None:
            found[("email", worker.email)] = worker
    return found


def _workers_of(workspace_id: int):
    return Worker.objects.filter(workspace_id=workspace_id).only(*WORKER_FIELDS)


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
    """The worker of each distinct (kind, value) actor: one query finds those that exist
    (`find_workers_statement`, the fast lane's too), one pair per kind creates the rest.

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

    keys = [
        *(("workerId", v) for v in worker_ids), *(("externalId", v) for v in external_ids),
        *(("email", v) for v in emails),
    ]
    if not keys:
        return {}
    found = index_workers(Worker.objects.raw(*find_workers_statement(workspace_id, keys)))
    resolved: dict[ActorKey, Worker | None] = {
        ("workerId", value): found.get(("workerId", value)) for value in worker_ids
    }

    missing = [value for value in external_ids if ("externalId", value) not in found]
    if missing:
        created = _create_by_external_id(workspace_id, missing, external_ids, create)
        found.update((("externalId", value), worker) for value, worker in created.items())
    resolved.update((("externalId", value), found[("externalId", value)]) for value in external_ids)

    missing_emails = [
        Worker(workspace_id=workspace_id, email=e, display_name=_display_name(None, e))
        for e in emails
        if ("email", e) not in found
    ]
    if missing_emails:
        if create:
            created = _insert_workers(workspace_id, "email", missing_emails)
        else:
            created = {w.email: w for w in missing_emails if w.email is not None}
        found.update((("email", value), worker) for value, worker in created.items())
    resolved.update((("email", value), found[("email", value)]) for value in emails)
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
