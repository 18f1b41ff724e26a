"""A rate limiter for one process, kept in memory."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

from keelway.limits.clock import Clock, to_micros
from keelway.limits.rate import RateLimitRule, RateLimitStatus, merge_rules
from keelway.limits.rate_window import (
    WINDOW_US,
    RequestWindow,
    RuleWindows,
    TokenWindow,
    rejection,
    status_of,
    validate_delta,
    validate_tokens,
    window_index,
    windows_fit,
)

# Scopes idle for a whole window are dropped every this many calls, so that
# per-user scopes do not accumulate forever.
_SWEEP_EVERY = 1024


class _TokenCounter:
    """Token counts of a scope's current and previous fixed minute."""

    __slots__ = ("current", "index", "previous")

    def __init__(self, index: int) -> None:
        self.index = index
        self.current = 0
        self.previous = 0

    def roll(self, index: int) -> None:
        """Move to the fixed minute ``index``, shifting or clearing the counts."""
        if index == self.index:
            return
        self.previous = self.current if index == self.index + 1 else 0
        self.current = 0
        self.index = index


class MemoryRateLimiter:
    """Sliding-minute request and token limits within one process.

    Each call runs under a lock and without awaiting, so concurrent tasks
    (and threads) see every admission. Replicas do not share these counts;
    use :class:`~keelway.limits.rate_redis.RedisRateLimiter` for that.
    """

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: dict[str, deque[int]] = {}
        self._tokens: dict[str, _TokenCounter] = {}
        self._calls = 0

    async def acquire(
        self, rules: Sequence[RateLimitRule], tokens: int = 0
    ) -> RateLimitStatus:
        """Count one request against every rule, or raise RateLimitExceeded."""
        validate_tokens(tokens)
        merged = merge_rules(rules)
        if not merged:
            return RateLimitStatus()
        with self._lock:
            now = to_micros(self._clock())
            self._sweep(now)
            before = [self._windows(rule, now) for rule in merged]
            if not all(windows_fit(w, tokens) for w in before):
                raise rejection(before, tokens, now)
            for rule in merged:
                self._count(rule, now, tokens)
            return status_of([self._windows(rule, now) for rule in merged], now)

    async def adjust_tokens(self, rules: Sequence[RateLimitRule], delta: int) -> None:
        """Add ``delta`` tokens to the current minute of each rule with a token limit.

        A refund larger than the current minute's count stops at zero, so the
        limiter errs toward counting too many tokens.
        """
        validate_delta(delta)
        if delta == 0:
            return
        with self._lock:
            now = to_micros(self._clock())
            for rule in merge_rules(rules):
                if rule.tokens_per_minute is None:
                    continue
                counter = self._token_counter(rule.scope, now)
                counter.current = max(0, counter.current + delta)

    async def close(self) -> None:
        """Forget every count."""
        with self._lock:
            self._requests.clear()
            self._tokens.clear()

    def _windows(self, rule: RateLimitRule, now: int) -> RuleWindows:
        requests = tokens = None
        if rule.requests_per_minute is not None:
            log = self._request_log(rule.scope, now)
            count = len(log)
            blocking = None
            if count >= rule.requests_per_minute:
                blocking = log[count - rule.requests_per_minute]
            requests = RequestWindow(count, log[-1] if log else None, blocking)
        if rule.tokens_per_minute is not None:
            counter = self._token_counter(rule.scope, now)
            elapsed = now - counter.index * WINDOW_US
            tokens = TokenWindow(counter.previous, counter.current, elapsed)
        return RuleWindows(rule, requests, tokens)

    def _count(self, rule: RateLimitRule, now: int, tokens: int) -> None:
        if rule.requests_per_minute is not None:
            self._request_log(rule.scope, now).append(now)
        if rule.tokens_per_minute is not None:
            self._token_counter(rule.scope, now).current += tokens

    def _request_log(self, scope: str, now: int) -> deque[int]:
        """Return the scope's log of request times, without expired entries."""
        log = self._requests.setdefault(scope, deque())
        while log and log[0] <= now - WINDOW_US:
            log.popleft()
        return log

    def _token_counter(self, scope: str, now: int) -> _TokenCounter:
        index = window_index(now)
        counter = self._tokens.setdefault(scope, _TokenCounter(index))
        counter.roll(index)
        return counter

    def _sweep(self, now: int) -> None:
        self._calls += 1
        if self._calls % _SWEEP_EVERY:
            return
        idle = [s for s, log in self._requests.items() if _expired(log, now)]
        for scope in idle:
            del self._requests[scope]
        index = window_index(now)
        for scope in [s for s, c in self._tokens.items() if c.index < index - 1]:
            del self._tokens[scope]


def _expired(log: deque[int], now: int) -> bool:
    return not log or log[-1] <= now - WINDOW_US
