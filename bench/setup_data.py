"""Fixtures that no management command makes: a dashboard user and a logged-in session.

Run as `python -m bench.setup_data user USERNAME` under the same settings as the servers; it
prints the session key. The workspace and source come from the real management commands.
`logged_in_session` is also what the server tests' seed scripts use (tests/reliability/).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module


def logged_in_session(user) -> str:
    """A session exactly as django.contrib.auth.login() writes it; its key (the cookie value).

    Membership of a workspace is checked when a page or socket uses it, not here. Needs Django
    set up (a seed script run by `manage.py shell -c`, or `main` below).
    """
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store.session_key


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ackly.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    parser = argparse.ArgumentParser(prog="bench.setup_data")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("user").add_argument("username")
    args = parser.parse_args(argv)

    if args.cmd == "user":
        user, _ = get_user_model().objects.get_or_create(
            username=args.username, defaults={"email": f"{args.username}@bench.invalid"}
        )
        user.set_unusable_password()
        user.save()
        print(logged_in_session(user))
    return 0


if __name__ == "__main__":
    sys.exit(main())
