"""Budgets shared by every replica through Redis.

Reserving and settling are one Lua script run each (one round trip), atomic
across every rule of the call. An account is a hash (``spent``,
``reserved``, ``alerted``) plus a sorted set of live reservations scored by
their expiry, so a reservation whose process died stops holding budget once
its TTL passes. The first use of an account that Redis lacks seeds it from
the ledger (only if it is still missing), so a restart or a lost key does not
reset a budget.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from decimal import Decimal

from redis.asyncio import Redis

from keelway.limits.budget_accounts import (
    DEFAULT_RESERVATION_TTL,
    Charge,
    charges_at,
    initial_alerted,
    read_spent,
)
from keelway.limits.budgets import (
    BudgetExceeded,
    BudgetRule,
    BudgetUsage,
    Reservation,
    SoftLimitCrossed,
    SpentReader,
    merge_budget_rules,
)
from keelway.limits.clock import Clock, to_micros
from keelway.limits.errors import LimitsUnavailable
from keelway.limits.money import nano_to_usd, usd_to_nano
from keelway.limits.redis_support import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_MAX_CONNECTIONS,
    LUA_HELPERS,
    as_int,
    connect,
    run_script,
)

# Drops a reservation set's expired members and takes their amounts (the
# digits after the last ':' of each member) off the account's reserved sum.
_PURGE = """
local function purge(account, reservations, now)
  local expired = redis.call('ZRANGEBYSCORE', reservations, '-inf', str(now))
  if #expired == 0 then return end
  local total = 0
  for _, member in ipairs(expired) do
    total = total + tonumber(string.match(member, ':(%d+)$'))
  end
  redis.call('ZREMRANGEBYSCORE', reservations, '-inf', str(now))
  if redis.call('EXISTS', account) == 1 then
    redis.call('HINCRBY', account, 'reserved', str(-total))
  end
end
local function expire(key, at)
  if at > 0 then redis.call('EXPIREAT', key, str(at)) end
end
"""

# KEYS: per rule, its account hash and its reservation set. ARGV: now (µs),
# amount (nano-USD), reservation member ('<id>:<amount>'), reservation
# expiry (µs), then per rule its hard limit (-1 for none) and the account's
# expiry (epoch seconds, 0 for never).
# Returns {-1, i...} when accounts i are missing (nothing changed), {0, i,
# spent, reserved} when rule i's hard limit rejects, {1} when reserved.
_RESERVE = (
    LUA_HELPERS
    + _PURGE
    + """
