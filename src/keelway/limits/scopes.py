"""The rules that apply to a request: its key's, its team's and its user's."""

from __future__ import annotations

from dataclasses import dataclass

from keelway.limits.budgets import BudgetRule
from keelway.limits.config import BudgetLimits, LimitsConfig, ScopeLimits
from keelway.limits.rate import RateLimitRule
from keelway.store.keys import ApiKeyRecord


def key_scope(key_id: str) -> str:
    """Return the scope of a virtual key."""
    return f"key:{key_id}"


def team_scope(team: str) -> str:
    """Return the scope of a team."""
    return f"team:{team}"


def user_scope(user: str) -> str:
    """Return the scope of an end user, as the request's ``user`` names them."""
    return f"user:{user}"


def deployment_scope(deployment: str) -> str:
    """Return the scope of a deployment."""
    return f"deployment:{deployment}"


def key_limits(record: ApiKeyRecord) -> ScopeLimits:
    """Return the limits stored on a virtual key."""
    budget = None
    if record.budget_usd is not None or record.budget_soft_usd is not None:
        budget = BudgetLimits(
            period=record.budget_period or "month",
            hard_usd=record.budget_usd,
            soft_usd=record.budget_soft_usd,
        )
    return ScopeLimits(rpm=record.rpm, tpm=record.tpm, budget=budget)


@dataclass(frozen=True, slots=True)
class RequestRules:
    """The rate limit and budget rules of one request."""

    rate: tuple[RateLimitRule, ...] = ()
    budgets: tuple[BudgetRule, ...] = ()


def request_rules(
    config: LimitsConfig,
    *,
    key: ApiKeyRecord | None = None,
    team: str | None = None,
    user: str | None = None,
) -> RequestRules:
    """Return the rules of a request by this key, team and user.

    The team's limits come from ``config.teams`` and the user's from
    ``config.users``; a team or user without configured limits adds none.
    """
    limited: list[tuple[str, ScopeLimits]] = []
    if key is not None:
        limited.append((key_scope(key.id), key_limits(key)))
    if team is not None and team in config.teams:
        limited.append((team_scope(team), config.teams[team]))
    if user is not None and config.users is not None:
        limited.append((user_scope(user), config.users))
    rate = [limits.rate_rule(scope) for scope, limits in limited]
    budgets = [limits.budget_rule(scope) for scope, limits in limited]
    return RequestRules(
        tuple(rule for rule in rate if rule is not None),
        tuple(rule for rule in budgets if rule is not None),
    )
