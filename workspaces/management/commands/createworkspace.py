"""`manage.py createworkspace NAME [--plan P] [--owner USER] [--event-limit N]` → org id last."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ackly.commands import whole_number
from billing.services import UnknownPlan, get_plan
from workspaces import audit
from workspaces.services import UnknownUser, create_workspace, get_user


class Command(BaseCommand):
    help = "Create a workspace; prints its org_… id on the last line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--plan", default="free", help="Plan code (default: free).")
        parser.add_argument("--owner", help="Username of the owner (an existing user).")
        parser.add_argument(
            "--event-limit", help="Per-workspace override of the plan's monthly event limit."
        )

    def handle(self, *args, name: str, plan: str, owner: str | None, event_limit: str | None,
               **options) -> None:
        name = name.strip()
        if not name:
            raise CommandError("NAME must not be empty")
        limit = whole_number(event_limit, "--event-limit", minimum=1)
        # Every check happens before the first write, so a bad argument changes nothing.
        try:
            get_plan(plan)
            user = get_user(owner) if owner else None
        except (UnknownPlan, UnknownUser) as error:
            raise CommandError(str(error)) from None
        workspace = create_workspace(
            name, plan, owner=user, event_limit=limit, actor=audit.COMMAND
        )
        details = f"plan {workspace.plan.code}"
        if limit is not None:
            details += f", event limit {limit}"
        if user is not None:
            details += f", owner {user.username}"
        self.stdout.write(f"Created workspace {workspace.name!r} ({details}).")
        self.stdout.write(workspace.public_id)
