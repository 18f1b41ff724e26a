"""The arithmetic of the sliding minute, shared by the memory and Redis limiters.

Requests use a sliding window log: a request counts while it is less than a
minute old, so "N per minute" is exact. Tokens use a sliding window counter:
the count of the current fixed minute plus the previous minute's count,
weighted by how much of the previous minute still overlaps the sliding one.
Both backends decide with :func:`requests_fit` and :func:`tokens_fit`
(the Redis Lua script mirrors them) and report with :func:`rule_state`.
"""

from __future__ import annotations

from dataclasses import dataclass

from keelway.limits.rate import (
    LimitKind,
    RateLimitExceeded,
    RateLimitRule,
    RateLimitStatus,
    RuleState,
)

WINDOW_SECONDS = 60
WINDOW_US = WINDOW_SECONDS * 1_000_000
WINDOW_MS = WINDOW_SECONDS * 1000


@dataclass(frozen=True, slots=True)
class RequestWindow:
    """The request log of one scope, reduced to what the headers need.

    ``blocking_at`` is the time (µs) of the logged request whose expiry would
    make room for one more, set only when the log is full.
    """

    count: int
    newest_at: int | None
    blocking_at: int | None = None


@dataclass(frozen=True, slots=True)
class TokenWindow:
    """Token counts of the previous and current fixed minute of one scope."""

    previous: int
    current: int
    elapsed_us: int
    """Microseconds since the current fixed minute began."""


def window_index(now_us: int) -> int:
    """Return the number of the fixed minute that contains ``now_us``."""
    return now_us // WINDOW_US


def requests_fit(count: int, limit: int) -> bool:
    """Return whether one more request fits a log of ``count`` requests."""
    return count < limit


def _weighted_tokens(window: TokenWindow) -> int:
    """Return the sliding minute's token count, scaled by WINDOW_MS."""
    elapsed_ms = window.elapsed_us // 1000
    return window.previous * (WINDOW_MS - elapsed_ms) + window.current * WINDOW_MS


def tokens_fit(window: TokenWindow, tokens: int, limit: int) -> bool:
    """Return whether ``tokens`` more tokens fit the sliding minute."""
    return _weighted_tokens(window) + tokens * WINDOW_MS <= limit * WINDOW_MS


