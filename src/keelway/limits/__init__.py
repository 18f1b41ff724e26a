"""Rate limits and budgets, kept in memory or in Redis.

Rate limits count requests and tokens per scope over a sliding minute;
budgets hold and charge USD per scope and period. Both check every rule of
a request atomically: a request counts against all of them or none.
:func:`build_limiters` picks the backend from :class:`LimitsConfig`.
"""

from keelway.limits.budget_memory import MemoryBudgets
from keelway.limits.budget_redis import RedisBudgets
from keelway.limits.budgets import (
    BudgetExceeded,
    BudgetRule,
    Budgets,
    BudgetUsage,
    Reservation,
    SoftLimitCrossed,
    SpentReader,
)
from keelway.limits.config import BudgetLimits, LimitsConfig, ScopeLimits
from keelway.limits.durations import format_duration
from keelway.limits.errors import LimitsError, LimitsUnavailable
from keelway.limits.factory import build_limiters
from keelway.limits.ledger import LedgerEntry, LedgerStore, ledger_entries
from keelway.limits.money import nano_to_usd, usd_to_nano
from keelway.limits.periods import Period, period_start
from keelway.limits.rate import (
    LimitKind,
    RateLimiter,
    RateLimitExceeded,
    RateLimitRule,
    RateLimitStatus,
    RuleState,
)
from keelway.limits.rate_memory import MemoryRateLimiter
from keelway.limits.rate_redis import RedisRateLimiter
from keelway.limits.scopes import (
    RequestRules,
    deployment_scope,
    key_limits,
    key_scope,
    request_rules,
    team_scope,
    user_scope,
)

__all__ = [
    "BudgetExceeded",
    "BudgetLimits",
    "BudgetRule",
    "BudgetUsage",
    "Budgets",
    "LedgerEntry",
    "LedgerStore",
    "LimitKind",
    "LimitsConfig",
    "LimitsError",
    "LimitsUnavailable",
    "MemoryBudgets",
    "MemoryRateLimiter",
    "Period",
    "RateLimitExceeded",
    "RateLimitRule",
    "RateLimitStatus",
    "RateLimiter",
    "RedisBudgets",
    "RedisRateLimiter",
    "RequestRules",
    "Reservation",
    "RuleState",
    "ScopeLimits",
    "SoftLimitCrossed",
    "SpentReader",
    "build_limiters",
    "deployment_scope",
    "format_duration",
    "key_limits",
    "key_scope",
    "ledger_entries",
    "nano_to_usd",
    "period_start",
    "request_rules",
    "team_scope",
    "usd_to_nano",
    "user_scope",
]
