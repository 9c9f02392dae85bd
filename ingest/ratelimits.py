"""Burst limits per key and per workspace from the plan (django-ratelimit on the shared cache).

Both counters are incremented on every authenticated request (refused ones too, as a client
that keeps hammering must keep being refused). The tighter of the two is what the
RateLimit-* headers report, in the IETF draft's delta-seconds form.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage

from billing.services import WorkspaceLimits
from sources.keys import KeyContext


@dataclass(frozen=True)
class BurstState:
    """The tighter of the two burst windows after this request was counted."""

    limit: int
    remaining: int
    reset_seconds: int
    exceeded: bool

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }


def _count(request: HttpRequest, group: str, value: str, per_second: int) -> BurstState:
    window = settings.RATELIMIT_WINDOW_SECONDS
    limit = per_second * window
    usage = get_usage(
        request, group=group, key=lambda _group, _request: value, rate=(limit, window),
        increment=True,
    )
    if usage is None:  # RATELIMIT_ENABLE = False
        return BurstState(limit=limit, remaining=limit, reset_seconds=window, exceeded=False)
    # A one-second window ends within the second: report 1, never 0 (clients would spin).
    reset = max(1, usage["time_left"])
    return BurstState(
        limit=limit,
        remaining=max(0, limit - usage["count"]),
        reset_seconds=reset,
        exceeded=usage["should_limit"],
    )


def count_burst(request: HttpRequest, key: KeyContext, limits: WorkspaceLimits) -> BurstState:
    """Count this request against both windows; the state of the one that binds."""
    per_key = _count(request, "ingest-key", str(key.key_id), limits.burst_per_key)
    per_ws = _count(request, "ingest-ws", str(limits.workspace_id), limits.burst_per_workspace)
    if per_key.exceeded != per_ws.exceeded:
        return per_key if per_key.exceeded else per_ws
    return per_key if per_key.remaining <= per_ws.remaining else per_ws
