"""Limits configuration, the rules of a request and the backend factory."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from keelway.limits import (
    BudgetRule,
    LimitsConfig,
    MemoryBudgets,
    MemoryRateLimiter,
    RateLimitRule,
    RedisBudgets,
    RedisRateLimiter,
    build_limiters,
    request_rules,
)
from keelway.store.database import open_database
from keelway.store.keys import ApiKeyRecord

TINY = {"budget": {"soft_usd": "0.05", "period": "day"}}
CONFIG = {
    "redis_url": "redis://127.0.0.1:6379/0",
    "key_prefix": "kw:",
    "teams": {
        "search": {
            "rpm": 600,
            "tpm": 200000,
            "budget": {"hard_usd": 500, "soft_usd": 400.5, "period": "month"},
        },
        "tiny": TINY,
    },
    "users": {"rpm": 60, "budget": {"hard_usd": 5, "period": "day"}},
}


def _key(**limits: object) -> ApiKeyRecord:
    return ApiKeyRecord(
        id="k1",
        name="k",
        prefix="kw-abc",
        team="search",
        models=None,
        payloads=None,
        created_at=datetime(2031, 1, 1, tzinfo=UTC),
        revoked_at=None,
        **limits,  # type: ignore[arg-type]
    )


def test_config_parses_teams_and_users() -> None:
    config = LimitsConfig.model_validate(CONFIG)
    search = config.teams["search"]
    assert search.rpm == 600
    assert search.budget is not None
    assert search.budget.soft_usd == Decimal("400.5")
    assert config.users is not None
    assert config.users.budget is not None
    assert config.users.budget.period == "day"


def test_config_defaults_keep_limits_in_memory() -> None:
    config = LimitsConfig()
    assert config.redis_url is None
    assert config.key_prefix == "keelway:"
    assert config.teams == {}
    assert config.users is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"teams": {"t": {"rpm": 0}}}, "greater than or equal to 1"),
        ({"teams": {"t": {"budget": {"period": "day"}}}}, "needs hard_usd, soft_usd"),
        (
            {"users": {"budget": {"hard_usd": 1, "soft_usd": 2}}},
            "soft_usd 2 must not exceed hard_usd 1",
        ),
        ({"users": {"budget": {"hard_usd": -1}}}, "greater than 0"),
        ({"users": {"budget": {"hard_usd": 1, "period": "week"}}}, "'day'"),
        ({"redis_url": "http://127.0.0.1"}, "redis://"),
        ({"teams": {"t": {"rps": 5}}}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_invalid_limits(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LimitsConfig.model_validate(data)


def test_config_is_frozen() -> None:
    config = LimitsConfig()
    with pytest.raises(ValidationError):
        config.key_prefix = "x"  # type: ignore[misc]


def test_request_rules_combine_key_team_and_user() -> None:
    config = LimitsConfig.model_validate(CONFIG)
    key = _key(rpm=10, budget_usd=Decimal("2.5"), budget_period="day")
    rules = request_rules(config, key=key, team="search", user="u-7")
    assert rules.rate == (
        RateLimitRule("key:k1", 10, None),
        RateLimitRule("team:search", 600, 200000),
        RateLimitRule("user:u-7", 60, None),
    )
    assert rules.budgets == (
        BudgetRule("key:k1", "day", Decimal("2.5"), None),
        BudgetRule("team:search", "month", Decimal("500"), Decimal("400.5")),
        BudgetRule("user:u-7", "day", Decimal("5"), None),
    )


def test_request_rules_skip_unlimited_scopes() -> None:
    config = LimitsConfig.model_validate({"teams": {"tiny": TINY}})
    rules = request_rules(config, key=_key(), team="tiny", user="u")
    assert rules.rate == ()
    assert rules.budgets == (BudgetRule("team:tiny", "day", None, Decimal("0.05")),)
    assert request_rules(config, team="unknown") == request_rules(config)


def test_key_budget_defaults_to_month() -> None:
    rules = request_rules(LimitsConfig(), key=_key(budget_soft_usd=Decimal("1")))
    assert rules.budgets == (BudgetRule("key:k1", "month", None, Decimal("1")),)


def test_factory_picks_memory_without_redis() -> None:
    rate, budgets = build_limiters(LimitsConfig(), None)
    assert isinstance(rate, MemoryRateLimiter)
    assert isinstance(budgets, MemoryBudgets)


def test_factory_picks_redis_with_url(database_url: str) -> None:
    database = open_database(database_url)
    config = LimitsConfig.model_validate({"redis_url": "redis://127.0.0.1:6379/0"})
    rate, budgets = build_limiters(config, database)
    assert isinstance(rate, RedisRateLimiter)
    assert isinstance(budgets, RedisBudgets)

    async def close() -> None:
        await rate.close()
        await budgets.close()

    asyncio.run(close())
    database.close()
