"""The Redis cache backend Ackly uses when REDIS_URL is set.

Django's own `RedisCache` builds a new `redis.Redis` client object for every operation
(`RedisCacheClient.get_client`), and a `redis.Redis` copies ~170 response callbacks into a
case-insensitive dict when it is made: profiled on the ingest path, that was ~0.4 ms of CPU
per cache call and about a third of a single event's CPU (7 cache calls per request). This
backend makes one client per connection pool and per process and reuses it (a `redis.Redis`
and its pool are thread-safe; the pool reconnects itself after a fork).
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache

from ackly.compat import cache_client, use_shared_clients


class AcklyRedisCache(RedisCache):
    """`RedisCache` with one reused client per process (see the module docstring; the client
    class that does it reads Django's private names, so it lives in ackly.compat)."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        use_shared_clients(self)

    def incr_windows(self, keys: list[str], timeout: int) -> list[int]:
        """Add one to each counter, giving new ones `timeout` seconds: ONE round trip."""
        pipe = cache_client(self).get_client(write=True).pipeline(transaction=False)
        queue_incr_windows(pipe, [self.make_and_validate_key(key) for key in keys], timeout)
        return pipe.execute()[::2]


def queue_incr_windows(pipe: Any, names: list[str], timeout: int) -> None:
    """Queue on a Redis pipeline (sync or asyncio) one more for each counter `names` (made
    keys), giving new ones `timeout` seconds; its replies are each count, then an EXPIRE's.

    INCR makes a missing counter at 1 and EXPIRE NX sets the expiry only where none is set,
    so a counter's window never stretches. Counts are stored as plain integers, as Django's
    serializer does, so `get` reads them back.
    """
    for name in names:
        pipe.incr(name)
        pipe.expire(name, timeout, nx=True)
