"""`manage.py setplan ORG_ID PLAN`: move a workspace to another plan (effective next request)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing.services import UnknownPlan, get_plan, set_plan
from workspaces import audit
from workspaces.models import Workspace


class Command(BaseCommand):
    help = "Put a workspace on a plan; takes effect on its next request."

    def add_arguments(self, parser) -> None:
        parser.add_argument("org_id", help="The workspace's org_… id.")
        parser.add_argument("plan", help="Plan code: free, starter, pro, or one made in the admin.")

    def handle(self, *args, org_id: str, plan: str, **options) -> None:
        workspace = Workspace.objects.filter(public_id=org_id).first()
        if workspace is None:
            raise CommandError(f"unknown workspace {org_id!r}")
        try:
            get_plan(plan)
        except UnknownPlan as error:
            raise CommandError(str(error)) from None
        previous = workspace.plan.name
        set_plan(workspace, plan, actor=audit.COMMAND)
        self.stdout.write(
            f"{workspace.public_id} ({workspace.name}): {previous} -> {workspace.plan.name}"
        )
