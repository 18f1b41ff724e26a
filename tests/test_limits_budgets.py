"""Budgets in memory and in Redis: atomic reservations, soft limits, the ledger."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
import redis

from keelway.limits import (
    BudgetExceeded,
    BudgetRule,
    Budgets,
    LedgerEntry,
    LedgerStore,
    MemoryBudgets,
    RedisBudgets,
    ledger_entries,
    nano_to_usd,
    period_start,
    usd_to_nano,
)
from keelway.store.database import Database, open_database

REDIS_URL = os.environ.get("KEELWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T = TypeVar("T")
# Noon UTC on a fixed day, so day and month periods are known to the test.
NOON = datetime(2031, 5, 17, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when a test moves it."""

    def __init__(self, now: datetime = NOON) -> None:
        self.now = now.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"keelway-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.close()


@pytest.fixture
def ledger(database: Database) -> LedgerStore:
    return LedgerStore(database)


def scope(name: str) -> str:
    """Return a scope no other test uses, since the ledger is shared."""
    return f"{name}:{uuid.uuid4().hex[:8]}"


class Backends:
    """Builds budgets of one backend and runs a scenario on one event loop.

    Budgets built by one ``make`` call and the next share Redis but not
    memory, like two processes, or one process before and after a restart.
    """

    def __init__(self, backend: str, prefix: str, ledger: LedgerStore) -> None:
        self.backend = backend
        self.prefix = prefix
        self.ledger = ledger
        self.built: list[Budgets] = []

    def make(
        self,
        clock: Callable[[], float] | None = None,
        reservation_ttl: float = 900.0,
    ) -> Budgets:
        budgets: Budgets
        clock = clock or FakeClock()
        if self.backend == "memory":
            budgets = MemoryBudgets(
                self.ledger, clock=clock, reservation_ttl=reservation_ttl
            )
        else:
            budgets = RedisBudgets(
                REDIS_URL,
                self.ledger,
                key_prefix=self.prefix,
                clock=clock,
                reservation_ttl=reservation_ttl,
            )
        self.built.append(budgets)
        return budgets

    def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        async def main() -> None:
            try:
                await scenario()
            finally:
                for budgets in self.built:
                    await budgets.close()
                self.built.clear()

        asyncio.run(main())


@pytest.fixture(params=["memory", "redis"])
def backends(
    request: pytest.FixtureRequest, redis_prefix: str, ledger: LedgerStore
) -> Backends:
    return Backends(request.param, redis_prefix, ledger)


def usd(text: str) -> Decimal:
    return Decimal(text)


def test_concurrent_cycles_never_overshoot(backends: Backends) -> None:
    hard, estimate = usd("0.05"), usd("0.003")
    rule = BudgetRule(scope("key"), "day", hard_limit_usd=hard)

    async def scenario() -> None:
        budgets = backends.make()

        async def cycle(index: int) -> Decimal:
            try:
                reservation = await budgets.reserve([rule], estimate)
            except BudgetExceeded:
                return Decimal(0)
            await asyncio.sleep(0)
            # Real costs vary between a third of the estimate and all of it.
            actual = estimate * (1 + index % 3) / 3
            actual = actual.quantize(Decimal("1e-9"))
            await budgets.settle(reservation, actual)
            return actual

        charged = await asyncio.gather(*(cycle(i) for i in range(100)))
        usage = await budgets.usage(rule)
        assert usage.spent_usd <= hard + estimate
        assert usage.spent_usd == sum(charged)
        assert usage.reserved_usd == 0
        # While every request held its reservation, 16 fit into the budget.
        assert sum(1 for c in charged if c) >= 16

    backends.run(scenario)


def test_concurrent_reservations_fit_exactly(backends: Backends) -> None:
    rule = BudgetRule(scope("team"), "month", hard_limit_usd=usd("0.05"))

    async def scenario() -> None:
        budgets = backends.make()

        async def hold() -> bool:
            try:
                await budgets.reserve([rule], usd("0.003"))
            except BudgetExceeded:
                return False
            return True

        held = await asyncio.gather(*(hold() for _ in range(100)))
        assert sum(held) == 16
        assert (await budgets.usage(rule)).reserved_usd == usd("0.048")

    backends.run(scenario)


