"""The client's address, the one rule every per-address limit uses.

A server behind a reverse proxy sees the proxy's address; the proxy passes the client's in
`X-Forwarded-For`. That header is written by whoever sent the request, so only the entries
the operator's own proxies appended can be believed: with `TRUSTED_PROXY_HOPS = N`, the
client is the N-th address from the right (each trusted proxy appends the address it was
connected from). Anything a client puts further left is ignored, so rotating the header buys
nothing. With N = 0 (the default: no proxy) the header is ignored and the peer address is
the client.

The servers' own proxy-header handling is turned off in the production recipe
(`uvicorn --no-proxy-headers`, Daphne without `--proxy-headers`), so this is the only place
that reads the header (docs/deployment.md).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _address(text: str) -> str | None:
    """`text` as a normalised IP address, or None when it is not one.

    Written forms of one client count as one address: "[::1]:443" and "1.2.3.4:5678" (some
    proxies append the port) are the address alone, and an IPv4-mapped IPv6 address
    ("::ffff:1.2.3.4", a dual-stack socket's view of an IPv4 peer) is the IPv4 address. The
    last matters beyond spelling: limits count IPv6 clients per /64, and every mapped address
    falls in one /64.
    """
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "1.2.3.4:5678"; a bare IPv6 address has two or more
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def client_address(remote_addr: str, forwarded_for: str | None, hops: int | None = None) -> str:
    """The client's address from the peer address and an X-Forwarded-For value."""
    if hops is None:
        hops = settings.TRUSTED_PROXY_HOPS
    peer = _address(remote_addr or "") or (remote_addr or "unknown")
    if hops <= 0 or not forwarded_for:
        return peer
    chain = [entry for entry in forwarded_for.split(",") if entry.strip()]
    if not chain:
        return peer
    # Fewer entries than trusted hops: the left-most is as far as the proxies saw.
    entry = chain[-hops] if len(chain) >= hops else chain[0]
    return _address(entry) or peer


def client_ip(request: HttpRequest) -> str:
    """The client's address for a Django request (django-ratelimit's RATELIMIT_IP_META_KEY)."""
    return client_address(
        request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR")
    )
