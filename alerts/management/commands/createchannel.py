"""`manage.py createchannel ORG_ID (--webhook URL | --slack URL | --email ADDR | --apprise URL)`.

Prints the chn_… id on the last line; for a webhook the id, then its signing secret alone last.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from alerts.management.commands._common import validation_message, workspace_by_id
from alerts.services import create_channel
from workspaces import audit


class Command(BaseCommand):
    help = "Create a notification channel; prints its chn_… id (a webhook's secret last)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("org_id", help="The workspace's org_… id.")
        kind = parser.add_mutually_exclusive_group(required=True)
        kind.add_argument("--webhook", metavar="URL", help="POST a signed JSON body to this URL.")
        kind.add_argument("--slack", metavar="URL", help="A Slack-compatible incoming webhook.")
        kind.add_argument("--email", metavar="ADDRESS", help="Send email to this address.")
        kind.add_argument("--apprise", metavar="URL", help="Any Apprise URL (json://, tgram://, …).")
        parser.add_argument("--name", default="", help="Default: the kind's name.")

    def handle(self, *args, org_id: str, name: str, **options) -> None:
        workspace = workspace_by_id(org_id)
        kind, target = next(
            (kind, options[kind]) for kind in ("webhook", "slack", "email", "apprise")
            if options.get(kind) is not None
        )
        try:
            channel, secret = create_channel(
                workspace, kind=kind, target=target, name=name, actor=audit.COMMAND
            )
        except ValidationError as error:
            raise CommandError(validation_message(error, f"--{kind}")) from None
        self.stdout.write(
            f"Created {kind} channel {channel.name!r} in {workspace.public_id}."
            + (" Its signing secret (last line) is shown only once." if secret else "")
        )
        self.stdout.write(channel.public_id)
        if secret:
            self.stdout.write(secret)
