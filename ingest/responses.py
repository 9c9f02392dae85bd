"""The headers an ingest answer carries about its workspace's state, for both executors.

The pipeline sets them on its HttpResponse (ingest.pipeline), the fast lane on the answers it
sends itself (ingest.fastlane): one function, so the two cannot drift apart.
"""

from __future__ import annotations

from billing.services import QuotaState
from ingest.ratelimits import BurstState

JSON_CONTENT_TYPE = "application/json"


def state_headers(quota: QuotaState | None, burst: BurstState | None) -> list[tuple[str, str]]:
    """X-Quota-Limit/-Remaining/-Reset (epoch seconds of the period's end) and
    RateLimit-Limit/-Remaining/-Reset (seconds; the tighter of the key's and the workspace's
    windows), for what is known of the request."""
    headers: list[tuple[str, str]] = []
    if quota is not None:
        headers += [
            ("X-Quota-Limit", str(quota.limit)),
            ("X-Quota-Remaining", str(quota.remaining)),
            ("X-Quota-Reset", str(int(quota.period_end.timestamp()))),
        ]
    if burst is not None:
        headers += list(burst.headers().items())
    return headers
