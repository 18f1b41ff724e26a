"""Rate limits: the rule, the limiter interface, its status and its error.

A rule limits one scope (``key:<id>``, ``team:<name>``, ``user:<id>``,
``deployment:<name>``) to a number of requests and of tokens per minute.
A limiter checks every rule of a call at once: it either counts the request
against all of them or against none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from keelway.limits.durations import format_duration
from keelway.limits.errors import LimitsError

LimitKind = Literal["requests", "tokens"]


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """A per-minute limit on requests and on tokens for one scope.

    None means no limit of that kind. Tokens are the caller's estimate at
    admission, corrected with :meth:`RateLimiter.adjust_tokens` afterwards.
    """

    scope: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    def __post_init__(self) -> None:
        if not self.scope:
            raise ValueError("rate limit scope must not be empty")
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ValueError(
                    f"{name} of {self.scope} must be a positive integer, got {value!r}"
                )


def merge_rules(rules: Sequence[RateLimitRule]) -> list[RateLimitRule]:
    """Return one rule per scope, keeping the lower limit, and drop empty rules.

    A scope is counted once per request even when two rules name it.
    """
    merged: dict[str, RateLimitRule] = {}
    for rule in rules:
        if rule.requests_per_minute is None and rule.tokens_per_minute is None:
            continue
        seen = merged.get(rule.scope)
        if seen is None:
            merged[rule.scope] = rule
            continue
        merged[rule.scope] = RateLimitRule(
            rule.scope,
            _lower(seen.requests_per_minute, rule.requests_per_minute),
            _lower(seen.tokens_per_minute, rule.tokens_per_minute),
        )
    return list(merged.values())


def _lower(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@dataclass(frozen=True, slots=True)
class RuleState:
    """State of one rule after a call, for the rate limit headers.

    ``*_reset`` is the number of seconds until the rule's window is back to
    its full limit if no more requests arrive. Fields of a kind the rule
    does not limit are None.
    """

    rule: RateLimitRule
    requests_remaining: int | None
    requests_reset: float | None
    tokens_remaining: int | None
    tokens_reset: float | None


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """The state of every rule of a call, after it was admitted or rejected."""

    rules: tuple[RuleState, ...] = ()

    def tightest(self, kind: LimitKind) -> RuleState | None:
        """Return the rule with the fewest remaining requests or tokens, if any.

        Ties go to the rule with the lower limit, then to the earlier rule.
        """
        best: RuleState | None = None
        best_key: tuple[int, int] | None = None
        for state in self.rules:
            remaining, limit = _remaining_and_limit(state, kind)
            if remaining is None or limit is None:
                continue
            key = (remaining, limit)
            if best_key is None or key < best_key:
                best, best_key = state, key
        return best

    def headers(self) -> dict[str, str]:
        """Return OpenAI's ``x-ratelimit-*`` headers for the tightest rules.

        The request headers come from the rule with the fewest remaining
        requests and the token headers from the rule with the fewest
        remaining tokens. A kind that no rule limits has no headers.
        """
        headers: dict[str, str] = {}
        for kind in ("requests", "tokens"):
            state = self.tightest(kind)
            if state is None:
                continue
            remaining, limit = _remaining_and_limit(state, kind)
            reset = state.requests_reset if kind == "requests" else state.tokens_reset
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            headers[f"x-ratelimit-reset-{kind}"] = format_duration(reset or 0.0)
        return headers


def _remaining_and_limit(
    state: RuleState, kind: LimitKind
) -> tuple[int | None, int | None]:
    if kind == "requests":
        return state.requests_remaining, state.rule.requests_per_minute
    return state.tokens_remaining, state.rule.tokens_per_minute


class RateLimitExceeded(LimitsError):
    """A request was rejected by a rate limit; nothing was counted.

    ``scope`` and ``limit_kind`` name the rule that keeps the request out
    longest, ``limit`` is that rule's per-minute limit and ``retry_after``
    the seconds until every rule of the call would admit the request.
    """

    def __init__(
        self,
        message: str,
        *,
        scope: str,
        limit_kind: LimitKind,
        limit: int,
        retry_after: float,
        status: RateLimitStatus,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.scope = scope
        self.limit_kind = limit_kind
        self.limit = limit
        self.retry_after = retry_after
        self.status = status

    def headers(self) -> dict[str, str]:
        """Return the ``x-ratelimit-*`` headers plus ``retry-after`` (whole seconds).

        ``retry-after-ms`` carries the exact wait, which the OpenAI SDKs read
        in preference to ``retry-after``.
        """
        return {
            **self.status.headers(),
            "retry-after": str(max(1, math.ceil(self.retry_after))),
            "retry-after-ms": str(max(1, math.ceil(self.retry_after * 1000))),
        }


class RateLimiter(Protocol):
    """Counts requests and tokens per scope over a sliding minute."""

    async def acquire(
        self, rules: Sequence[RateLimitRule], tokens: int = 0
    ) -> RateLimitStatus:
        """Count one request of ``tokens`` estimated tokens against every rule.

        Either every rule admits the request and it is counted against all of
        them, or :class:`RateLimitExceeded` is raised and nothing is counted.
        Raises LimitsUnavailable when the backend cannot be reached.
        """
        ...

    async def adjust_tokens(self, rules: Sequence[RateLimitRule], delta: int) -> None:
        """Add ``delta`` tokens (negative to refund) to the rules' token counts.

        Call it once the real token count is known. It never rejects.
        """
        ...

    async def close(self) -> None:
        """Release the backend's connections."""
        ...