def test_settle_releases_reservation(backends: Backends) -> None:
    rule = BudgetRule(scope("key"), "day", hard_limit_usd=usd("0.05"))

    async def scenario() -> None:
        budgets = backends.make()
        first = await budgets.reserve([rule], usd("0.04"))
        with pytest.raises(BudgetExceeded) as caught:
            await budgets.reserve([rule], usd("0.02"))
        error = caught.value
        assert error.scope == rule.scope
        assert error.period == "day"
        assert error.limit == usd("0.05")
        assert error.spent == 0
        assert error.reserved == usd("0.04")
        assert error.requested == usd("0.02")
        assert error.resets_at == datetime(2031, 5, 18, tzinfo=UTC)
        assert "hard limit of $0.05" in error.message
        assert "reserved $0.04" in error.message
        await budgets.settle(first, usd("0.01"))
        await budgets.reserve([rule], usd("0.02"))
        usage = await budgets.usage(rule)
        assert usage.spent_usd == usd("0.01")
        assert usage.reserved_usd == usd("0.02")
        assert usage.remaining_usd == usd("0.02")

    backends.run(scenario)


def test_release_and_unknown_cost_add_nothing(backends: Backends) -> None:
    rule = BudgetRule(scope("key"), "total", hard_limit_usd=usd("1"))

    async def scenario() -> None:
        budgets = backends.make()
        failed = await budgets.reserve([rule], usd("0.5"))
        await budgets.release(failed)
        unknown = await budgets.reserve([rule], usd("0.5"))
        assert await budgets.settle(unknown, None) == []
        usage = await budgets.usage(rule)
        assert usage.spent_usd == 0
        assert usage.reserved_usd == 0
        with pytest.raises(ValueError, match="already settled or released"):
            await budgets.release(failed)

    backends.run(scenario)


def test_no_rules_reserve_nothing(backends: Backends) -> None:
    async def scenario() -> None:
        budgets = backends.make()
        reservation = await budgets.reserve([], usd("1"))
        assert reservation.rules == ()
        assert await budgets.settle(reservation, usd("1")) == []

    backends.run(scenario)


def test_reserve_is_atomic_across_rules(backends: Backends) -> None:
    team = BudgetRule(scope("team"), "month", hard_limit_usd=usd("1"))
    key = BudgetRule(scope("key"), "day", hard_limit_usd=usd("0.01"))

    async def scenario() -> None:
        budgets = backends.make()
        with pytest.raises(BudgetExceeded) as caught:
            await budgets.reserve([team, key], usd("0.02"))
        assert caught.value.scope == key.scope
        assert (await budgets.usage(team)).reserved_usd == 0

    backends.run(scenario)


def test_soft_limit_crossed_once(backends: Backends) -> None:
    rule = BudgetRule(scope("user"), "day", soft_limit_usd=usd("0.01"))

    async def scenario() -> None:
        budgets = backends.make()
        reports = []
        for _ in range(4):
            reservation = await budgets.reserve([rule], usd("0.006"))
            reports.append(await budgets.settle(reservation, usd("0.006")))
        assert [len(r) for r in reports] == [0, 1, 0, 0]
        crossed = reports[1][0]
        assert crossed.scope == rule.scope
        assert crossed.period == "day"
        assert crossed.period_start == datetime(2031, 5, 17, tzinfo=UTC)
        assert crossed.soft_limit_usd == usd("0.01")
        assert crossed.spent_usd == usd("0.012")

    backends.run(scenario)


def test_soft_limit_crossed_again_next_period(backends: Backends) -> None:
    rule = BudgetRule(scope("user"), "day", soft_limit_usd=usd("0.01"))

    async def scenario() -> None:
        clock = FakeClock()
        budgets = backends.make(clock)
        reservation = await budgets.reserve([rule], usd("0.02"))
        assert len(await budgets.settle(reservation, usd("0.02"))) == 1
        clock.advance(24 * 3600)
        reservation = await budgets.reserve([rule], usd("0.02"))
        assert len(await budgets.settle(reservation, usd("0.02"))) == 1

    backends.run(scenario)


def test_fractions_of_a_cent_stay_exact(backends: Backends) -> None:
    rule = BudgetRule(scope("key"), "month", hard_limit_usd=usd("0.001234"))

    async def scenario() -> None:
        budgets = backends.make()
        for _ in range(1000):
            reservation = await budgets.reserve([rule], usd("0.000001234"))
            await budgets.settle(reservation, usd("0.000001234"))
        usage = await budgets.usage(rule)
        assert usage.spent_usd == usd("0.001234")
        # The budget is used up to the last nano-dollar.
        with pytest.raises(BudgetExceeded):
            await budgets.reserve([rule], usd("0.000000001"))

    backends.run(scenario)


