"""Sending one delivery: claim it, make one attempt, record it, schedule a retry if it may succeed later.

At least once: a delivery is claimed with a lease (a conditional UPDATE, so two workers never
attempt it at the same moment); a worker that dies mid-attempt leaves the lease to run out,
and the engine's sweep queues the delivery again. Every attempt of one delivery carries the
same `Ackly-Delivery` id, so a receiver can drop a repeat.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import random
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings
from django.core.mail import get_connection, send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.ssl_match_hostname import CertificateError

from alerts.models import Attempt, ChannelKind, Delivery, DeliveryState, Purpose, RuleKind
from alerts.validation import (
    APPRISE_HOSTED_SCHEMES,
    APPRISE_VENDOR_SCHEMES,
    UnsafeAddress,
    apprise_host,
    apprise_port,
    resolve_public,
    scheme_refused,
)

logger = logging.getLogger(__name__)

USER_AGENT = "Ackly-Webhooks/1"
MAX_EVENTS = 10


@dataclass(frozen=True)
class Outcome:
    ok: bool
    retry: bool
    status_code: int | None = None
    error: str = ""


def enqueue(delivery_id: int, run_after: datetime | None = None) -> None:
    """Queue an attempt of the delivery on the task backend (django-tasks)."""
    from alerts.tasks import deliver

    if run_after is None:
        deliver.enqueue(delivery_id)
    elif deliver.get_backend().supports_defer:
        deliver.using(run_after=run_after).enqueue(delivery_id)
    # A backend that cannot defer (the immediate one) leaves a retry to the engine's sweep.


def enqueue_on_commit(delivery: Delivery, run_after: datetime | None = None) -> None:
    """Queue the delivery once the transaction that created it commits (never on rollback)."""
    delivery_id = delivery.pk
    transaction.on_commit(lambda: enqueue(delivery_id, run_after))


def backoff_seconds(attempts: int) -> float:
    """The wait before retry number `attempts`: exponential from the base, capped, with jitter."""
    base = settings.ALERTS_RETRY_BASE_SECONDS * 2 ** min(attempts - 1, 16)
    return min(base, 3600) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret


def attempt_delivery(delivery_id: int) -> str:
    """Claim the delivery if due, make one attempt, record it. Returns what happened."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.ALERTS_DELIVERY_LEASE_SECONDS)
    claimed = Delivery.objects.filter(
        pk=delivery_id, state=DeliveryState.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=lease, attempts=F("attempts") + 1)
    if not claimed:
        return "not due"
    delivery = Delivery.objects.select_related(
        "channel__workspace", "alert__rule__source", "alert__workspace"
    ).get(pk=delivery_id)
    started = time.monotonic()
    try:
        outcome = send(delivery)
    except Exception as error:  # noqa: BLE001 - a bug in one channel must not kill the worker
        logger.exception("Delivery %s failed unexpectedly", delivery.public_id)
        outcome = Outcome(ok=False, retry=True, error=f"internal error: {type(error).__name__}")
    latency_ms = int((time.monotonic() - started) * 1000)
    result = record_attempt(delivery, outcome, latency_ms)
    # Never the target: a Slack or Apprise URL carries its tokens.
    logger.info(
        "Delivery %s (%s channel %s) attempt: %s in %d ms -> %s", delivery.public_id,
        delivery.channel.kind, delivery.channel.public_id,
        outcome.status_code or outcome.error or "ok", latency_ms, result,
    )
    return result


@transaction.atomic
def record_attempt(delivery: Delivery, outcome: Outcome, latency_ms: int) -> str:
    now = timezone.now()
    Attempt.objects.create(
        delivery=delivery, at=now, status_code=outcome.status_code, latency_ms=latency_ms,
        error=outcome.error[:1000],
    )
    pending = Delivery.objects.filter(pk=delivery.pk, state=DeliveryState.PENDING)
    if outcome.ok:
        pending.update(state=DeliveryState.DELIVERED, delivered_at=now)
        return "delivered"
    attempts = Delivery.objects.values_list("attempts", flat=True).get(pk=delivery.pk)
    retry_at = now + timedelta(seconds=backoff_seconds(attempts))
    give_up_at = delivery.created_at + timedelta(seconds=settings.ALERTS_RETRY_FOR_SECONDS)
    if outcome.retry and retry_at <= give_up_at:
        pending.update(next_attempt_at=retry_at)
        enqueue_on_commit(delivery, run_after=retry_at)
        return "retry"
    pending.update(state=DeliveryState.FAILED)
    return "failed"


