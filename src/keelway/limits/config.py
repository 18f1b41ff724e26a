"""Configuration of rate limits and budgets for teams and users.

The gateway's config file has it under ``limits``::

    limits:
      redis_url: ${REDIS_URL}      # omit to keep limits in process
      teams:
        search: {rpm: 600, tpm: 200000, budget: {hard_usd: 500, period: month}}
      users: {rpm: 60, budget: {hard_usd: 5, soft_usd: 4, period: day}}

Per-key limits live on the key itself (``keelway keys create --rpm ...``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from keelway.limits.budget_accounts import DEFAULT_RESERVATION_TTL
from keelway.limits.budgets import BudgetRule
from keelway.limits.money import MAX_NANO_USD, NANO_PER_USD
from keelway.limits.periods import Period
from keelway.limits.rate import RateLimitRule
from keelway.limits.redis_support import DEFAULT_KEY_PREFIX

MAX_USD = Decimal(MAX_NANO_USD // NANO_PER_USD)
_USD = Field(None, gt=0, le=MAX_USD, decimal_places=9)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BudgetLimits(_Strict):
    """A USD budget per calendar UTC day, calendar UTC month, or in total.

    ``hard_usd`` rejects requests that would spend past it; ``soft_usd``
    only reports when spending reaches it. At least one is required.
    """

    period: Period = "month"
    hard_usd: Decimal | None = _USD
    soft_usd: Decimal | None = _USD

    @model_validator(mode="after")
    def _check_limits(self) -> Self:
        if self.hard_usd is None and self.soft_usd is None:
            raise ValueError("a budget needs hard_usd, soft_usd or both")
        if (
            self.hard_usd is not None
            and self.soft_usd is not None
            and self.soft_usd > self.hard_usd
        ):
            raise ValueError(
                f"soft_usd {self.soft_usd} must not exceed hard_usd {self.hard_usd}"
            )
        return self

    def rule(self, scope: str) -> BudgetRule:
        """Return this budget as a rule for ``scope``."""
        return BudgetRule(scope, self.period, self.hard_usd, self.soft_usd)


class ScopeLimits(_Strict):
    """Requests and tokens per minute and a budget; None means unlimited."""

    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    budget: BudgetLimits | None = None

    def rate_rule(self, scope: str) -> RateLimitRule | None:
        """Return the rate limit rule for ``scope``, or None without rpm and tpm."""
        if self.rpm is None and self.tpm is None:
            return None
        return RateLimitRule(scope, self.rpm, self.tpm)

    def budget_rule(self, scope: str) -> BudgetRule | None:
        """Return the budget rule for ``scope``, or None without a budget."""
        return None if self.budget is None else self.budget.rule(scope)


class LimitsConfig(_Strict):
    """The limits backend and the limits of teams and users.

    Without ``redis_url`` the counts live in each process, so replicas do
    not share them. ``users`` applies to every user id on its own.
    """

    redis_url: str | None = None
    key_prefix: str = DEFAULT_KEY_PREFIX
    # Seconds an unsettled budget reservation stays reserved before it expires.
    reservation_ttl_seconds: float = Field(DEFAULT_RESERVATION_TTL, gt=0)
    teams: dict[str, ScopeLimits] = Field(default_factory=dict)
    users: ScopeLimits | None = None

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return value
