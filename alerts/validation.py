"""Checks of rule and channel input: one place for forms, the admin and the commands.

Every function raises `django.core.exceptions.ValidationError` keyed by field name.
"""

from __future__ import annotations

import ipaddress
import socket
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from alerts.models import ChannelKind, RuleKind

# The Apprise services a channel may use, in two kinds:
# * hosted: the URL names a server of the user's choosing (generic HTTP notifications and
#   self-hosted services): its host is checked like a webhook's, at save and at send time;
# * vendor: notifications go to the vendor's own fixed public host (the URL's "host" part is a
#   token or an id, never a server).
# Any other scheme is refused: an unlisted service might reach a host the check never sees
# (e.g. mailto://…?smtp=<host>). Email has a channel kind of its own.
APPRISE_HOSTED_SCHEMES = frozenset({
    "json", "jsons", "xml", "xmls", "form", "forms", "ntfy", "ntfys", "gotify", "gotifys",
    "mmost", "mmosts", "rocket", "rockets", "matrix", "matrixs", "apprise", "apprises",
    "nctalk", "nctalks", "ncloud", "nclouds", "mqtt", "mqtts", "rsyslog", "workflows",
    "workflow", "signal", "signals", "hassio", "hassios", "kodi", "kodis", "synology",
    "synologys", "bark", "barks", "mastodon", "mastodons", "toot", "toots",
})
APPRISE_VENDOR_SCHEMES = frozenset({
    "discord", "tgram", "pagerduty", "opsgenie", "msteams", "slack", "gchat", "pover", "pbul",
})
# ntfy:// and ntfys:// without a path name a topic on the public ntfy.sh, not a host.
_NTFY_SCHEMES = frozenset({"ntfy", "ntfys"})

# Cloud metadata endpoints beyond the link-local 169.254.169.254 (Alibaba's, AWS's IPv6 one).
_METADATA_ADDRESSES = frozenset({
    ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254"),
})


class UnsafeAddress(ValueError):
    """The host resolves to an address a notification must not reach."""


def refused_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is off limits (loopback, private, link-local, metadata, ...), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one (::ffff:a.b.c.d, 6to4's 2002:abcd::) is judged as IPv4.
        address = address.ipv4_mapped or address.sixtofour or address
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_reserved or address.is_unspecified:
        return "a reserved address"
    if not address.is_global:  # e.g. 100.64.0.0/10, shared (carrier-grade NAT, tailnets)
        return "a non-public address"
    return None


def resolve_public(host: str, port: int) -> str:
    """The first address `host` resolves to, checked; raises UnsafeAddress or OSError.

    Callers connect to the returned address itself, so a second DNS answer (rebinding)
    never decides where the request goes.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"{host} does not resolve")
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE
    addresses = [str(info[4][0]) for info in infos]
    if not allow_private:
        for text in addresses:
            reason = refused_reason(ipaddress.ip_address(text.split("%")[0]))
            if reason:
                raise UnsafeAddress(f"{host} resolves to {reason}")
    return addresses[0]


def check_host(host: str, port: int, field: str = "target") -> None:
    """Save-time SSRF check of a URL's host."""
    try:
        resolve_public(host, port)
    except UnsafeAddress as error:
        raise ValidationError(
            {field: f"{error}; notifications may not go to internal addresses"}
        ) from None
    except (OSError, UnicodeError):
        raise ValidationError({field: f"the host {host!r} does not resolve"}) from None


def scheme_refused(scheme: str) -> str | None:
    """Why a webhook or Slack URL's scheme is refused, or None: a notification carries event
    data (and a webhook's signature), so it goes over TLS; plain http:// only with
    WEBHOOK_ALLOW_HTTP (local receivers in development and tests)."""
    if scheme == "https" or (scheme == "http" and settings.WEBHOOK_ALLOW_HTTP):
        return None
    if scheme == "http":
        return "enter an https:// URL: notifications are not sent over plain http://"
    return "enter an https:// URL"


def validate_http_url(url: str, field: str = "target") -> str:
    url = (url or "").strip()
    parts = urlsplit(url)
    refused = scheme_refused(parts.scheme)
    if refused:
        raise ValidationError({field: refused})
    if not parts.hostname:
        raise ValidationError({field: "enter an https:// URL"})
    if len(url) > 2000:
        raise ValidationError({field: "the URL is longer than 2000 characters"})
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValidationError({field: "the URL's port is not a number from 1 to 65535"}) from None
    check_host(parts.hostname, port, field)
    return url


def validate_apprise_url(url: str, field: str = "target") -> str:
    import apprise

    url = (url or "").strip()
    if len(url) > 2000:
        raise ValidationError({field: "the URL is longer than 2000 characters"})
    scheme = urlsplit(url).scheme.lower()
    if not scheme or apprise.Apprise.instantiate(url) is None:
        raise ValidationError(
            {field: "not an Apprise URL Apprise understands (e.g. json://host/path, tgram://…)"}
        )
    if scheme not in APPRISE_HOSTED_SCHEMES | APPRISE_VENDOR_SCHEMES:
        raise ValidationError({field: (
            f"the Apprise service {scheme}:// is not offered: use one of "
            f"{', '.join(sorted(APPRISE_VENDOR_SCHEMES))}, a self-hosted service "
            "(json://, ntfy://, gotify://, matrix://, …) or a webhook channel"
        )})
    host = apprise_host(url)
    if host:
        check_host(host, apprise_port(url), field)
    return url


def apprise_host(url: str) -> str | None:
    """The server an Apprise URL's notifications go to, when the user chooses it; None for a
    vendor's service (its fixed public host) and for an ntfy topic on ntfy.sh."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in APPRISE_HOSTED_SCHEMES:
            return None
        if scheme in _NTFY_SCHEMES and parts.path.strip("/") == "" and parts.port is None:
            return None
        return parts.hostname
    except ValueError:
        return None


def apprise_port(url: str) -> int:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return port or (443 if parts.scheme.endswith("s") else 80)


def validate_channel(kind: str, target: str) -> str:
    """The channel's target, stripped, if `kind` and `target` are acceptable."""
    if kind not in ChannelKind.values:
        raise ValidationError({"kind": f"choose one of {', '.join(ChannelKind.values)}"})
    if kind == ChannelKind.EMAIL:
        target = (target or "").strip()
        try:
            validate_email(target)
        except ValidationError:
            raise ValidationError({"target": "enter a valid email address"}) from None
        return target
    if kind == ChannelKind.APPRISE:
        return validate_apprise_url(target)
    return validate_http_url(target)


def mask_target(kind: str, target: str) -> str:
    """A channel's target for display: URLs only up to the host, since paths hold tokens.

    Most Apprise services put a token where the host goes (pbul://<access token>): those show
    their scheme only; the hosted ones (json://host/…) show their host like a webhook.
    """
    if kind == ChannelKind.EMAIL:
        return target
    parts = urlsplit(target)
    if kind == ChannelKind.APPRISE and parts.scheme.lower() not in APPRISE_HOSTED_SCHEMES:
        return f"{parts.scheme}://…" if parts.scheme else "…"
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}/…" if parts.scheme else "…"