# --- What is sent ---------------------------------------------------------------------------


def dashboard_url(workspace_public_id: str, alert_public_id: str | None = None) -> str:
    """The alert's own page (its events, notifications and deliveries), else the Alerts page."""
    base = (settings.PUBLIC_BASE_URL or "http://localhost:8000/").rstrip("/")
    page = f"{alert_public_id}/" if alert_public_id else ""
    return f"{base}/w/{workspace_public_id}/alerts/{page}"


def payload(delivery: Delivery) -> dict[str, Any]:
    """The JSON body of a webhook: the same for every attempt of one delivery."""
    channel, alert = delivery.channel, delivery.alert
    workspace = channel.workspace
    body: dict[str, Any] = {
        "id": delivery.public_id,
        "type": "test" if alert is None else f"alert.{delivery.purpose}",
        "workspace": {"id": workspace.public_id, "name": workspace.name},
        "alert": None,
        "rule": None,
        "source": None,
        "events": [],
        "url": dashboard_url(workspace.public_id, alert.public_id if alert else None),
    }
    if alert is None:
        return body
    rule = alert.rule
    body["alert"] = {
        "id": alert.public_id,
        "state": "resolved" if alert.resolved_at else "firing",
        "reason": alert.reason,
        "resolution": alert.resolution or None,
        "openedAt": alert.opened_at.isoformat(),
        "resolvedAt": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }
    if delivery.purpose == Purpose.FIRED:
        body["alert"]["state"] = "firing"
    body["rule"] = {"id": rule.public_id, "name": rule.name, "kind": rule.kind}
    if rule.source is not None:
        body["source"] = {"id": rule.source.public_id, "name": rule.source.name}
    body["events"] = list(alert.events or [])[:MAX_EVENTS]
    return body


def headline(delivery: Delivery) -> str:
    """One line (an email's subject): a name's line breaks would make every send fail."""
    alert = delivery.alert
    if alert is None:
        return " ".join(f"Ackly test notification for {delivery.channel.name}".split())
    word = {Purpose.FIRED: "FIRING", Purpose.RESOLVED: "RESOLVED", Purpose.REMINDER: "STILL FIRING"}
    label = word.get(Purpose(delivery.purpose), delivery.purpose.upper())
    return " ".join(f"[{label}] {alert.rule.name}".split())


def summary(delivery: Delivery) -> str:
    alert = delivery.alert
    url = dashboard_url(delivery.channel.workspace.public_id, alert.public_id if alert else None)
    if alert is None:
        return f"This channel works. Sent from Ackly.\n{url}"
    lines = [alert.reason]
    if delivery.purpose == Purpose.RESOLVED and alert.resolution:
        lines.append(alert.resolution)
    if alert.rule.kind != RuleKind.QUOTA:
        for event in list(alert.events or [])[:3]:
            lines.append(f"• {event.get('at', '')} {event.get('status') or event.get('category') or ''} "
                         f"{event.get('eventType') or ''} {event.get('message') or ''}".rstrip())
    lines.append(url)
    return "\n".join(lines)


def slack_body(delivery: Delivery) -> dict[str, Any]:
    text = f"{headline(delivery)}\n{summary(delivery)}"
    return {
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline(delivery)[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": summary(delivery)[:2900]}},
        ],
    }


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`Ackly-Signature`: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


# --- How it is sent -------------------------------------------------------------------------


def send(delivery: Delivery) -> Outcome:
    channel = delivery.channel
    if channel.kind == ChannelKind.EMAIL:
        return send_email(delivery)
    if channel.kind == ChannelKind.APPRISE:
        return send_apprise(delivery)
    if channel.kind == ChannelKind.SLACK:
        body = json.dumps(slack_body(delivery)).encode()
        return post(channel.target, body, {"Content-Type": "application/json"})
    body = json.dumps(payload(delivery), separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "Ackly-Delivery": delivery.public_id,
        "Ackly-Signature": signature(channel.signing_secret, int(time.time()), body),
    }
    return post(channel.target, body, headers)


def classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome(ok=True, retry=False, status_code=status)
    retry = status >= 500 or status == 429
    return Outcome(ok=False, retry=retry, status_code=status, error=f"HTTP {status}")


