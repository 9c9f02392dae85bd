"""Bench fixtures that no management command makes: a dashboard user and a logged-in session.

Run as `python -m bench.setup_data user USERNAME` under the same settings as the servers; it
prints the session key. The workspace and source come from the real management commands.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ackly.settings")
    import django

    django.setup()
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore

    parser = argparse.ArgumentParser(prog="bench.setup_data")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("user").add_argument("username")
    args = parser.parse_args(argv)

    user_model = get_user_model()
    if args.cmd == "user":
        user, _ = user_model.objects.get_or_create(
            username=args.username, defaults={"email": f"{args.username}@bench.invalid"}
        )
        user.set_unusable_password()
        user.save()
        # A logged-in session exactly as django.contrib.auth.login() writes it; membership of
        # the workspace (createworkspace --owner) is checked when a socket connects, not here.
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        print(store.session_key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
