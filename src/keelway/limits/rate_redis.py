"""A rate limiter shared by every replica through Redis.

Each :meth:`RedisRateLimiter.acquire` is one Lua script run (one round trip)
that checks and counts every rule of the call atomically, so concurrent
requests from any number of processes never overshoot a limit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from redis.asyncio import Redis

from keelway.limits.clock import Clock, to_micros
from keelway.limits.rate import RateLimitRule, RateLimitStatus, merge_rules
from keelway.limits.rate_window import (
    WINDOW_US,
    RequestWindow,
    RuleWindows,
    TokenWindow,
    rejection,
    status_of,
    validate_delta,
    validate_tokens,
    window_index,
)
from keelway.limits.redis_support import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_MAX_CONNECTIONS,
    LUA_HELPERS,
    as_int,
    connect,
    run_script,
)

# KEYS: per rule, its request log (sorted set of request times in µs) and
# its token counter (hash of the fixed minute's index and two counts).
# ARGV: now in µs ('' for the server clock), a unique member for this
# request, its tokens, the window in µs, then per rule its requests and
# tokens limits (-1 for none). The checks mirror requests_fit and
# tokens_fit in rate_window.py.
# Returns: admitted (1 or 0), now, then per rule: request count, time of
# the blocking request, time of the newest request, previous and current
# token counts (-1 where there is no such request).
_ACQUIRE = (
    LUA_HELPERS
    + """
local now = now_us(ARGV[1])
local member, tokens, window = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local window_ms = window / 1000
local index = math.floor(now / window)
local elapsed_ms = math.floor((now - index * window) / 1000)
local rules = #KEYS / 2
local admitted = 1
local counts, previous, current = {}, {}, {}

for i = 1, rules do
  local log, counter = KEYS[2 * i - 1], KEYS[2 * i]
  local rpm, tpm = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])
  counts[i], previous[i], current[i] = 0, 0, 0
  if rpm >= 0 then
    redis.call('ZREMRANGEBYSCORE', log, '-inf', str(now - window))
    counts[i] = redis.call('ZCARD', log)
    if counts[i] >= rpm then admitted = 0 end
  end
  if tpm >= 0 then
    local saved = redis.call('HMGET', counter, 'index', 'current', 'previous')
    local saved_index = tonumber(saved[1])
    if saved_index == index then
      current[i] = tonumber(saved[2]) or 0
      previous[i] = tonumber(saved[3]) or 0
    elseif saved_index == index - 1 then
      previous[i] = tonumber(saved[2]) or 0
    end
    local used = previous[i] * (window_ms - elapsed_ms) + current[i] * window_ms
    if used + tokens * window_ms > tpm * window_ms then admitted = 0 end
  end
end