def post(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """POST to the address the URL's host resolves to, checked first (no DNS rebinding)."""
    parts = urlsplit(url)
    if scheme_refused(parts.scheme):
        # A channel saved before https:// was required (or while WEBHOOK_ALLOW_HTTP was on):
        # failed at once, with the reason in its delivery log, never sent in the clear.
        return Outcome(ok=False, retry=False,
                       error=f"refused: {parts.scheme}:// URL; the channel needs an https:// URL")
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    try:
        address = resolve_public(host, port)
    except UnsafeAddress as error:
        return Outcome(ok=False, retry=False, error=f"refused: {error}")
    except (OSError, UnicodeError) as error:
        return Outcome(ok=False, retry=True, error=f"DNS: {type(error).__name__}")
    limit = settings.ALERTS_DELIVERY_TIMEOUT_SECONDS
    connection: HTTPConnection
    if https:
        connection = HTTPSConnection(
            address, port, timeout=limit, server_hostname=host, assert_hostname=host,
            cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(),
        )
    else:
        connection = HTTPConnection(address, port, timeout=limit)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if ":" in host:
        netloc = f"[{host}]" if parts.port is None else f"[{host}]:{parts.port}"
    all_headers = {"Host": netloc, "User-Agent": USER_AGENT, **headers}
    # The socket timeout bounds each read; a receiver dripping a byte at a time would keep the
    # attempt alive past it (and past its lease). The watchdog ends the whole attempt in time.
    expired = threading.Event()

    def cut_off() -> None:
        expired.set()
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(limit, cut_off)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("POST", target, body=body, headers=all_headers)
        response = connection.getresponse()
        # Read at most a little of the answer: only the status matters.
        response.read(4096)
        status = response.status
    except (OSError, CertificateError, http.client.HTTPException, urllib3.exceptions.HTTPError) as error:
        name = "Timeout" if expired.is_set() else type(error).__name__
        return Outcome(ok=False, retry=True, error=f"network: {name}")
    finally:
        watchdog.cancel()
        connection.close()
    if expired.is_set():
        return Outcome(ok=False, retry=True, error="network: Timeout")
    return classify(status)


def send_email(delivery: Delivery) -> Outcome:
    try:
        # Bounded like any other attempt: an SMTP server that stalls must not hold the worker.
        connection = get_connection(timeout=settings.ALERTS_DELIVERY_TIMEOUT_SECONDS)
        send_mail(
            headline(delivery), summary(delivery), settings.DEFAULT_FROM_EMAIL,
            [delivery.channel.target], fail_silently=False, connection=connection,
        )
    except Exception as error:  # noqa: BLE001 - any backend failure (SMTP down) is retried
        return Outcome(ok=False, retry=True, error=f"email: {type(error).__name__}")
    return Outcome(ok=True, retry=False)


def send_apprise(delivery: Delivery) -> Outcome:
    """Through Apprise. Its services report only success or failure, so every failure is retried."""
    import apprise

    url = delivery.channel.target
    scheme = urlsplit(url).scheme.lower()
    if scheme not in APPRISE_HOSTED_SCHEMES | APPRISE_VENDOR_SCHEMES:
        return Outcome(ok=False, retry=False, error=f"refused: {scheme}:// is not offered")
    host = apprise_host(url)
    if host:
        try:
            resolve_public(host, apprise_port(url))
        except UnsafeAddress as error:
            return Outcome(ok=False, retry=False, error=f"refused: {error}")
        except (OSError, UnicodeError) as error:
            return Outcome(ok=False, retry=True, error=f"DNS: {type(error).__name__}")
    service = apprise.Apprise.instantiate(url)
    if service is None:
        return Outcome(ok=False, retry=False, error="Apprise does not understand this URL")
    # As for webhooks, a redirect is never followed: its target was never checked. A URL's own
    # ?redirect=yes is overridden, and its ?cto=/?rto= may only shorten the delivery timeout.
    service.redirects = False
    limit = settings.ALERTS_DELIVERY_TIMEOUT_SECONDS
    service.socket_connect_timeout = min(service.socket_connect_timeout, limit)
    service.socket_read_timeout = min(service.socket_read_timeout, limit)
    notifier = apprise.Apprise()
    notifier.add(service)
    ok = notifier.notify(title=headline(delivery), body=summary(delivery))
    return Outcome(ok=bool(ok), retry=not ok, error="" if ok else "Apprise reported a failure")
