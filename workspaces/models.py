from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.utils import timezone

from ackly.ids import new_public_id
from workspaces.roles import Permission, Role, allows

__all__ = ["AuditEntry", "Invitation", "Membership", "Role", "Worker", "Workspace"]

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def new_workspace_id() -> str:
    return new_public_id("org")


def new_worker_id() -> str:
    return new_public_id("wrk")


def new_invitation_id() -> str:
    return new_public_id("inv")


class Workspace(models.Model):
    """The tenant (the v1 API's organization)."""

    public_id = models.CharField(max_length=40, unique=True, default=new_workspace_id, editable=False)
    name = models.CharField(max_length=200)
    plan = models.ForeignKey("billing.Plan", on_delete=models.PROTECT, related_name="workspaces")
    billing_anchor = models.DateTimeField(default=timezone.now)
    event_limit_override = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Monthly event limit for a custom contract; empty: the plan's."
    )
    members: models.ManyToManyField[User, Membership] = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="workspaces"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    @property
    def monthly_event_limit(self) -> int:
        if self.event_limit_override is not None:
            return self.event_limit_override
        return self.plan.monthly_event_limit


class MembershipQuerySet(models.QuerySet):
    def managers(self) -> MembershipQuerySet:
        return self.filter(role__in=[Role.OWNER, Role.ADMIN])

    def owners(self) -> MembershipQuerySet:
        return self.filter(role=Role.OWNER)


class Membership(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user"], name="membership_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace.name} ({self.role})"

    def can(self, permission: str) -> bool:
        """Whether this member's role allows `permission` (workspaces/roles.py's table)."""
        return allows(self.role, permission)

    @property
    def can_manage(self) -> bool:
        """Sources, keys, alert rules and channels: owners and admins."""
        return self.can(Permission.MANAGE_SOURCES)


class InvitationQuerySet(models.QuerySet):
    def pending(self, now=None) -> InvitationQuerySet:
        """Neither accepted nor revoked, and not expired."""
        return self.filter(
            accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now or timezone.now()
        )


class Invitation(models.Model):
    """An emailed invitation to join a workspace with a role; its link's token is stored hashed."""

    public_id = models.CharField(
        max_length=40, unique=True, default=new_invitation_id, editable=False
    )
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=254)  # stored lower-cased
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    # SHA-256 of the link's token: the link is looked up by it; the token itself is not kept.
    digest = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        indexes = [
            # The members page: a workspace's invitations, newest first.
            models.Index(fields=["workspace", "-created_at"], name="invitation_workspace_created"),
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.workspace.name} ({self.role})"

    def save(self, *args, **kwargs) -> None:
        self.email = self.email.lower()
        super().save(*args, **kwargs)


class WorkerQuerySet(models.QuerySet):
    def for_workspace(self, workspace: Workspace | int) -> WorkerQuerySet:
        return self.filter(workspace=workspace)


class Worker(models.Model):
    """A person or agent that v1 events and snapshots are about."""

    public_id = models.CharField(max_length=40, unique=True, default=new_worker_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="workers")
    display_name = models.CharField(max_length=200)
    external_id = models.CharField(max_length=255, null=True, blank=True)
    # Stored lower-cased, so look-ups and the unique constraint are case-insensitive.
    email = models.EmailField(max_length=254, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["display_name"]
        constraints = [
            # Actor resolution by externalId; also the workers page's look-up.
            models.UniqueConstraint(
                fields=["workspace", "external_id"],
                condition=models.Q(external_id__isnull=False),
                name="worker_unique_external_id",
            ),
            # Actor resolution by email (always stored lower-cased).
            models.UniqueConstraint(
                fields=["workspace", "email"],
                condition=models.Q(email__isnull=False),
                name="worker_unique_email",
            ),
            # Makes workspace_id a key column for PostgreSQL's row locks: the timeline's
            # reference check (ingest migration 0003) locks a worker FOR KEY SHARE, and only
            # then does moving it to another workspace wait for the writer (as a source's
            # move does, through source_unique_slug).
            models.UniqueConstraint(fields=["workspace", "id"], name="worker_workspace_key"),
        ]

    def __str__(self) -> str:
        return self.display_name

    def save(self, *args, **kwargs) -> None:
        if self.email:
            self.email = self.email.lower()
        super().save(*args, **kwargs)


class AuditEntryQuerySet(models.QuerySet):
    def for_workspace(self, workspace: Workspace | int) -> AuditEntryQuerySet:
        return self.filter(workspace=workspace)

    def newest_first(self) -> AuditEntryQuerySet:
        return self.order_by("-at", "-id")


class AuditEntry(models.Model):
    """One change to a workspace: who, what, to which thing, when. Written by audit.record()."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="audit_entries")
    # Null for a management command, or once the user is deleted (the label stays).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_label = models.CharField(max_length=200)
    action = models.CharField(max_length=60)  # "<target type>.<verb>": "key.revoked"
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=254, blank=True)  # a public id, or a member's name
    details = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=timezone.now, editable=False)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "audit entries"
        indexes = [
            # The audit log page (a workspace's entries, newest first) and purge_expired's cut-off.
            models.Index(fields=["workspace", "-at"], name="audit_workspace_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.target_id}"

    def detail_items(self) -> list[tuple[str, str]]:
        """The details as the audit page shows them: lists joined, nothing as a dash."""
        return [
            (key, ", ".join(map(str, value)) if isinstance(value, list)
             else "—" if value is None else str(value))
            for key, value in (self.details or {}).items()
        ]
