"""`manage.py createrule ORG_ID --channel CHN_ID --on KIND [narrowing and limits]` → rul_… id last."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ackly.commands import whole_number
from alerts.management.commands._common import validation_message, workspace_by_id
from alerts.models import Channel, RuleKind
from alerts.services import create_rule
from sources.models import Source
from workspaces import audit


class Command(BaseCommand):
    help = "Create an alert rule; prints its rul_… id on the last line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("org_id", help="The workspace's org_… id.")
        parser.add_argument("--channel", action="append", default=[], metavar="CHN_ID",
                            help="A channel to notify (repeat for several).")
        parser.add_argument("--on", required=True, choices=RuleKind.values, dest="kind")
        parser.add_argument("--name", default="")
        parser.add_argument("--source", metavar="APP_ID", help="Only this source's events.")
        parser.add_argument("--event-type", default="",
                            help="Only this eventType (ending in '.': as a prefix).")
        parser.add_argument("--category", default="", help="silence/slow: only this v1 category.")
        parser.add_argument("--partial", action="store_true", help="failure: partial fires too.")
        parser.add_argument("--minutes", help="silence: expected every N minutes; "
                                              "rejections: the window M.")
        parser.add_argument("--schedule", default="", help="silence: a cron expression.")
        parser.add_argument("--tz", default="UTC", help="silence: the schedule's time zone.")
        parser.add_argument("--grace", help="silence: grace minutes after the expected time.")
        parser.add_argument("--threshold", help="slow: ms; rejections: count N; quota: percent.")
        parser.add_argument("--code", default="", help="rejections: only this error code.")
        parser.add_argument("--reminder", help="Remind every N minutes while firing.")

    def handle(self, *args, org_id: str, kind: str, channel: list[str], **options) -> None:
        workspace = workspace_by_id(org_id)
        channels = []
        for channel_id in channel:
            found = Channel.objects.filter(workspace=workspace, public_id=channel_id).first()
            if found is None:
                raise CommandError(f"no channel {channel_id!r} in {workspace.public_id}")
            channels.append(found)
        if not channels:
            raise CommandError("give at least one --channel CHN_ID")
        source = None
        if options["source"]:
            source = Source.objects.filter(workspace=workspace, public_id=options["source"]).first()
            if source is None:
                raise CommandError(f"no source {options['source']!r} in {workspace.public_id}")
        minutes = whole_number(options["minutes"], "--minutes", minimum=0)
        fields = {
            "name": options["name"],
            "source": source,
            "event_type": options["event_type"].strip(),
            "category": options["category"].strip(),
            "include_partial": options["partial"],
            "schedule": options["schedule"].strip(),
            "tz": options["tz"].strip(),
            "threshold": whole_number(options["threshold"], "--threshold", minimum=0),
            "code": options["code"].strip(),
            "reminder_minutes": whole_number(options["reminder"], "--reminder", minimum=0),
        }
        grace = whole_number(options["grace"], "--grace", minimum=0)
        if grace is not None:
            fields["grace_minutes"] = grace
        if kind == RuleKind.SILENCE:
            fields["every_minutes"] = minutes
        elif kind == RuleKind.REJECTIONS:
            fields["window_minutes"] = minutes
        elif minutes is not None:
            raise CommandError("--minutes applies to silence and rejections rules only")
        try:
            rule = create_rule(workspace, kind=kind, channels=channels, actor=audit.COMMAND,
                               **fields)
        except ValidationError as error:
            raise CommandError(validation_message(error)) from None
        self.stdout.write(f"Created {kind} rule {rule.name!r} in {workspace.public_id}.")
        self.stdout.write(rule.public_id)
