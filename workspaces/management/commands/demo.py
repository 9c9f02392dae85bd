"""`manage.py demo [--live]`: an idempotent demo — login, a Pro workspace, four sources, workers,
keys, and a week of history (workspaces/demo_history.py) the first time; `--live` then keeps a
few requests a minute flowing through the real ingest APIs until Ctrl-C.

Keys are stored only as digests, so to print a working key on every run the demo key is
derived from SECRET_KEY (HMAC) rather than drawn at random: the same key each run, recreated
when missing. Once someone revokes or lets it expire it is never brought back: a fresh random
key is issued and printed instead.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from sources.keys import _BASE62, KEY_PREFIX, KEY_RANDOM_LENGTH, digest_of, visible_prefix
from sources.models import Key, Source
from sources.services import issue_key, normalize_event_types
from workspaces import demo_history
from workspaces.models import Membership, Role, Worker, Workspace
from workspaces.services import create_workspace

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "ackly-demo-password"
DEMO_WORKSPACE = "Demo"
DEMO_SOURCES = [
    # The nightly backup cron (and the invoice export after it).
    ("Nightly jobs", "nightly-jobs", ["backup.finished", "job.finished", "deploy.shipped"]),
    # The CRM: its sync job on the ingest API, its people's work on the developer API.
    ("CRM Hub", "crm-hub", ["ticket.resolved", "call.logged"]),
    ("CI pipeline", "ci-pipeline", []),
    # An AI agent answering support tickets, on the developer API.
    ("Support agent", "support-agent",
     ["ticket.triaged", "reply.drafted", "ticket.resolved", "ticket.escalated"]),
]
DEMO_WORKERS = [
    ("Alex Chen", "crm-alex", "alex.chen@example.com"),
    ("Priya Natarajan", "crm-priya", "priya.natarajan@example.com"),
    ("Sam Okafor", "crm-sam", "sam.okafor@example.com"),
    demo_history.AGENT,  # last: the agent's timeline and card
]


def demo_secret(slug: str) -> str:
    """`ak_live_` + 40 base62 characters from HMAC-SHA256(SECRET_KEY, 'ackly-demo:' + slug)."""
    mac = hmac.new(settings.SECRET_KEY.encode(), f"ackly-demo:{slug}".encode(), hashlib.sha256)
    number = int.from_bytes(mac.digest(), "big")  # 256 bits; 40 base62 digits use ~238
    chars = []
    for _ in range(KEY_RANDOM_LENGTH):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return KEY_PREFIX + "".join(chars)


@dataclass(frozen=True)
class DemoSource:
    source: Source
    secret: str
    fresh: bool  # a random key had to replace a revoked or expired demo key


def demo_user():
    """The staff superuser `demo`, with the documented password (reset if it was changed)."""
    user, _ = get_user_model().objects.get_or_create(
        username=DEMO_USERNAME, defaults={"email": "demo@example.com"}
    )
    changed = []
    if not (user.is_staff and user.is_superuser and user.is_active):
        user.is_staff = user.is_superuser = user.is_active = True
        changed += ["is_staff", "is_superuser", "is_active"]
    if not user.check_password(DEMO_PASSWORD):
        user.set_password(DEMO_PASSWORD)
        changed.append("password")
    if changed:
        user.save(update_fields=changed)
    return user


def demo_workspace(user) -> Workspace:
    membership = (
        Membership.objects.select_related("workspace__plan")
        .filter(user=user, role=Role.OWNER, workspace__name=DEMO_WORKSPACE)
        .order_by("pk")
        .first()
    )
    if membership is not None:
        return membership.workspace
    return create_workspace(DEMO_WORKSPACE, "pro", owner=user)


def demo_source(workspace: Workspace, name: str, slug: str, allowed: list[str]) -> DemoSource:
    source, _ = Source.objects.get_or_create(
        workspace=workspace,
        slug=slug,
        defaults={"name": name, "allowed_event_types": normalize_event_types(allowed)},
    )
    secret = demo_secret(slug)
    key = Key.objects.filter(digest=digest_of(secret)).first()
    if key is None:
        Key.objects.create(source=source, prefix=visible_prefix(secret), digest=digest_of(secret))
        return DemoSource(source, secret, fresh=False)
    if key.source_id != source.pk:
        raise CommandError(f"the demo key of {slug!r} belongs to another source; delete that key")
    if key.status == "active":
        return DemoSource(source, secret, fresh=False)
    # The demo key was revoked or expired on purpose: never revive it.
    return DemoSource(source, issue_key(source).secret, fresh=True)


class Command(BaseCommand):
    help = "Create (or refresh) the demo user, workspace, sources and workers; prints the keys."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="Where the server will listen."
        )
        parser.add_argument(
            "--live", action="store_true",
            help="Then keep sending a few requests a minute to --base-url until Ctrl-C.",
        )
        parser.add_argument(
            "--interval", type=float, default=15.0,
            help="--live: seconds between requests, on average (default 15).",
        )
        parser.add_argument(
            "--count", type=int, default=0, help="--live: stop after this many requests (0: never)."
        )

    def handle(
        self, *args, base_url: str, live: bool, interval: float, count: int, **options
    ) -> None:
        base = base_url.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise CommandError(f"--base-url must start with http:// or https://, got {base_url!r}")
        if interval <= 0 or count < 0:
            raise CommandError("--interval must be positive and --count at least 0")
        seeded = None
        with transaction.atomic():
            user = demo_user()
            workspace = demo_workspace(user)
            sources = [demo_source(workspace, *spec) for spec in DEMO_SOURCES]
            workers = [
                Worker.objects.get_or_create(
                    workspace=workspace,
                    external_id=external_id,
                    defaults={"display_name": display_name, "email": email},
                )[0]
                for display_name, external_id, email in DEMO_WORKERS
            ]
            if not demo_history.has_history(workspace):
                by_slug = {item.source.slug: item.source for item in sources}
                seeded = demo_history.seed_history(workspace, by_slug, workers)
        out = self.stdout.write
        out("")
        out(f"Ackly demo is ready: workspace {workspace.name} ({workspace.public_id}) "
            f"on the {workspace.plan.name} plan.")
        out(f"  Dashboard  {base}/")
        out(f"  Admin      {base}/admin/")
        out(f"  Docs       {base}/docs/")
        out(f"  Login      {DEMO_USERNAME} / {DEMO_PASSWORD}")
        out("")
        first = sources[0]
        out("Send an event:")
        out(f"  curl -sS -X POST {base}/api/ingest -H 'Authorization: Bearer {first.secret}' \\")
        out("    -H 'Content-Type: application/json' \\")
        out("    -d '{\"status\":\"success\",\"message\":\"Hello from the demo\"}'")
        out("")
        out("Keys (one per source):")
        for item in sources:
            note = "  (new: the demo key was revoked or expired)" if item.fresh else ""
            out(f"  {item.source.name} ({item.source.slug}, {item.source.public_id}){note}")
            out(f"    {item.secret}")
        if seeded is not None:
            out("")
            out(f"History: {seeded.line()}.")
        if live:
            out("")
            out(f"Sending a request about every {interval:g} s to {base} (Ctrl-C to stop):")
            secrets = {item.source.slug: item.secret for item in sources}
            try:
                sent = demo_history.trickle(base, secrets, interval, count, out)
            except KeyboardInterrupt:
                out("Stopped.")
            else:
                out(f"Sent {sent} requests.")
