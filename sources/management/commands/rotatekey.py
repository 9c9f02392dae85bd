"""`manage.py rotatekey SOURCE_ID [--grace-hours N]` → the new key, alone on the last line."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from sources.management.commands._common import grace_period, source_by_id
from sources.services import rotate_key
from workspaces import audit


class Command(BaseCommand):
    help = (
        "Issue a new key for a source; its other keys stop now, or after --grace-hours. "
        "Prints the new key alone on the last line (shown once)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("source_id", help="The source's app_… id.")
        parser.add_argument("--grace-hours", help="Keep the old keys working this many hours.")

    def handle(self, *args, source_id: str, grace_hours: str | None, **options) -> None:
        grace = grace_period(grace_hours)
        source = source_by_id(source_id)
        issued = rotate_key(source, grace=grace, actor=audit.COMMAND)
        if grace:
            ending = f"the previous keys stop working in {grace_hours} hours"
        else:
            ending = "the previous keys stopped working now"
        self.stdout.write(
            f"Rotated {source.public_id} ({source.name}): new key {issued.key.public_id}; "
            f"{ending}. It is shown only once."
        )
        self.stdout.write(issued.secret)
