"""Ackly's Redis cache, degraded to a miss when Redis is unreachable instead of failing requests.

Everything Ackly keeps in the cache can be recomputed or skipped: key and plan look-ups fall
back to the database, `touch_key` skips one `last_used_at` update, and the ingest burst
counters fail open. So while Redis is down or slow, every call behaves as on an empty cache
that keeps nothing:

    get / get_many -> default / {}     add -> False        incr / decr -> ValueError (no key)
    has_key / touch -> False           set / set_many / delete / delete_many / clear -> nothing
    incr_windows -> 1 for every counter (each request is the first of its window)

django-ratelimit (the dashboard login) reads add -> False plus incr -> ValueError as "count
unknown" and then limits unless RATELIMIT_FAIL_OPEN is set: sign-in fails closed.

Only connection failures and timeouts are absorbed (a bad reply is a bug and still raises).
Each is logged as a warning at most once per WARN_INTERVAL_SECONDS per cache, with the error
but never the keys (they hold key digests); the first success afterwards is logged once.
The settings give short socket timeouts so an unreachable Redis costs milliseconds per call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ackly.cache import AcklyRedisCache
from ackly.compat import cache_client

logger = logging.getLogger(__name__)

T = TypeVar("T")

WARN_INTERVAL_SECONDS = 10.0
UNREACHABLE = (RedisConnectionError, RedisTimeoutError)


class _Health:
    """Whether Redis is failing, for this process: Django makes a backend object per thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failing = False
        self.failures = 0  # since the last warning
        self.last_warning = float("-inf")

    def failed(self, operation: str, exc: Exception) -> None:
        now = time.monotonic()
        with self.lock:
            self.failing = True
            self.failures += 1
            if now - self.last_warning < WARN_INTERVAL_SECONDS:
                return
            failures, self.failures, self.last_warning = self.failures, 0, now
        logger.warning(
            "Cache unreachable (%s: %s): %s answered as a miss; %d failed call(s) since the "
            "last warning, the next in %.0f s at the earliest",
            type(exc).__name__, exc, operation, failures, WARN_INTERVAL_SECONDS,
        )

    def recovered(self) -> None:
        with self.lock:
            if not self.failing:
                return
            failures, self.failing, self.failures = self.failures, False, 0
            self.last_warning = float("-inf")
        logger.warning("Cache reachable again (%d failed call(s) since the last warning)", failures)


_health = _Health()


class ResilientRedisCache(AcklyRedisCache):
    """Ackly's RedisCache whose operations answer as a miss while Redis is unreachable."""

    def _guard(self, operation: str, call: Callable[[], T], fallback: T) -> T:
        try:
            result = call()
        except UNREACHABLE as exc:
            _health.failed(operation, exc)
            return fallback
        if _health.failing:
            _health.recovered()
        return result

    # --- every operation of BaseCache that reaches Redis ---------------------------------------
    def add(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        parent = super().add
        return self._guard("add", lambda: parent(key, value, timeout, version), False)

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        parent = super().get
        return self._guard("get", lambda: parent(key, default, version), default)

    def set(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        parent = super().set
        self._guard("set", lambda: parent(key, value, timeout, version), None)

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        parent = super().touch
        return self._guard("touch", lambda: parent(key, timeout, version), False)

    def delete(self, key: str, version: int | None = None) -> bool:
        parent = super().delete
        return self._guard("delete", lambda: parent(key, version), False)

    def get_many(self, keys: Any, version: int | None = None) -> dict[str, Any]:
        parent = super().get_many
        return self._guard("get_many", lambda: parent(keys, version), {})

    def has_key(self, key: str, version: int | None = None) -> bool:
        parent = super().has_key
        return self._guard("has_key", lambda: parent(key, version), False)

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        try:
            result = super().incr(key, delta, version)
        except UNREACHABLE as exc:
            _health.failed("incr", exc)
            # What a missing key raises: django-ratelimit then treats the count as unknown.
            raise ValueError("Key not found: the cache is unreachable.") from None
        if _health.failing:
            _health.recovered()
        return result

    def incr_windows(self, keys: list[str], timeout: int) -> list[int]:
        parent = super().incr_windows
        # As on an empty cache: every counter starts at 1, so the burst limits fail open.
        return self._guard("incr_windows", lambda: parent(keys, timeout), [1] * len(keys))

    def set_many(self, data: dict[str, Any], timeout: Any = DEFAULT_TIMEOUT,
                 version: int | None = None) -> list[str]:
        # Django's contract: the keys that failed to be inserted.
        parent = super().set_many
        return self._guard("set_many", lambda: parent(data, timeout, version), list(data))

    def delete_many(self, keys: Any, version: int | None = None) -> None:
        parent = super().delete_many
        self._guard("delete_many", lambda: parent(keys, version), None)

    # RedisCache.clear returns its client's FLUSHDB reply; django-stubs gives it BaseCache's None.
    def clear(self) -> bool:  # type: ignore[override]
        return self._guard("clear", lambda: cache_client(self).clear(), False)  # RedisCache.clear's body