local reply = {admitted, now}
for i = 1, rules do
  local log, counter = KEYS[2 * i - 1], KEYS[2 * i]
  local rpm, tpm = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])
  if admitted == 1 and rpm >= 0 then
    redis.call('ZADD', log, str(now), member)
    redis.call('PEXPIRE', log, str(window_ms + 1000))
    counts[i] = counts[i] + 1
  end
  if admitted == 1 and tpm >= 0 then
    current[i] = current[i] + tokens
    redis.call('HSET', counter, 'index', str(index),
      'current', str(current[i]), 'previous', str(previous[i]))
    redis.call('PEXPIRE', counter, str(2 * window_ms + 1000))
  end
  local blocking, newest = -1, -1
  if rpm >= 0 then
    if counts[i] >= rpm then
      local rank = counts[i] - rpm
      local entry = redis.call('ZRANGE', log, rank, rank, 'WITHSCORES')
      if entry[2] then blocking = tonumber(entry[2]) end
    end
    local last = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
    if last[2] then newest = tonumber(last[2]) end
  end
  for _, value in ipairs({counts[i], blocking, newest, previous[i], current[i]}) do
    reply[#reply + 1] = value
  end
end
return reply
"""
)

# KEYS: token counters. ARGV: now in µs ('' for the server clock), the
# window in µs, the tokens to add (negative to refund). A count never goes
# below zero.
_ADJUST = (
    LUA_HELPERS
    + """
local now = now_us(ARGV[1])
local window, delta = tonumber(ARGV[2]), tonumber(ARGV[3])
local index = math.floor(now / window)
for i = 1, #KEYS do
  local saved = redis.call('HMGET', KEYS[i], 'index', 'current', 'previous')
  local saved_index = tonumber(saved[1])
  local previous, current = 0, 0
  if saved_index == index then
    current = tonumber(saved[2]) or 0
    previous = tonumber(saved[3]) or 0
  elseif saved_index == index - 1 then
    previous = tonumber(saved[2]) or 0
  end
  current = math.max(0, current + delta)
  redis.call('HSET', KEYS[i], 'index', str(index),
    'current', str(current), 'previous', str(previous))
  redis.call('PEXPIRE', KEYS[i], str(2 * window / 1000 + 1000))
end
return #KEYS
"""
)

_FIELDS_PER_RULE = 5


class RedisRateLimiter:
    """Sliding-minute request and token limits shared through Redis.

    ``redis`` is a URL (``redis://127.0.0.1:6379/0``) or a
    ``redis.asyncio.Redis`` client; a client passed in is not closed by
    :meth:`close`. Keys are ``<key_prefix>rpm:<scope>`` and
    ``<key_prefix>tpm:<scope>`` and expire once their window has passed.
    Without ``clock`` the Redis server's clock is used, so replicas with
    skewed clocks still agree.

    NOTE: the keys of one call may hash to different Redis Cluster slots;
    on a cluster, wrap the prefix in a hash tag (``{keelway}:``).
    """

    def __init__(
        self,
        redis: str | Redis,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        clock: Clock | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self._client, self._owns_client = connect(redis, max_connections)
        self._prefix = key_prefix
        self._clock = clock
        self._acquire = self._client.register_script(_ACQUIRE)
        self._adjust = self._client.register_script(_ADJUST)

    async def acquire(
        self, rules: Sequence[RateLimitRule], tokens: int = 0
    ) -> RateLimitStatus:
        """Count one request against every rule, or raise RateLimitExceeded."""
        validate_tokens(tokens)
        merged = merge_rules(rules)
        if not merged:
            return RateLimitStatus()
        keys: list[str] = []
        args: list[str | int] = [self._now(), uuid.uuid4().hex, tokens, WINDOW_US]
        for rule in merged:
            keys += [self._requests_key(rule.scope), self._tokens_key(rule.scope)]
            args += [_limit(rule.requests_per_minute), _limit(rule.tokens_per_minute)]
        reply = [
            as_int(v)
            for v in await run_script(self._acquire, keys, args, "rate limit check")
        ]
        admitted, now = reply[0] == 1, reply[1]
        windows = [
            _windows(rule, reply[2 + i * _FIELDS_PER_RULE :], now)
            for i, rule in enumerate(merged)
        ]
        if not admitted:
            raise rejection(windows, tokens, now)
        return status_of(windows, now)

    async def adjust_tokens(self, rules: Sequence[RateLimitRule], delta: int) -> None:
        """Add ``delta`` tokens to the current minute of each rule with a token limit.

        A refund larger than the current minute's count stops at zero, so the
        limiter errs toward counting too many tokens.
        """
        validate_delta(delta)
        keys = [
            self._tokens_key(rule.scope)
            for rule in merge_rules(rules)
            if rule.tokens_per_minute is not None
        ]
        if delta == 0 or not keys:
            return
        args: list[str | int] = [self._now(), WINDOW_US, delta]
        await run_script(self._adjust, keys, args, "token count adjustment")

    async def close(self) -> None:
        """Close the Redis client if this limiter created it."""
        if self._owns_client:
            await self._client.aclose()

    def _now(self) -> str | int:
        return "" if self._clock is None else to_micros(self._clock())

    def _requests_key(self, scope: str) -> str:
        return f"{self._prefix}rpm:{scope}"

    def _tokens_key(self, scope: str) -> str:
        return f"{self._prefix}tpm:{scope}"


def _limit(value: int | None) -> int:
    return -1 if value is None else value


def _windows(rule: RateLimitRule, fields: list[int], now: int) -> RuleWindows:
    count, blocking, newest, previous, current = fields[:_FIELDS_PER_RULE]
    requests = tokens = None
    if rule.requests_per_minute is not None:
        requests = RequestWindow(
            count,
            newest if newest >= 0 else None,
            blocking if blocking >= 0 else None,
        )
    if rule.tokens_per_minute is not None:
        elapsed = now - window_index(now) * WINDOW_US
        tokens = TokenWindow(previous, current, elapsed)
    return RuleWindows(rule, requests, tokens)
