"""Connecting to Redis and running the limiters' Lua scripts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from keelway.limits.errors import LimitsUnavailable

DEFAULT_KEY_PREFIX = "keelway:"

# Replicas share one Redis; a bounded pool makes a burst of requests wait
# for a connection instead of opening one per request.
DEFAULT_MAX_CONNECTIONS = 50
CONNECTION_WAIT_SECONDS = 5.0

LUA_HELPERS = """
-- Format an integer for Redis without Lua's default 14-digit rounding.
local function str(x) return string.format('%.0f', x) end
-- Return the current time in microseconds: ARGV's value or the server's clock.
local function now_us(given)
  if given ~= '' then return tonumber(given) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""


def connect(target: str | Redis, max_connections: int) -> tuple[Redis, bool]:
    """Return a client for a Redis URL or an existing client, and whether we own it.

    A client built from a URL uses a pool of at most ``max_connections``
    connections, and the limiter closes it. A client passed in stays open.
    """
    if isinstance(target, str):
        pool = BlockingConnectionPool.from_url(
            target, max_connections=max_connections, timeout=CONNECTION_WAIT_SECONDS
        )
        return Redis.from_pool(pool), True
    return target, False


async def run_script(
    script: AsyncScript, keys: Sequence[str], args: Sequence[str | int], what: str
) -> Any:
    """Run a registered script (EVALSHA, loading it once if Redis lacks it).

    Raises LimitsUnavailable, naming ``what`` was attempted, for any Redis error.
    """
    try:
        return await script(keys=list(keys), args=list(args))
    except RedisError as error:
        raise LimitsUnavailable(
            f"{what} failed in Redis: {error.__class__.__name__}: {error}"
        ) from None


def as_int(value: Any) -> int:
    """Return an integer from a script reply, which may be bytes, str or int."""
    if isinstance(value, bytes):
        return int(value.decode())
    return int(value)
