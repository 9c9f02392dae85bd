"""The Redis cache backend Ackly uses when REDIS_URL is set.

Django's own `RedisCache` builds a new `redis.Redis` client object for every operation
(`RedisCacheClient.get_client`), and a `redis.Redis` copies ~170 response callbacks into a
case-insensitive dict when it is made: profiled on the ingest path, that was ~0.4 ms of CPU
per cache call and about a third of a single event's CPU (7 cache calls per request). This
backend makes one client per connection pool and per process and reuses it (a `redis.Redis`
and its pool are thread-safe; the pool reconnects itself after a fork).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

if TYPE_CHECKING:
    from redis import ConnectionPool, Redis

_clients: dict[tuple[str, str, int], Any] = {}
_clients_lock = threading.Lock()


class SharedRedisCacheClient(RedisCacheClient):
    """`RedisCacheClient` whose pools and clients are made once per process, not per call."""

    # What RedisCacheClient.__init__ sets and this class reads: private, so not in django-stubs.
    _servers: list[str]
    _pool_class: type[ConnectionPool]
    _pool_options: dict[str, Any]
    _client: type[Redis]
    if TYPE_CHECKING:

        def _get_connection_pool_index(self, write: bool) -> int: ...

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)
        # Backend objects are made per thread / per async context; the clients they share are
        # keyed by server and options, and by process (a forked child makes its own).
        url = self._servers[index]
        slot = (url, repr(sorted(self._pool_options.items())), os.getpid())
        client = _clients.get(slot)
        if client is None:
            with _clients_lock:
                client = _clients.get(slot)
                if client is None:
                    pool = self._pool_class.from_url(url, **self._pool_options)
                    client = _clients[slot] = self._client(connection_pool=pool)
        return client


class AcklyRedisCache(RedisCache):
    """`RedisCache` with one reused client per process (see the module docstring)."""

    _cache: SharedRedisCacheClient  # RedisCache's cached property of its `_class`: not in django-stubs

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedRedisCacheClient

    def incr_windows(self, keys: list[str], timeout: int) -> list[int]:
        """Add one to each counter, giving new ones `timeout` seconds: ONE round trip.

        INCR makes a missing counter at 1 and EXPIRE NX sets the expiry only where none is
        set, so a counter's window never stretches. Counts are stored as plain integers, as
        Django's serializer does, so `get` reads them back.
        """
        pipe = self._cache.get_client(write=True).pipeline(transaction=False)
        for key in keys:
            name = self.make_and_validate_key(key)
            pipe.incr(name)
            pipe.expire(name, timeout, nx=True)
        return pipe.execute()[::2]
