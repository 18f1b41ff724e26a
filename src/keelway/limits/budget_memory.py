"""Budgets for one process, kept in memory and seeded from the ledger."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from keelway.limits.budget_accounts import (
    DEFAULT_RESERVATION_TTL,
    Charge,
    charges_at,
    initial_alerted,
    read_spent,
    soft_limit_crossed,
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
from keelway.limits.clock import Clock
from keelway.limits.errors import LimitsUnavailable
from keelway.limits.money import nano_to_usd, usd_to_nano

# Accounts of ended periods are dropped every this many calls.
_SWEEP_EVERY = 1024
# Seeding can race with close(); give up after this many rounds.
_SEED_ATTEMPTS = 3

AccountKey = tuple[str, str, datetime]


class _Account:
    """Spending of one scope in one period."""

    __slots__ = ("alerted", "expires_at", "reservations", "reserved", "spent")

    def __init__(self, spent: int, alerted: int, expires_at: datetime | None) -> None:
        self.spent = spent
        self.reserved = 0
        self.alerted = alerted
        self.expires_at = expires_at
        # Reservation id -> (nano-USD, expiry in epoch seconds).
        self.reservations: dict[str, tuple[int, float]] = {}

    def purge(self, now: float) -> None:
        """Drop reservations whose TTL has passed."""
        expired = [rid for rid, (_, ends) in self.reservations.items() if ends <= now]
        for rid in expired:
            self.reserved -= self.reservations.pop(rid)[0]


class MemoryBudgets:
    """Budgets within one process.

    Every check-and-update runs under a lock without awaiting, so concurrent
    tasks cannot overspend together. The first use of a scope's period reads
    its spending from ``ledger``, so a restart does not reset a budget.
    """

    def __init__(
        self,
        ledger: SpentReader | None = None,
        *,
        clock: Clock = time.time,
        reservation_ttl: float = DEFAULT_RESERVATION_TTL,
    ) -> None:
        self._ledger = ledger
        self._clock = clock
        self._reservation_ttl = reservation_ttl
        self._lock = threading.Lock()
        self._accounts: dict[AccountKey, _Account] = {}
        self._calls = 0

    async def reserve(
        self, rules: Sequence[BudgetRule], amount_usd: Decimal
    ) -> Reservation:
        """Reserve ``amount_usd`` against every rule, or raise BudgetExceeded."""
        amount = usd_to_nano(amount_usd)
        now = self._clock()
        charges = charges_at(merge_budget_rules(rules), now)
        for _ in range(_SEED_ATTEMPTS):
            await self._seed(charges)
            with self._lock:
                accounts = [self._accounts.get(c.key) for c in charges]
                if None in accounts:
                    continue
                return self._reserve(charges, _present(accounts), amount, now)
        raise LimitsUnavailable("budget accounts were dropped while being seeded")

    def _reserve(
        self, charges: list[Charge], accounts: list[_Account], amount: int, now: float
    ) -> Reservation:
        self._sweep(now)
        for charge, account in zip(charges, accounts, strict=True):
            account.purge(now)
            hard = charge.rule.hard_nano
            if hard is not None and account.spent + account.reserved + amount > hard:
                raise BudgetExceeded(
                    charge.rule,
                    charge.period_start,
                    spent_nano=account.spent,
                    reserved_nano=account.reserved,
                    requested_nano=amount,
                )
        reservation = Reservation(
            tuple(c.rule for c in charges),
            tuple(c.period_start for c in charges),
            amount,
        )
        expires = now + self._reservation_ttl
        for account in accounts:
            account.reservations[reservation.id] = (amount, expires)
            account.reserved += amount
        return reservation

    async def settle(
        self, reservation: Reservation, actual_usd: Decimal | None
    ) -> list[SoftLimitCrossed]:
        """Release the reservation and add the real cost; return soft limits reached."""
        actual = None if actual_usd is None else usd_to_nano(actual_usd)
        reservation.close()
        crossed: list[SoftLimitCrossed] = []
        with self._lock:
            periods = zip(reservation.rules, reservation.period_starts, strict=True)
            for rule, start in periods:
                account = self._accounts.get(Charge(rule, start).key)
                if account is None:
                    continue
                released = account.reservations.pop(reservation.id, None)
                if released is not None:
                    account.reserved -= released[0]
                if actual is None:
                    continue
                account.spent += actual
                soft = rule.soft_nano
                if soft is not None and soft_limit_crossed(
                    account.spent, soft, account.alerted
                ):
                    account.alerted = soft
                    crossed.append(
                        SoftLimitCrossed(
                            rule.scope,
                            rule.period,
                            start,
                            nano_to_usd(soft),
                            nano_to_usd(account.spent),
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
            await self._seed([charge])
            with self._lock:
                account = self._accounts.get(charge.key)
                if account is None:
                    continue
                account.purge(now)
                return BudgetUsage(
                    rule,
                    charge.period_start,
                    nano_to_usd(account.spent),
                    nano_to_usd(account.reserved),
                )
        raise LimitsUnavailable("budget accounts were dropped while being seeded")

    async def close(self) -> None:
        """Forget every account."""
        with self._lock:
            self._accounts.clear()

    async def _seed(self, charges: list[Charge]) -> None:
        """Create the missing accounts of ``charges`` from the ledger."""
        for charge in charges:
            if charge.key in self._accounts:
                continue
            spent = await read_spent(self._ledger, charge)
            with self._lock:
                if charge.key not in self._accounts:
                    alerted = initial_alerted(spent, charge.rule.soft_nano)
                    self._accounts[charge.key] = _Account(
                        spent, alerted, charge.expires_at()
                    )

    def _sweep(self, now: float) -> None:
        self._calls += 1
        if self._calls % _SWEEP_EVERY:
            return
        moment = datetime.fromtimestamp(now, UTC)
        ended = [
            key
            for key, account in self._accounts.items()
            if account.expires_at is not None and account.expires_at <= moment
        ]
        for key in ended:
            del self._accounts[key]


def _present(accounts: list[_Account | None]) -> list[_Account]:
    return [account for account in accounts if account is not None]
