"""Rate limits and budgets on the request path.

Before routing, a request takes one step of every rate limit that applies
to it (its key, its team, its end user) with an estimate of its tokens, and
reserves its maximum cost from every budget that applies: the estimated
input plus the requested (or default) output tokens, at the highest price
among the deployments that may serve it, fallbacks included. After the
answer the real cost settles the reservation, the token estimate is
corrected, and the ledger entries travel with the trace into the store in
one transaction. A request that fails without a cost releases its
reservation. Cache hits never reach this step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from keelway.gateway.errors import BudgetExhausted, LimitsDown, RateLimited
from keelway.limits import (
    BudgetExceeded,
    Budgets,
    LimitsConfig,
    LimitsUnavailable,
    RateLimiter,
    RateLimitExceeded,
    RateLimitRule,
    Reservation,
    ledger_entries,
)
from keelway.limits.scopes import RequestRules, deployment_scope, request_rules
from keelway.monitoring.metrics import Metrics
from keelway.routing import Deployment, Router
from keelway.tracing.estimate import estimate_usage
from keelway.tracing.pricing import PriceTable
from keelway.tracing.records import TraceRecord
from keelway.tracing.usage import Usage

log = logging.getLogger(__name__)

JSONObject = dict[str, Any]

# Output tokens reserved for a request that sets no max_tokens.
DEFAULT_OUTPUT_RESERVE = 4096


@dataclass(slots=True)
class Admission:
    """The rate limit counts and budget reservation of a request, to settle later."""

    rules: RequestRules
    tokens: int
    reservation: Reservation | None
    headers: dict[str, str] = field(default_factory=dict)


class RequestLimits:
    """Applies the rate limits and budgets of each request."""

    def __init__(
        self,
        config: LimitsConfig,
        rate: RateLimiter,
        budgets: Budgets,
        router: Router,
        prices: PriceTable,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.rate = rate
        self.budgets = budgets
        self.router = router
        self.prices = prices
        self.metrics = metrics

    async def admit(
        self,
        body: JSONObject,
        group: str,
        key: Any,
        team: str | None,
        user: str | None,
        *,
        rate: bool = True,
    ) -> Admission | None:
        """Count the request against its rate limits and reserve its cost.

        With ``rate`` false only budgets apply: shadow calls spend money but
        must not use up the rate allowance of the traffic they copy.
        """
        rules = request_rules(self.config, key=key, team=team, user=user)
        if not rate:
            rules = replace(rules, rate=())
        if not rules.rate and not rules.budgets:
            return None
        input_tokens = _input_tokens(body)
        output_tokens = _output_tokens(body)
        admission = Admission(rules, input_tokens + output_tokens, None)
        if rules.rate:
            try:
                status = await self.rate.acquire(rules.rate, admission.tokens)
            except RateLimitExceeded as error:
                raise RateLimited(error.message, headers=error.headers()) from None
            except LimitsUnavailable as error:
                log.error("rate limits unavailable, request let through: %s", error)
            else:
                admission.headers = status.headers()
        if rules.budgets:
            amount = self._max_cost(group, input_tokens, output_tokens)
            try:
                admission.reservation = await self.budgets.reserve(
                    rules.budgets, amount
                )
            except BudgetExceeded as error:
                await self._undo_rate(admission)
                raise BudgetExhausted(
                    error.message, headers={"x-should-retry": "false"}
                ) from None
            except ValueError:
                # The maximum cost is past what any budget can hold.
                await self._undo_rate(admission)
                raise BudgetExhausted(
                    f"the request's maximum cost of {amount:.2f} USD exceeds every"
                    " budget; lower max_tokens",
                    headers={"x-should-retry": "false"},
                ) from None
            except LimitsUnavailable as error:
                # A hard budget that cannot be checked is not let through.
                await self._undo_rate(admission)
                log.error("budgets unavailable, request rejected: %s", error)
                raise LimitsDown(
                    "budgets cannot be checked right now; retry later",
                    headers={"Retry-After": "5"},
                ) from None
        return admission

    async def settle(self, admission: Admission | None, trace: TraceRecord) -> None:
        """Charge the real cost and correct the token count after the response."""
        if admission is None:
            return
        if admission.reservation is not None:
            cost = None if trace.cost_usd is None else Decimal(str(trace.cost_usd))
            try:
                crossed = await self.budgets.settle(admission.reservation, cost)
            except LimitsUnavailable as error:
                # Settlement runs after the answer, so there is no client to
                # tell. The ledger entry is still written, and budgets are
                # rebuilt from the ledger when Redis comes back empty.
                log.error("settling the budget of trace %s failed: %s", trace.id, error)
                crossed = []
            trace.ledger = ledger_entries(admission.reservation, cost, trace.id)
            for soft in crossed:
                self.metrics.budget_soft_crossed.labels(soft.period).inc()
                log.warning(
                    "soft budget limit crossed: %s spent %s of %s this %s",
                    soft.scope,
                    soft.spent_usd,
                    soft.soft_limit_usd,
                    soft.period,
                )
        if admission.rules.rate and trace.usage is not None:
            used = trace.usage.prompt_tokens + trace.usage.output_tokens
            try:
                await self.rate.adjust_tokens(
                    admission.rules.rate, used - admission.tokens
                )
            except LimitsUnavailable as error:
                log.error(
                    "correcting the token count of trace %s failed: %s", trace.id, error
                )

    async def release(self, admission: Admission | None) -> None:
        """Give back the reservation of a request that failed without a cost."""
        if admission is not None and admission.reservation is not None:
            try:
                await self.budgets.release(admission.reservation)
            except LimitsUnavailable as error:
                # The request's own error is the one to return; the
                # reservation lapses with Redis.
                log.error("releasing a budget reservation failed: %s", error)

    async def _undo_rate(self, admission: Admission) -> None:
        # The request never ran, so its estimated tokens do not count.
        if admission.rules.rate and admission.tokens and admission.headers:
            try:
                await self.rate.adjust_tokens(admission.rules.rate, -admission.tokens)
            except LimitsUnavailable as error:
                log.error("giving back rate limit tokens failed: %s", error)

    def _max_cost(self, group: str, input_tokens: int, output_tokens: int) -> Decimal:
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        costs = [
            self.prices.cost(d.config.model, usage, d.config.price)
            for d in self._reachable(group)
        ]
        known = [cost for cost in costs if cost is not None]
        # An unpriced model has no cost to reserve; its traces cost null.
        return Decimal(str(max(known))) if known else Decimal(0)

    def _reachable(self, group: str) -> list[Deployment]:
        spec = self.router.specs[group]
        groups = [
            group,
            *spec.fallbacks,
            *spec.context_window_fallbacks,
            *spec.content_policy_fallbacks,
        ]
        return [d for name in dict.fromkeys(groups) for d in self.router.groups[name]]

    async def close(self) -> None:
        """Close the limiters' connections."""
        await self.rate.close()
        await self.budgets.close()


def deployment_rule(deployment: Deployment) -> RateLimitRule | None:
    """Return the rate limit rule of a deployment, if it has limits."""
    config = deployment.config
    if config.rpm is None and config.tpm is None:
        return None
    return RateLimitRule(deployment_scope(deployment.name), config.rpm, config.tpm)


def _input_tokens(body: JSONObject) -> int:
    messages = body.get("messages")
    if isinstance(messages, list):
        return estimate_usage(messages, "").input_tokens
    value = body.get("input")
    texts = value if isinstance(value, list) else [value]
    return sum(len(str(text)) for text in texts) // 4 + 1


def _output_tokens(body: JSONObject) -> int:
    if "input" in body and "messages" not in body:
        return 0
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and value > 0:
            return value * max(1, _int(body.get("n")))
    return DEFAULT_OUTPUT_RESERVE * max(1, _int(body.get("n")))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 1
