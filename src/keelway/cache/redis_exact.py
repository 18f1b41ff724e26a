"""An exact cache in Redis, shared by every gateway replica.

Each entry is one string key, ``{prefix}{exact key}``, holding the entry as
orjson bytes and set with a millisecond expiry (``SET ... PX``).

The size bound is a capped index, not Redis' eviction policy, because
``maxmemory-policy`` is server-wide and often ``noeviction``. With
``max_entries`` set, a sorted set ``{prefix}index`` scores every key by its
expiry time. Each write, in one Lua script, drops index members already
expired, adds the new key and then deletes the keys that expire soonest until
at most ``max_entries`` remain. When every entry has the same TTL, that
evicts the oldest writes first. Reads do not touch the index, so the bound is
FIFO rather than LRU. Without ``max_entries`` nothing bounds the count, and
only the TTL and the server's ``maxmemory`` limit the size.
"""

from __future__ import annotations

import logging
import math
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from keelway.cache.entry import CachedResponse
from keelway.cache.errors import CacheError
from keelway.cache.exact import Clock, check_ttl

log = logging.getLogger(__name__)

# KEYS: entry key, index key.
# ARGV: payload, ttl in ms, expiry in Unix ms, max entries (0: none), now in Unix ms.
_SET_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local max = tonumber(ARGV[4])
if max > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
  local excess = redis.call('ZCARD', KEYS[2]) - max
  if excess > 0 then
    local evicted = redis.call('ZPOPMIN', KEYS[2], excess)
    for i = 1, #evicted, 2 do
      redis.call('DEL', evicted[i])
    end
  end
end
return 1
"""


def connect(redis: str | Redis) -> tuple[Redis, bool]:
    """Return a client for a URL or the given client, and whether the caller owns it.

    A client passed in must return bytes (``decode_responses=False``, the
    default), because entries and vectors are binary.
    """
    if isinstance(redis, str):
        if not redis.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "Redis URL must use the redis://, rediss:// or unix:// scheme,"
                f" not {redis.partition('://')[0]!r}"
            )
        return Redis.from_url(redis, decode_responses=False), True
    return redis, False


class RedisExactCache:
    """Entries in Redis under ``prefix``, bounded by a capped index when asked."""

    def __init__(
        self,
        redis: str | Redis,
        *,
        prefix: str = "keelway:cache:exact:",
        max_entries: int | None = None,
        default_ttl: float = 3600.0,
        clock: Clock = time.time,
    ) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty")
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.prefix = prefix
        self.max_entries = max_entries
        self.default_ttl = check_ttl(default_ttl)
        self.index_key = f"{prefix}index"
        self._clock = clock
        self._client, self._owns_client = connect(redis)
        self._set_script = self._client.register_script(_SET_SCRIPT)

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    async def get(self, key: str) -> CachedResponse | None:
        """Return the entry under ``key``; Redis has already dropped expired ones."""
        try:
            payload = await self._client.get(self._key(key))
        except RedisError as error:
            raise CacheError(f"Redis GET {self._key(key)!r} failed: {error}") from error
        if payload is None:
            return None
        try:
            return CachedResponse.from_json(payload)
        except ValueError as error:
            log.warning("ignoring unreadable cache entry %s: %s", self._key(key), error)
            return None

    async def set(
        self, key: str, response: CachedResponse, ttl: float | None = None
    ) -> None:
        """Store ``response`` with a TTL, evicting past ``max_entries`` if set."""
        ttl_ms = max(
            1, math.ceil(check_ttl(self.default_ttl if ttl is None else ttl) * 1000)
        )
        now_ms = int(self._clock() * 1000)
        try:
            await self._set_script(
                keys=[self._key(key), self.index_key],
                args=[
                    response.to_json(),
                    ttl_ms,
                    now_ms + ttl_ms,
                    self.max_entries or 0,
                    now_ms,
                ],
            )
        except RedisError as error:
            raise CacheError(f"Redis SET {self._key(key)!r} failed: {error}") from error

    async def close(self) -> None:
        """Close the connection pool if this cache created it from a URL."""
        if self._owns_client:
            await self._client.aclose()
