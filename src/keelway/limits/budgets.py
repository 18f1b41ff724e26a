"""Budgets: the rule, the reservation, the interface and its errors.

A budget caps the USD spent by one scope in a period (the calendar UTC day,
the calendar UTC month, or all time). A request first reserves its
estimated cost against every budget that applies. Once the real cost is
known, the request settles, which releases the reservation and adds the cost.
Reserving checks ``spent + reserved + amount <= hard limit`` for every rule
at once, so concurrent requests cannot overspend a hard limit together
unless their real costs exceed their reservations.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from keelway.limits.errors import LimitsError
from keelway.limits.money import format_usd, nano_to_usd, usd_to_nano
from keelway.limits.periods import PERIODS, Period, describe_period, period_end


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """A USD budget of one scope per period.

    A request that would take spending past ``hard_limit_usd`` is rejected.
    Reaching ``soft_limit_usd`` only reports a :class:`SoftLimitCrossed`.
    A rule without limits still records spending.
    """

    scope: str
    period: Period
    hard_limit_usd: Decimal | None = None
    soft_limit_usd: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.scope:
            raise ValueError("budget scope must not be empty")
        if self.period not in PERIODS:
            raise ValueError(
                f"budget period of {self.scope} must be one of {', '.join(PERIODS)}, "
                f"got {self.period!r}"
            )
        hard, soft = self.hard_nano, self.soft_nano
        if hard is not None and soft is not None and soft > hard:
            raise ValueError(
                f"soft limit {self.soft_limit_usd} USD of {self.scope} exceeds its "
                f"hard limit {self.hard_limit_usd} USD"
            )

    @property
    def hard_nano(self) -> int | None:
        """The hard limit in nano-USD."""
        return _nano_or_none(self.hard_limit_usd)

    @property
    def soft_nano(self) -> int | None:
        """The soft limit in nano-USD."""
        return _nano_or_none(self.soft_limit_usd)


def _nano_or_none(amount: Decimal | None) -> int | None:
    return None if amount is None else usd_to_nano(amount)


def merge_budget_rules(rules: Sequence[BudgetRule]) -> list[BudgetRule]:
    """Return one rule per scope and period, keeping the lower limits.

    A request is charged once per scope and period even when two rules name
    the same pair.
    """
    merged: dict[tuple[str, str], BudgetRule] = {}
    for rule in rules:
        key = (rule.scope, rule.period)
        seen = merged.get(key)
        if seen is None:
            merged[key] = rule
            continue
        merged[key] = BudgetRule(
            rule.scope,
            rule.period,
            _lower(seen.hard_limit_usd, rule.hard_limit_usd),
            _lower(seen.soft_limit_usd, rule.soft_limit_usd),
        )
    return list(merged.values())


def _lower(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@dataclass(slots=True, eq=False)
class Reservation:
    """Estimated cost held against budgets until it is settled or released.

    ``period_starts[i]`` is the period of ``rules[i]`` that the reservation
    and its final cost belong to, even if it settles after that period ends.
    A reservation not settled within the backend's reservation TTL expires
    and stops holding budget.
    """

    rules: tuple[BudgetRule, ...]
    period_starts: tuple[datetime, ...]
    amount_nano: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    closed: bool = False

    @property
    def amount_usd(self) -> Decimal:
        """The reserved amount in USD."""
        return nano_to_usd(self.amount_nano)

    def close(self) -> None:
        """Mark the reservation settled or released; raise if it already was."""
        if self.closed:
            raise ValueError(f"reservation {self.id} was already settled or released")
        self.closed = True


@dataclass(frozen=True, slots=True)
class SoftLimitCrossed:
    """Spending of a scope reached its soft limit in a period, reported once."""

    scope: str
    period: Period
    period_start: datetime
    soft_limit_usd: Decimal
    spent_usd: Decimal


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """Spent and reserved USD of one rule's current period."""

    rule: BudgetRule
    period_start: datetime
    spent_usd: Decimal
    reserved_usd: Decimal

    @property
    def remaining_usd(self) -> Decimal | None:
        """The USD left under the hard limit (never negative); None without one."""
        if self.rule.hard_limit_usd is None:
            return None
        left = self.rule.hard_limit_usd - self.spent_usd - self.reserved_usd
        return max(Decimal(0), left)


class BudgetExceeded(LimitsError):
    """A reservation would take a scope past its hard limit; nothing was reserved.

    ``limit``, ``spent``, ``reserved`` and ``requested`` are in USD;
    ``resets_at`` is the end of the period (None for a total budget).
    """

    def __init__(
        self,
        rule: BudgetRule,
        period_start: datetime,
        *,
        spent_nano: int,
        reserved_nano: int,
        requested_nano: int,
    ) -> None:
        assert rule.hard_nano is not None
        self.scope = rule.scope
        self.period: Period = rule.period
        self.period_start = period_start
        self.limit = nano_to_usd(rule.hard_nano)
        self.spent = nano_to_usd(spent_nano)
        self.reserved = nano_to_usd(reserved_nano)
        self.requested = nano_to_usd(requested_nano)
        self.resets_at = period_end(rule.period, period_start)
        self.message = (
            f"budget exceeded for {rule.scope} "
            f"({describe_period(rule.period, period_start)}): "
            f"spent {format_usd(spent_nano)} + reserved {format_usd(reserved_nano)} "
            f"+ this request's {format_usd(requested_nano)} would exceed the hard "
            f"limit of {format_usd(rule.hard_nano)}"
        )
        super().__init__(self.message)


class SpentReader(Protocol):
    """Source of a period's recorded spending, read when a backend has no count."""

    def spent(self, scope: str, period: Period, period_start: datetime) -> int:
        """Return the nano-USD spent by ``scope`` in the period starting then."""
        ...


class Budgets(Protocol):
    """Reserves, settles and releases USD against per-scope budgets."""

    async def reserve(
        self, rules: Sequence[BudgetRule], amount_usd: Decimal
    ) -> Reservation:
        """Reserve ``amount_usd`` against every rule's current period.

        Raises :class:`BudgetExceeded` and reserves nothing if, for any rule
        with a hard limit, spent + reserved + amount would exceed it.
        Raises LimitsUnavailable when the backend cannot be reached.
        """
        ...

    async def settle(
        self, reservation: Reservation, actual_usd: Decimal | None
    ) -> list[SoftLimitCrossed]:
        """Release the reservation and add the real cost (None: unknown, add nothing).

        Returns the soft limits that this cost reached, each reported once
        per scope and period.
        """
        ...

    async def release(self, reservation: Reservation) -> None:
        """Release the reservation of a call that failed without cost."""
        ...

    async def usage(self, rule: BudgetRule) -> BudgetUsage:
        """Return the spent and reserved USD of the rule's current period."""
        ...

    async def close(self) -> None:
        """Release the backend's connections."""
        ...
