"""Bench fixtures that no management command makes: a dashboard user and a logged-in session.

Run as `python -m bench.setup_data CMD ...` under the same settings as the servers. The
workspace and sources come from the real management commands (bench/run.py); the `workspace`
and `source` commands here are the fallback while those commands do not exist yet, and print
the same last lines the commands do.
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
    ws = sub.add_parser("workspace")
    ws.add_argument("name")
    ws.add_argument("--plan", default="pro")
    ws.add_argument("--owner")
    ws.add_argument("--event-limit", type=int)
    src = sub.add_parser("source")
    src.add_argument("org_id")
    src.add_argument("name")
    src.add_argument("--allow", default="")
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
    elif args.cmd == "workspace":
        from workspaces.services import create_workspace

        owner = user_model.objects.get(username=args.owner) if args.owner else None
        workspace = create_workspace(
            args.name, plan_code=args.plan, owner=owner, event_limit=args.event_limit
        )
        print(workspace.public_id)
    elif args.cmd == "source":
        from sources.services import create_source
        from workspaces.models import Workspace

        workspace = Workspace.objects.get(public_id=args.org_id)
        allowed = [t for t in args.allow.split(",") if t]
        source, issued = create_source(workspace, args.name, allowed_event_types=allowed)
        print(source.public_id)
        print(issued.secret)
    return 0


if __name__ == "__main__":
    sys.exit(main())
