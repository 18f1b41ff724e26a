"""Building the rate limiter and budgets that a config selects."""

from __future__ import annotations

from keelway.limits.budget_memory import MemoryBudgets
from keelway.limits.budget_redis import RedisBudgets
from keelway.limits.budgets import Budgets
from keelway.limits.config import LimitsConfig
from keelway.limits.ledger import LedgerStore
from keelway.limits.rate import RateLimiter
from keelway.limits.rate_memory import MemoryRateLimiter
from keelway.limits.rate_redis import RedisRateLimiter
from keelway.store.database import Database


def build_limiters(
    config: LimitsConfig, database: Database | None
) -> tuple[RateLimiter, Budgets]:
    """Return a rate limiter and budgets in Redis if configured, else in memory.

    Budgets restore each period's spending from the ledger in ``database``
    (None: start every budget at zero). Nothing connects until first use.
    """
    ledger = LedgerStore(database) if database is not None else None
    ttl = config.reservation_ttl_seconds
    if config.redis_url:
        return (
            RedisRateLimiter(config.redis_url, key_prefix=config.key_prefix),
            RedisBudgets(
                config.redis_url,
                ledger,
                key_prefix=config.key_prefix,
                reservation_ttl=ttl,
            ),
        )
    return MemoryRateLimiter(), MemoryBudgets(ledger, reservation_ttl=ttl)
