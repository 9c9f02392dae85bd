"""`manage.py revokekey KEY_ID_OR_KEY`: the key stops working on the very next request."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from sources.keys import digest_of, is_well_formed
from sources.models import Key
from sources.services import revoke_key
from workspaces import audit


class Command(BaseCommand):
    help = "Revoke a key, given its key_… id or the secret itself."

    def add_arguments(self, parser) -> None:
        parser.add_argument("key", help="The key_… id, or the ak_live_… secret.")

    def handle(self, *args, key: str, **options) -> None:
        given = key.strip()
        keys = Key.objects.select_related("source")
        if given.startswith("key_"):
            found = keys.filter(public_id=given).first()
        elif is_well_formed(given):
            found = keys.filter(digest=digest_of(given)).first()
        else:
            raise CommandError("expected a key_… id or an ak_live_… key")
        if found is None:
            # Never echo a secret back: name it by its visible prefix only.
            shown = given if given.startswith("key_") else given[:12] + "…"
            raise CommandError(f"unknown key {shown!r}")
        already = found.revoked_at is not None
        revoke_key(found, actor=audit.COMMAND)
        verb = "was already revoked" if already else "revoked"
        self.stdout.write(
            f"Key {found.public_id} ({found.prefix}…) of {found.source.public_id} {verb} "
            f"at {found.revoked_at.isoformat()}."
        )
        self.stdout.write(found.public_id)
