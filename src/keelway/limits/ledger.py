"""The durable budget ledger: what each request cost each budget it was charged to.

Budget backends keep spending in memory or Redis; the ledger is the record
they restore a period's spending from after a restart. The gateway writes a
request's entries in the same transaction as its trace, through
:meth:`LedgerStore.add`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from keelway.limits.budgets import Reservation
from keelway.limits.money import usd_to_nano
from keelway.limits.periods import Period
from keelway.store.database import Database, StoreError
from keelway.store.models import BudgetLedgerEntry


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """The cost of one request charged to one scope and period, in nano-USD."""

    trace_id: str
    scope: str
    period: Period
    period_start: datetime
    amount_nano_usd: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def ledger_entries(
    reservation: Reservation, actual_usd: Decimal | None, trace_id: str
) -> list[LedgerEntry]:
    """Return the ledger entries of a settled reservation, one per rule.

    An unknown cost (None) is charged nowhere and yields no entries.
    """
    if actual_usd is None:
        return []
    amount = usd_to_nano(actual_usd)
    periods = zip(reservation.rules, reservation.period_starts, strict=True)
    return [
        LedgerEntry(trace_id, rule.scope, rule.period, start, amount)
        for rule, start in periods
    ]


class LedgerStore:
    """Reads and writes the budget_ledger table."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def spent(self, scope: str, period: Period, period_start: datetime) -> int:
        """Return the nano-USD charged to ``scope`` in the period starting then.

        Raises StoreError when the store cannot be read.
        """
        query = select(func.coalesce(func.sum(BudgetLedgerEntry.amount_nano_usd), 0))
        query = query.where(
            BudgetLedgerEntry.scope == scope,
            BudgetLedgerEntry.period == period,
            BudgetLedgerEntry.period_start == period_start,
        )
        try:
            with self.database.session() as session:
                return int(session.scalar(query) or 0)
        except SQLAlchemyError as error:
            raise StoreError(
                f"cannot read the budget ledger of {scope}: {error.__class__.__name__}"
            ) from None

    def insert(self, entries: Iterable[LedgerEntry]) -> None:
        """Insert entries in a transaction of their own."""
        with self.database.session() as session, session.begin():
            self.add(session, entries)

    @staticmethod
    def add(session: Session, entries: Iterable[LedgerEntry]) -> None:
        """Add entries to ``session``, so that they commit with its transaction."""
        session.add_all(_rows(entries))


def _rows(entries: Iterable[LedgerEntry]) -> Sequence[BudgetLedgerEntry]:
    return [
        BudgetLedgerEntry(
            id=entry.id,
            trace_id=entry.trace_id,
            scope=entry.scope,
            period=entry.period,
            period_start=entry.period_start,
            amount_nano_usd=entry.amount_nano_usd,
            created_at=entry.created_at,
        )
        for entry in entries
    ]