def tokens_used(window: TokenWindow) -> int:
    """Return the sliding minute's token count, rounded up."""
    return -(-_weighted_tokens(window) // WINDOW_MS)


def tokens_reset_us(window: TokenWindow) -> int:
    """Return the µs until the sliding minute counts no tokens."""
    if window.current > 0:
        return 2 * WINDOW_US - window.elapsed_us
    if window.previous > 0:
        return WINDOW_US - window.elapsed_us
    return 0


def tokens_retry_us(window: TokenWindow, tokens: int, limit: int) -> int | None:
    """Return the µs until ``tokens`` more tokens fit, if no others arrive.

    None when the request alone is larger than the limit and can never fit.
    """
    if tokens > limit:
        return None
    if tokens_fit(window, tokens, limit):
        return 0
    room = limit - tokens - window.current
    if room >= 0:
        # The previous minute's weight falls until the rest fits this minute.
        target_ms = WINDOW_MS - room * WINDOW_MS // window.previous
        return max(0, target_ms * 1000 - window.elapsed_us)
    # Only the next minute has room: then the current count becomes the
    # previous one and decays in the same way.
    target_ms = WINDOW_MS - (limit - tokens) * WINDOW_MS // window.current
    return WINDOW_US - window.elapsed_us + target_ms * 1000


@dataclass(frozen=True, slots=True)
class RuleWindows:
    """One rule with the windows of its scope at the time of a decision."""

    rule: RateLimitRule
    requests: RequestWindow | None
    tokens: TokenWindow | None


def windows_fit(windows: RuleWindows, tokens: int) -> bool:
    """Return whether one request of ``tokens`` tokens fits every limit of a rule."""
    rpm = windows.rule.requests_per_minute
    tpm = windows.rule.tokens_per_minute
    requests, token_window = windows.requests, windows.tokens
    if rpm is not None and requests and not requests_fit(requests.count, rpm):
        return False
    if tpm is not None and token_window:
        return tokens_fit(token_window, tokens, tpm)
    return True


def validate_tokens(tokens: int) -> None:
    """Raise ValueError unless ``tokens`` is a non-negative integer."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ValueError(f"tokens must be a non-negative integer, got {tokens!r}")


def validate_delta(delta: int) -> None:
    """Raise ValueError unless ``delta`` is an integer."""
    if isinstance(delta, bool) or not isinstance(delta, int):
        raise ValueError(f"delta must be an integer number of tokens, got {delta!r}")


def rule_state(
    rule: RateLimitRule,
    requests: RequestWindow | None,
    tokens: TokenWindow | None,
    now_us: int,
) -> RuleState:
    """Return a rule's remaining requests and tokens and their reset times."""
    requests_remaining = requests_reset = None
    if rule.requests_per_minute is not None and requests is not None:
        requests_remaining = max(0, rule.requests_per_minute - requests.count)
        newest = requests.newest_at
        reset_us = 0 if newest is None else max(0, newest + WINDOW_US - now_us)
        requests_reset = reset_us / 1_000_000
    tokens_remaining = tokens_reset = None
    if rule.tokens_per_minute is not None and tokens is not None:
        tokens_remaining = max(0, rule.tokens_per_minute - tokens_used(tokens))
        tokens_reset = tokens_reset_us(tokens) / 1_000_000
    return RuleState(
        rule, requests_remaining, requests_reset, tokens_remaining, tokens_reset
    )


def status_of(windows: list[RuleWindows], now_us: int) -> RateLimitStatus:
    """Return the status of every rule of a call."""
    return RateLimitStatus(
        tuple(rule_state(w.rule, w.requests, w.tokens, now_us) for w in windows)
    )


def rejection(
    windows: list[RuleWindows], tokens: int, now_us: int
) -> RateLimitExceeded:
    """Build the error for a rejected call from the windows it was checked against.

    The error names the rule that keeps the request out longest, because the
    request fits only once every rule admits it.
    """
    worst: tuple[int, RateLimitRule, LimitKind, str] | None = None
    for w in windows:
        for wait_us, kind, detail in _blocks(w, tokens, now_us):
            if worst is None or wait_us > worst[0]:
                worst = (wait_us, w.rule, kind, detail)
    if worst is None:
        raise ValueError("rejection() needs at least one rule that does not fit")
    wait_us, rule, kind, detail = worst
    limit = rule.requests_per_minute if kind == "requests" else rule.tokens_per_minute
    assert limit is not None
    retry_after = wait_us / 1_000_000
    message = f"rate limit exceeded for {rule.scope}: {detail}"
    return RateLimitExceeded(
        message,
        scope=rule.scope,
        limit_kind=kind,
        limit=limit,
        retry_after=retry_after,
        status=status_of(windows, now_us),
    )


def _blocks(
    w: RuleWindows, tokens: int, now_us: int
) -> list[tuple[int, LimitKind, str]]:
    """Return (wait in µs, kind, description) for each limit of ``w`` that blocks."""
    blocks: list[tuple[int, LimitKind, str]] = []
    rpm = w.rule.requests_per_minute
    if rpm is not None and w.requests and not requests_fit(w.requests.count, rpm):
        blocking = w.requests.blocking_at
        wait = WINDOW_US if blocking is None else blocking + WINDOW_US - now_us
        retry = max(1, wait) / 1_000_000
        detail = (
            f"{w.requests.count} requests in the last minute reached the limit "
            f"of {rpm} requests per minute; retry after {retry:.3f}s"
        )
        blocks.append((max(1, wait), "requests", detail))
    tpm = w.rule.tokens_per_minute
    if tpm is not None and w.tokens and not tokens_fit(w.tokens, tokens, tpm):
        retry_us = tokens_retry_us(w.tokens, tokens, tpm)
        if retry_us is None:
            detail = (
                f"this request's estimated {tokens} tokens exceed the limit of "
                f"{tpm} tokens per minute, so it cannot be admitted"
            )
            wait = tokens_reset_us(w.tokens) or WINDOW_US
        else:
            wait = max(1, retry_us)
            detail = (
                f"{tokens_used(w.tokens)} tokens used in the last minute plus this "
                f"request's estimated {tokens} exceed the limit of {tpm} tokens "
                f"per minute; retry after {wait / 1_000_000:.3f}s"
            )
        blocks.append((wait, "tokens", detail))
    return blocks