def test_period_rolls_over_at_midnight_utc(backends: Backends) -> None:
    rule = BudgetRule(scope("key"), "day", hard_limit_usd=usd("0.01"))

    async def scenario() -> None:
        clock = FakeClock(datetime(2031, 5, 17, 23, 59, 59, tzinfo=UTC))
        budgets = backends.make(clock)
        reservation = await budgets.reserve([rule], usd("0.01"))
        await budgets.settle(reservation, usd("0.01"))
        with pytest.raises(BudgetExceeded):
            await budgets.reserve([rule], usd("0.01"))
        clock.advance(1)
        await budgets.reserve([rule], usd("0.01"))

    backends.run(scenario)


def test_expired_reservation_stops_holding(backends: Backends) -> None:
    rule = BudgetRule(scope("key"), "day", hard_limit_usd=usd("0.05"))

    async def scenario() -> None:
        clock = FakeClock()
        budgets = backends.make(clock, reservation_ttl=60)
        abandoned = await budgets.reserve([rule], usd("0.04"))
        clock.advance(61)
        await budgets.reserve([rule], usd("0.04"))
        # A late settlement still charges the cost but frees nothing twice.
        await budgets.settle(abandoned, usd("0.01"))
        usage = await budgets.usage(rule)
        assert usage.spent_usd == usd("0.01")
        assert usage.reserved_usd == usd("0.04")

    backends.run(scenario)


def test_restart_seeds_spending_from_ledger(
    backends: Backends, ledger: LedgerStore
) -> None:
    rule = BudgetRule(
        scope("team"), "month", hard_limit_usd=usd("0.05"), soft_limit_usd=usd("0.03")
    )

    async def scenario() -> None:
        before = backends.make()
        reservation = await before.reserve([rule], usd("0.04"))
        await before.settle(reservation, usd("0.04"))
        # The gateway writes the cost to the ledger with the request's trace.
        ledger.insert(ledger_entries(reservation, usd("0.04"), uuid.uuid4().hex))
        await before.close()
        if backends.backend == "redis":
            _delete_keys(backends.prefix)

        after = backends.make()
        usage = await after.usage(rule)
        assert usage.spent_usd == usd("0.04")
        with pytest.raises(BudgetExceeded):
            await after.reserve([rule], usd("0.02"))
        # The soft limit was reached before the restart; it is not reported again.
        reservation = await after.reserve([rule], usd("0.01"))
        assert await after.settle(reservation, usd("0.01")) == []

    backends.run(scenario)


def _delete_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def test_redis_keeps_its_count_over_the_ledger(
    redis_prefix: str, ledger: LedgerStore
) -> None:
    rule = BudgetRule(scope("key"), "day", hard_limit_usd=usd("1"))
    start = period_start("day", NOON)
    # The ledger lags behind Redis, so it contains less than Redis counted.
    ledger.insert([LedgerEntry("t" * 32, rule.scope, "day", start, 10)])

    async def scenario() -> None:
        first = RedisBudgets(
            REDIS_URL, ledger, key_prefix=redis_prefix, clock=FakeClock()
        )
        reservation = await first.reserve([rule], usd("0.5"))
        await first.settle(reservation, usd("0.5"))
        await first.close()
        second = RedisBudgets(
            REDIS_URL, ledger, key_prefix=redis_prefix, clock=FakeClock()
        )
        usage = await second.usage(rule)
        await second.close()
        # Seeded once from the ledger (10 nano-USD), then counted in Redis.
        assert usage.spent_usd == usd("0.500000010")

    run(scenario())


def test_ledger_entries_per_rule(ledger: LedgerStore) -> None:
    key = BudgetRule(scope("key"), "day", hard_limit_usd=usd("1"))
    team = BudgetRule(scope("team"), "month", hard_limit_usd=usd("10"))
    total = BudgetRule(scope("user"), "total")

    async def scenario() -> None:
        budgets = MemoryBudgets(clock=FakeClock())
        reservation = await budgets.reserve([key, team, total, key], usd("0.1"))
        entries = ledger_entries(reservation, usd("0.0123456789"), "a" * 32)
        assert ledger_entries(reservation, None, "a" * 32) == []
        assert [(e.scope, e.period) for e in entries] == [
            (key.scope, "day"),
            (team.scope, "month"),
            (total.scope, "total"),
        ]
        assert [e.period_start for e in entries] == [
            datetime(2031, 5, 17, tzinfo=UTC),
            datetime(2031, 5, 1, tzinfo=UTC),
            datetime(1970, 1, 1, tzinfo=UTC),
        ]
        # Rounded half up to the nano-dollar.
        assert {e.amount_nano_usd for e in entries} == {12_345_679}
        ledger.insert(entries)

    run(scenario())
    assert ledger.spent(key.scope, "day", datetime(2031, 5, 17, tzinfo=UTC)) == (
        12_345_679
    )
    assert ledger.spent(key.scope, "day", datetime(2031, 5, 16, tzinfo=UTC)) == 0
    assert ledger.spent(key.scope, "month", datetime(2031, 5, 1, tzinfo=UTC)) == 0
    assert ledger.spent(total.scope, "total", datetime(1970, 1, 1, tzinfo=UTC)) == (
        12_345_679
    )


