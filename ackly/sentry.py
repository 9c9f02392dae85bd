"""Errors to Sentry when `SENTRY_DSN` is set, with every key and credential scrubbed first.

sentry-sdk's Django integration reports unhandled exceptions and error log lines (the API's
500s are logged by ackly.errors, so they arrive too). What leaves the process is filtered
twice: sentry-sdk's own scrubber drops credential-named fields (cookies, `Authorization`,
`password`, `token`, … plus Ackly's own names below), and `scrub` then replaces any value
that looks like an ingest key or a bearer credential, wherever it sits: a local variable of a
stack frame, a log message, an exception's text. No request body is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ackly.scrub import scrub as scrub_value

if TYPE_CHECKING:
    from sentry_sdk.types import Event, Hint

# Field names that carry a secret in Ackly, beyond sentry-sdk's default deny list.
EXTRA_DENYLIST = ["secret_key", "signing_secret", "idempotency_key", "metrics_token", "key_hash"]


def scrub(event: Event, hint: Hint | None = None) -> Event:
    """sentry-sdk's `before_send`: the event with every key-like string replaced."""
    return scrub_value(event)


def init(dsn: str, environment: str, traces_sample_rate: float) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration()],
        send_default_pii=False,  # no cookies, user details, client addresses or Authorization
        max_request_body_size="never",  # an event's body is the customer's data
        event_scrubber=EventScrubber(denylist=DEFAULT_DENYLIST + EXTRA_DENYLIST, recursive=True),
        before_send=scrub,
        before_send_transaction=scrub,
        before_breadcrumb=lambda crumb, hint: scrub_value(crumb),
        traces_sample_rate=traces_sample_rate,
    )
