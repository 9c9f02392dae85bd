"""`manage.py createsource ORG_ID NAME [--slug S] [--allow T,T]` → app id, then the key, last."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from sources.services import SlugTaken, SourceLimitReached, create_source
from workspaces import audit
from workspaces.models import Workspace


class Command(BaseCommand):
    help = "Create a source with its first key; prints the app_… id, then the key alone last."

    def add_arguments(self, parser) -> None:
        parser.add_argument("org_id", help="The workspace's org_… id.")
        parser.add_argument("name")
        parser.add_argument("--slug", help="Default: made from the name.")
        parser.add_argument(
            "--allow", default="", help="Comma-separated eventTypes the developer API accepts."
        )

    def handle(self, *args, org_id: str, name: str, slug: str | None, allow: str,
               **options) -> None:
        name = name.strip()
        if not name:
            raise CommandError("NAME must not be empty")
        workspace = Workspace.objects.filter(public_id=org_id).first()
        if workspace is None:
            raise CommandError(f"unknown workspace {org_id!r}")
        try:
            source, issued = create_source(
                workspace, name, slug=slug, allowed_event_types=allow.split(","),
                actor=audit.COMMAND,
            )
        except (SlugTaken, SourceLimitReached) as error:
            raise CommandError(str(error)) from None
        allowed = ", ".join(source.allowed_event_types) or "none"
        self.stdout.write(
            f"Created source {source.name!r} (slug {source.slug}, allowed eventTypes: {allowed}) "
            f"in {workspace.public_id}. The key below is shown only once."
        )
        self.stdout.write(source.public_id)
        self.stdout.write(issued.secret)
