"""`manage.py setplan ORG_ID PLAN [--yes]`: move a workspace to another plan (effective next request).

A plan with a shorter retention is refused without --yes, saying what the next purge deletes.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing.downgrade import retention_cut
from billing.services import UnknownPlan, get_plan, set_plan
from workspaces import audit
from workspaces.models import Workspace


class Command(BaseCommand):
    help = "Put a workspace on a plan; takes effect on its next request."

    def add_arguments(self, parser) -> None:
        parser.add_argument("org_id", help="The workspace's org_… id.")
        parser.add_argument("plan", help="Plan code: free, starter, pro, or one made in the admin.")
        parser.add_argument(
            "--yes", action="store_true",
            help="Confirm a move to a shorter retention (history past it is purged).",
        )

    def handle(self, *args, org_id: str, plan: str, **options) -> None:
        workspace = Workspace.objects.filter(public_id=org_id).first()
        if workspace is None:
            raise CommandError(f"unknown workspace {org_id!r}")
        try:
            target = get_plan(plan)
        except UnknownPlan as error:
            raise CommandError(str(error)) from None
        cut = retention_cut(workspace, target)
        if cut is not None and not options["yes"]:
            raise CommandError(f"{cut.summary} Run again with --yes to confirm.")
        previous = workspace.plan.name
        set_plan(workspace, plan, actor=audit.COMMAND)
        self.stdout.write(
            f"{workspace.public_id} ({workspace.name}): {previous} -> {workspace.plan.name}"
        )
