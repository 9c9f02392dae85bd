"""Account changes that end live sockets: each tells the user's group (workspaces/consumers.py).

* Logout (`user_logged_out`, also the absolute session timeout's logout): the sockets of that
  session close with 4401.
* A password change or deactivation (`post_save` on the user, comparing the password hash and
  `is_active` with the values loaded): every socket of the user checks its session again.
  A changed password leaves only the session that changed it valid (Django moves it to a new
  key); deactivation leaves none.
* A membership's deletion (in the admin, or by its workspace's or user's deletion, which
  cascades through `post_delete`): the user's sockets of that workspace check again (4403).
* A user's deletion: every socket of the user closes with 4401.

Each notice goes out when the transaction commits, so a rolled-back change closes nothing.
A queryset `update()` sends no signal: the sockets' periodic check (RECHECK_SECONDS) covers it.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_init, post_save
from django.dispatch import receiver

from ingest import broadcast
from workspaces.consumers import ACCOUNT_TYPE, session_tag, user_group
from workspaces.models import Membership

logger = logging.getLogger(__name__)

# The password hash and is_active as loaded (or last saved), to see what a save changed.
_SEEN = "_ackly_seen_credentials"


def tell_user(user_pk: int, notice: dict[str, Any]) -> None:
    """Send one account notice to every socket of the user, in every process; never raises."""
    try:
        broadcast.send_to_group(user_group(user_pk), {"type": ACCOUNT_TYPE, **notice})
    except Exception:  # noqa: BLE001 - the sockets' periodic check ends them anyway
        logger.warning("Could not tell user %s's live sockets to %s", user_pk, notice.get("do"),
                       exc_info=True)


def tell_user_on_commit(user_pk: int, notice: dict[str, Any]) -> None:
    transaction.on_commit(lambda: tell_user(user_pk, notice))


@receiver(user_logged_out, dispatch_uid="ackly.sockets.logged_out")
def end_the_sessions_sockets(sender, request, user, **kwargs) -> None:
    # Sent before the session is flushed: its key is still there.
    key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and key:
        tell_user_on_commit(user.pk, {"do": "end", "session": session_tag(key)})


def _credentials(instance) -> tuple[Any, Any]:
    # From __dict__: reading a deferred field here would cost a query per loaded user.
    return instance.__dict__.get("password"), instance.__dict__.get("is_active")


def remember_credentials(sender, instance, **kwargs) -> None:
    setattr(instance, _SEEN, _credentials(instance))


def recheck_on_credential_change(sender, instance, created: bool, **kwargs) -> None:
    seen = getattr(instance, _SEEN, None)
    now = _credentials(instance)
    setattr(instance, _SEEN, now)
    if created or seen is None or seen == now:
        return
    tell_user_on_commit(instance.pk, {"do": "recheck"})


def end_all_sockets(sender, instance, **kwargs) -> None:
    tell_user_on_commit(instance.pk, {"do": "end"})


@receiver(post_delete, sender=Membership, dispatch_uid="ackly.sockets.membership_deleted")
def recheck_the_workspaces_sockets(sender, instance: Membership, **kwargs) -> None:
    tell_user_on_commit(instance.user_id, {"do": "recheck", "workspace": instance.workspace_id})


def connect_user_signals() -> None:
    """The user model's receivers (called from AppConfig.ready, once the model is known)."""
    user_model = settings.AUTH_USER_MODEL
    post_init.connect(remember_credentials, sender=user_model,
                      dispatch_uid="ackly.sockets.user_loaded")
    post_save.connect(recheck_on_credential_change, sender=user_model,
                      dispatch_uid="ackly.sockets.user_saved")
    post_delete.connect(end_all_sockets, sender=user_model,
                        dispatch_uid="ackly.sockets.user_deleted")
