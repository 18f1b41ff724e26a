"""Helpers of the memory and Redis budget backends: periods, seeding, soft limits.

An account is the spending of one scope in one period: spent and reserved
nano-USD, live reservations, and the highest soft limit already reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from keelway.limits.budgets import BudgetRule, SpentReader
from keelway.limits.errors import LimitsUnavailable
from keelway.limits.periods import period_end, period_label, period_start
from keelway.store.database import StoreError

# Seconds a reservation holds budget if it is neither settled nor released,
# for example because its process died. Longer than any request should run.
DEFAULT_RESERVATION_TTL = 900.0

# How long an account outlives its period, so that late settlements of
# reservations made in the period still find it.
ACCOUNT_GRACE = timedelta(days=1)

# The "highest soft limit reported" of an account that reported none.
NOT_ALERTED = -1


@dataclass(frozen=True, slots=True)
class Charge:
    """One rule of a call together with the period it is charged to."""

    rule: BudgetRule
    period_start: datetime

    @property
    def key(self) -> tuple[str, str, datetime]:
        """The account this charge goes to: scope, period and period start."""
        return (self.rule.scope, self.rule.period, self.period_start)

    @property
    def label(self) -> str:
        """The period as text: ``day:2025-03-14``, ``month:2025-03`` or ``total``."""
        name = period_label(self.rule.period, self.period_start)
        return name if self.rule.period == "total" else f"{self.rule.period}:{name}"

    def expires_at(self) -> datetime | None:
        """Return when the account may be forgotten; None for a total budget."""
        end = period_end(self.rule.period, self.period_start)
        return None if end is None else end + ACCOUNT_GRACE


def charges_at(rules: Sequence[BudgetRule], now: float) -> list[Charge]:
    """Return each rule with the start of its period at ``now`` (epoch seconds)."""
    moment = datetime.fromtimestamp(now, UTC)
    return [Charge(rule, period_start(rule.period, moment)) for rule in rules]


async def read_spent(reader: SpentReader | None, charge: Charge) -> int:
    """Return the nano-USD the ledger holds for a charge's account (0 without one).

    Raises LimitsUnavailable when the ledger cannot be read.
    """
    if reader is None:
        return 0
    rule = charge.rule
    try:
        return await asyncio.to_thread(
            reader.spent, rule.scope, rule.period, charge.period_start
        )
    except StoreError as error:
        raise LimitsUnavailable(
            f"cannot restore the {charge.label} budget of {rule.scope} from the "
            f"ledger: {error}"
        ) from None


def initial_alerted(spent: int, soft: int | None) -> int:
    """Return the soft limit to treat as reported for an account seeded with ``spent``.

    A restart must not report again a soft limit that was already reached.
    """
    return soft if soft is not None and spent >= soft else NOT_ALERTED


def soft_limit_crossed(spent: int, soft: int | None, alerted: int) -> bool:
    """Return whether ``spent`` reached a soft limit higher than any reported yet."""
    return soft is not None and spent >= soft and soft > alerted