def validate_tz(value: str) -> ZoneInfo:
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError({"tz": f"unknown time zone {value!r} (e.g. Europe/Berlin)"}) from None


def validate_cron(value: str, tz: str) -> str:
    zone = validate_tz(tz)
    value = " ".join((value or "").split())
    try:
        CronSim(value, datetime.now(zone))
    except CronSimError as error:
        raise ValidationError({"schedule": f"not a cron expression ({error})"}) from None
    return value


_POSITIVE_FIELDS = ("every_minutes", "grace_minutes", "threshold", "window_minutes", "reminder_minutes")


def validate_rule(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The rule's fields, cleaned, if they make sense for `kind`; raises ValidationError."""
    if kind not in RuleKind.values:
        raise ValidationError({"kind": f"choose one of {', '.join(RuleKind.values)}"})
    cleaned = dict(fields)
    errors: dict[str, str] = {}
    for name in _POSITIVE_FIELDS:
        value = cleaned.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 10**9:
            errors[name] = "enter a whole number from 0 to 1000000000"
    for name in ("event_type", "category", "code", "name", "schedule", "tz"):
        if name in cleaned and cleaned[name] is None:
            cleaned[name] = ""
    if errors:
        raise ValidationError(errors)

    if cleaned.get("category") and kind not in (RuleKind.SILENCE, RuleKind.SLOW):
        errors["category"] = "only silence and slow rules look at v1 categories"
    elif cleaned.get("category"):
        from ingest.models import Category

        if cleaned["category"] not in Category.values:
            errors["category"] = f"choose one of {', '.join(Category.values)}"
    if len(cleaned.get("event_type", "")) > 100:
        errors["event_type"] = "at most 100 characters"

    if kind == RuleKind.SILENCE:
        every, schedule = cleaned.get("every_minutes"), cleaned.get("schedule", "")
        if bool(every) == bool(schedule):
            errors["every_minutes"] = "give either every N minutes (N ≥ 1) or a cron schedule"
        elif schedule:
            try:
                cleaned["schedule"] = validate_cron(schedule, cleaned.get("tz") or "UTC")
            except ValidationError as error:
                errors.update({k: v[0] for k, v in error.message_dict.items()})
        if cleaned.get("tz"):
            try:
                validate_tz(cleaned["tz"])
            except ValidationError as error:
                errors.update({k: v[0] for k, v in error.message_dict.items()})
    elif kind == RuleKind.SLOW:
        if not cleaned.get("threshold"):
            errors["threshold"] = "a slow rule needs a threshold in milliseconds (≥ 1)"
    elif kind == RuleKind.REJECTIONS:
        cap = settings.REJECTED_REQUESTS_PER_SOURCE
        if not cleaned.get("threshold"):
            errors["threshold"] = "a rejections rule needs a count N (≥ 1)"
        elif cleaned["threshold"] > cap:
            # Each source keeps only its newest refused requests (REJECTED_REQUESTS_PER_SOURCE).
            errors["threshold"] = f"a rejections rule counts at most {cap} refused requests"
        if not cleaned.get("window_minutes"):
            errors["window_minutes"] = "a rejections rule needs a window of M minutes (≥ 1)"
        if len(cleaned.get("code", "")) > 40:
            errors["code"] = "at most 40 characters"
    elif kind == RuleKind.QUOTA:
        threshold = cleaned.get("threshold")
        if threshold is not None and not 1 <= threshold <= 1000:
            errors["threshold"] = "a quota percentage from 1 to 1000"
        if cleaned.get("source") or cleaned.get("event_type"):
            errors["source"] = "a quota rule is about the whole workspace"
    if cleaned.get("reminder_minutes") == 0:
        cleaned["reminder_minutes"] = None
    if errors:
        raise ValidationError(errors)
    if not cleaned.get("tz"):
        cleaned["tz"] = "UTC"
    return cleaned
