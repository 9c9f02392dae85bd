"""Plan and workspace edits (admin, setplan, dashboard) take effect on the next request."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from billing.models import Plan
from billing.services import forget_workspace_limits


@receiver(post_save, sender=Plan)
@receiver(post_delete, sender=Plan)
def forget_limits_of_plan(sender, instance: Plan, **kwargs) -> None:
    ids = list(instance.workspaces.values_list("pk", flat=True)) if instance.pk else []
    if ids:
        forget_workspace_limits(*ids)


@receiver(post_save, sender="workspaces.Workspace")
@receiver(post_delete, sender="workspaces.Workspace")
def forget_limits_of_workspace(sender, instance, **kwargs) -> None:
    forget_workspace_limits(instance.pk)