local now, amount = tonumber(ARGV[1]), tonumber(ARGV[2])
local member, until_us = ARGV[3], ARGV[4]
local rules = #KEYS / 2
local missing = {-1}
for i = 1, rules do
  if redis.call('EXISTS', KEYS[2 * i - 1]) == 0 then missing[#missing + 1] = i end
end
if #missing > 1 then return missing end

local spent, reserved = {}, {}
for i = 1, rules do
  local account = KEYS[2 * i - 1]
  purge(account, KEYS[2 * i], now)
  local saved = redis.call('HMGET', account, 'spent', 'reserved')
  spent[i], reserved[i] = tonumber(saved[1]) or 0, tonumber(saved[2]) or 0
  local hard = tonumber(ARGV[3 + 2 * i])
  if hard >= 0 and spent[i] + reserved[i] + amount > hard then
    return {0, i, spent[i], reserved[i]}
  end
end
for i = 1, rules do
  local account, reservations = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('ZADD', reservations, until_us, member)
  redis.call('HINCRBY', account, 'reserved', str(amount))
  local at = tonumber(ARGV[4 + 2 * i])
  expire(account, at)
  expire(reservations, at)
end
return {1}
"""
)

# KEYS: per rule, its account hash and its reservation set. ARGV: the
# reservation member, its amount, the real cost (-1 when unknown), then per
# rule its soft limit (-1 for none). An account that no longer exists is left
# alone; the ledger restores it. Returns {i, spent...} for each rule whose
# soft limit this cost reached for the first time in the period.
_SETTLE = (
    LUA_HELPERS
    + """
local member, amount, actual = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local crossed = {}
for i = 1, #KEYS / 2 do
  local account, reservations = KEYS[2 * i - 1], KEYS[2 * i]
  local exists = redis.call('EXISTS', account) == 1
  if redis.call('ZREM', reservations, member) == 1 and exists then
    redis.call('HINCRBY', account, 'reserved', str(-amount))
  end
  if actual >= 0 and exists then
    local spent = redis.call('HINCRBY', account, 'spent', str(actual))
    local soft = tonumber(ARGV[3 + i])
    local alerted = tonumber(redis.call('HGET', account, 'alerted') or '-1')
    if soft >= 0 and spent >= soft and soft > alerted then
      redis.call('HSET', account, 'alerted', str(soft))
      crossed[#crossed + 1] = i
      crossed[#crossed + 1] = spent
    end
  end
end
return crossed
"""
)

# KEYS: account hashes to create. ARGV: per key its spent amount, the soft
# limit to treat as reported (-1 for none) and its expiry (epoch seconds, 0
# for never). Keys that exist are left alone. Returns how many were created.
_SEED = (
    LUA_HELPERS
    + """
local created = 0
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'spent', ARGV[3 * i - 2], 'reserved', '0',
      'alerted', ARGV[3 * i - 1])
    local at = tonumber(ARGV[3 * i])
    if at > 0 then redis.call('EXPIREAT', KEYS[i], str(at)) end
    created = created + 1
  end
end
return created
"""
)

# KEYS: an account hash and its reservation set. ARGV: now (µs).
# Returns {exists (1 or 0), spent, reserved}.
_USAGE = (
    LUA_HELPERS
    + _PURGE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0} end
purge(KEYS[1], KEYS[2], tonumber(ARGV[1]))
local saved = redis.call('HMGET', KEYS[1], 'spent', 'reserved')
return {1, tonumber(saved[1]) or 0, tonumber(saved[2]) or 0}
"""
)

# Seeding a missing account and retrying happens at most this many times.
_SEED_ATTEMPTS = 3


class RedisBudgets:
    """Budgets shared through Redis by every replica of the gateway.

    ``redis`` is a URL or a ``redis.asyncio.Redis`` client (a client passed in
    is not closed by :meth:`close`). Keys are
    ``<key_prefix>budget:<period>:<scope>`` and
    ``<key_prefix>budget-reservations:<period>:<scope>`` with the period as
    ``day:2025-03-14``, ``month:2025-03`` or ``total``. Day and month keys
    expire a day after their period ends; total keys never expire.
    ``clock`` gives the time that picks the period and expires reservations.

    NOTE: the keys of one call may hash to different Redis Cluster slots;
    on a cluster, wrap the prefix in a hash tag (``{keelway}:``).
    """

    def __init__(
        self,
        redis: str | Redis,
        ledger: SpentReader | None = None,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        clock: Clock = time.time,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self._client, self._owns_client = connect(redis, max_connections)
        self._ledger = ledger
        self._prefix = key_prefix
        self._clock = clock
        self._reservation_ttl = reservation_ttl
        self._reserve = self._client.register_script(_RESERVE)
        self._settle = self._client.register_script(_SETTLE)
        self._seed_script = self._client.register_script(_SEED)
        self._usage = self._client.register_script(_USAGE)

    async def reserve(
        self, rules: Sequence[BudgetRule], amount_usd: Decimal
    ) -> Reservation:
        """Reserve ``amount_usd`` against every rule, or raise BudgetExceeded."""
        amount = usd_to_nano(amount_usd)
        now = self._clock()
        charges = charges_at(merge_budget_rules(rules), now)
        reservation = Reservation(
            tuple(c.rule for c in charges),
            tuple(c.period_start for c in charges),
            amount,
        )
        if not charges:
            return reservation
        until = to_micros(now + self._reservation_ttl)
        args: list[str | int] = [to_micros(now), amount, _member(reservation), until]
        for charge in charges:
            args += [_limit(charge.rule.hard_nano), _expiry(charge)]
        keys = self._keys(charges)
        for _ in range(_SEED_ATTEMPTS):
            reply = await run_script(self._reserve, keys, args, "budget reservation")
            status = [as_int(value) for value in reply]
            if status[0] == 1:
                return reservation
            if status[0] == 0:
                charge = charges[status[1] - 1]
                raise BudgetExceeded(
                    charge.rule,
                    charge.period_start,
                    spent_nano=status[2],
                    reserved_nano=status[3],
                    requested_nano=amount,
                )
            await self._seed([charges[i - 1] for i in status[1:]])
        raise LimitsUnavailable(
            "budget reservation failed: Redis dropped the budget accounts "
            f"{_scopes(charges)} each time they were seeded"
        )

    async def settle(
        self, reservation: Reservation, actual_usd: Decimal | None
    ) -> list[SoftLimitCrossed]:
        """Release the reservation and add the real cost; return soft limits reached.

        If Redis fails, the reservation stays open so the call can be repeated.
        """
        actual = -1 if actual_usd is None else usd_to_nano(actual_usd)
        charges = [
            Charge(rule, start)
            for rule, start in zip(
                reservation.rules, reservation.period_starts, strict=True
            )
        ]
        args: list[str | int] = [_member(reservation), reservation.amount_nano, actual]
        args += [_limit(charge.rule.soft_nano) for charge in charges]
        reservation.close()
        if not charges:
            return []
        try:
            reply = await run_script(
                self._settle, self._keys(charges), args, "budget settlement"
            )
        except LimitsUnavailable:
            reservation.closed = False
            raise
        values = [as_int(value) for value in reply]
        crossed = []
        for index, spent in zip(values[::2], values[1::2], strict=True):
            charge = charges[index - 1]
            soft = charge.rule.soft_nano
            assert soft is not None
            crossed.append(
                SoftLimitCrossed(
                    charge.rule.scope,
                    charge.rule.period,
                    charge.period_start,
                    nano_to_usd(soft),
                    nano_to_usd(spent),
                )
            )
        return crossed

    async def release(self, reservation: Reservation) -> None:
        """Release the reservation of a call that failed without cost."""
        await self.settle(reservation, None)

    async def usage(self, rule: BudgetRule) -> BudgetUsage:
        """Return the spent and reserved USD of the rule's current period."""
        now = self._clock()
        charge = charges_at([rule], now)[0]
        for _ in range(_SEED_ATTEMPTS):
            reply = await run_script(
                self._usage, self._keys([charge]), [to_micros(now)], "budget read"
            )
            exists, spent, reserved = (as_int(value) for value in reply)
            if exists:
                return BudgetUsage(
                    rule, charge.period_start, nano_to_usd(spent), nano_to_usd(reserved)
                )
            await self._seed([charge])
        raise LimitsUnavailable(
            f"budget read failed: Redis dropped the budget account of {rule.scope} "
            "each time it was seeded"
        )

    async def close(self) -> None:
        """Close the Redis client if these budgets created it."""
        if self._owns_client:
            await self._client.aclose()

    async def _seed(self, charges: list[Charge]) -> None:
        """Create missing accounts from the ledger; accounts that exist win."""
        args: list[str | int] = []
        for charge in charges:
            spent = await read_spent(self._ledger, charge)
            alerted = initial_alerted(spent, charge.rule.soft_nano)
            args += [spent, alerted, _expiry(charge)]
        keys = [self._account_key(charge) for charge in charges]
        await run_script(self._seed_script, keys, args, "budget seeding")

    def _keys(self, charges: list[Charge]) -> list[str]:
        keys: list[str] = []
        for charge in charges:
            keys += [self._account_key(charge), self._reservations_key(charge)]
        return keys

    def _account_key(self, charge: Charge) -> str:
        return f"{self._prefix}budget:{charge.label}:{charge.rule.scope}"

    def _reservations_key(self, charge: Charge) -> str:
        return f"{self._prefix}budget-reservations:{charge.label}:{charge.rule.scope}"


def _member(reservation: Reservation) -> str:
    return f"{reservation.id}:{reservation.amount_nano}"


def _limit(value: int | None) -> int:
    return -1 if value is None else value


def _expiry(charge: Charge) -> int:
    expires = charge.expires_at()
    return 0 if expires is None else int(expires.timestamp())


def _scopes(charges: list[Charge]) -> str:
    return ", ".join(sorted({charge.rule.scope for charge in charges}))