def test_ledger_add_joins_callers_transaction(
    database: Database, ledger: LedgerStore
) -> None:
    name = scope("key")
    start = datetime(2031, 5, 17, tzinfo=UTC)
    entry = LedgerEntry("b" * 32, name, "day", start, 5)
    with database.session() as session:
        session.begin()
        LedgerStore.add(session, [entry])
        session.rollback()
    assert ledger.spent(name, "day", start) == 0
    with database.session() as session, session.begin():
        LedgerStore.add(session, [entry])
    assert ledger.spent(name, "day", start) == 5


def test_redis_day_keys_expire_total_keys_do_not(redis_prefix: str) -> None:
    day = BudgetRule(scope("key"), "day", hard_limit_usd=usd("1"))
    total = BudgetRule(scope("team"), "total", hard_limit_usd=usd("1"))

    async def scenario() -> None:
        budgets = RedisBudgets(REDIS_URL, key_prefix=redis_prefix)
        await budgets.reserve([day, total], usd("0.1"))
        await budgets.close()

    run(scenario())
    client = redis.Redis.from_url(REDIS_URL)
    ttls = {
        key.decode(): client.ttl(key)
        for key in client.scan_iter(match=f"{redis_prefix}budget*")
    }
    client.close()
    day_ttls = [ttl for key, ttl in ttls.items() if ":day:" in key]
    total_ttls = [ttl for key, ttl in ttls.items() if ":total:" in key]
    assert len(day_ttls) == 2
    assert all(0 < ttl <= 2 * 24 * 3600 for ttl in day_ttls)
    assert total_ttls == [-1, -1]


def test_redis_reserve_is_one_round_trip(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = [
        BudgetRule(scope("key"), "day", hard_limit_usd=usd("1")),
        BudgetRule(scope("team"), "month", soft_limit_usd=usd("1")),
    ]

    async def scenario() -> list[str]:
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        budgets = RedisBudgets(client, key_prefix=redis_prefix)
        # The first call seeds the accounts and loads the scripts.
        await budgets.settle(await budgets.reserve(rules, usd("0.1")), usd("0.1"))
        commands: list[str] = []
        original = client.execute_command

        async def counting(*args: Any, **options: Any) -> Any:
            commands.append(str(args[0]))
            return await original(*args, **options)

        monkeypatch.setattr(client, "execute_command", counting)
        reservation = await budgets.reserve(rules, usd("0.1"))
        await budgets.settle(reservation, usd("0.1"))
        await budgets.close()
        await client.aclose()
        return commands

    assert run(scenario()) == ["EVALSHA", "EVALSHA"]


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="soft limit 2 USD of key:x exceeds"):
        BudgetRule("key:x", "day", hard_limit_usd=usd("1"), soft_limit_usd=usd("2"))
    with pytest.raises(ValueError, match="must be one of day, month, total"):
        BudgetRule("key:x", "week", hard_limit_usd=usd("1"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not be negative"):
        BudgetRule("key:x", "day", hard_limit_usd=usd("-1"))


def test_money_conversion() -> None:
    assert usd_to_nano(usd("0.000000001")) == 1
    assert usd_to_nano(usd("0.1")) + usd_to_nano(usd("0.2")) == usd_to_nano(usd("0.3"))
    assert nano_to_usd(1_234_567_891) == usd("1.234567891")
    with pytest.raises(TypeError, match="Decimal"):
        usd_to_nano(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exceeds the maximum"):
        usd_to_nano(usd("1e9"))


def test_period_start_boundaries() -> None:
    moment = datetime(2031, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert period_start("day", moment) == datetime(2031, 12, 31, tzinfo=UTC)
    assert period_start("month", moment) == datetime(2031, 12, 1, tzinfo=UTC)
    later = moment + timedelta(seconds=1)
    assert period_start("month", later) == datetime(2032, 1, 1, tzinfo=UTC)
    assert period_start("total", later) == datetime(1970, 1, 1, tzinfo=UTC)
