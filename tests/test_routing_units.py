"""Routing pieces on their own: error classes, backoff, breakers, strategies."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from keelway.config import BreakerConfig, ErrorPolicy, RetryConfig
from keelway.providers.errors import (
    ProviderError,
    UnsupportedRequest,
    UpstreamInvalidResponse,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from keelway.routing.breaker import BreakerState, CircuitBreaker
from keelway.routing.policy import ErrorClass, action_for, backoff_delay, classify
from keelway.routing.strategies import DeploymentStats, choose


def _status(
    status: int, code: str | None = None, kind: str | None = None, message: str = ""
) -> UpstreamStatusError:
    return UpstreamStatusError(status, message or "failed", error_type=kind, code=code)


CLASSES: list[tuple[str, ProviderError, ErrorClass]] = [
    ("429", _status(429), ErrorClass.RATE_LIMITED),
    ("503", _status(503), ErrorClass.OVERLOADED),
    ("anthropic 529", _status(529, kind="overloaded_error"), ErrorClass.OVERLOADED),
    ("500", _status(500), ErrorClass.SERVER_ERROR),
    ("502", _status(502), ErrorClass.SERVER_ERROR),
    ("409", _status(409), ErrorClass.SERVER_ERROR),
    ("408", _status(408), ErrorClass.TIMEOUT),
    ("timeout", UpstreamTimeout("slow"), ErrorClass.TIMEOUT),
    ("reset", UpstreamUnreachable("reset"), ErrorClass.CONNECTION),
    ("garbage", UpstreamInvalidResponse("html"), ErrorClass.INVALID_RESPONSE),
    ("401", _status(401), ErrorClass.AUTHENTICATION),
    ("403", _status(403), ErrorClass.AUTHENTICATION),
    (
        "openai context code",
        _status(400, code="context_length_exceeded"),
        ErrorClass.CONTEXT_WINDOW_EXCEEDED,
    ),
    (
        "anthropic prompt too long",
        _status(400, message="prompt is too long: 210000 tokens > 200000 maximum"),
        ErrorClass.CONTEXT_WINDOW_EXCEEDED,
    ),
    (
        "openai content policy",
        _status(400, code="content_policy_violation"),
        ErrorClass.CONTENT_POLICY,
    ),
    (
        "azure content filter",
        _status(400, code="content_filter"),
        ErrorClass.CONTENT_POLICY,
    ),
    ("plain 400", _status(400, code="invalid_value"), ErrorClass.BAD_REQUEST),
    ("422", _status(422), ErrorClass.BAD_REQUEST),
    ("unsupported", UnsupportedRequest("no tools"), ErrorClass.BAD_REQUEST),
]


@pytest.mark.parametrize(
    ("error", "expected"),
    [(error, expected) for _, error, expected in CLASSES],
    ids=[name for name, _, _ in CLASSES],
)
def test_error_classes(error: ProviderError, expected: ErrorClass) -> None:
    assert classify(error) is expected


def test_default_policy_returns_refusals() -> None:
    policy = ErrorPolicy()
    assert action_for(policy, ErrorClass.CONTENT_POLICY) == "return"
    assert action_for(policy, ErrorClass.BAD_REQUEST) == "return"
    assert action_for(policy, ErrorClass.CONTEXT_WINDOW_EXCEEDED) == "fallback"
    assert action_for(policy, ErrorClass.RATE_LIMITED) == "retry"
    assert action_for(policy, ErrorClass.CONNECTION) == "retry"


def test_retry_after_is_honoured() -> None:
    config = RetryConfig(max_retry_after=30)
    assert backoff_delay(config, 1, 7.0) == 7.0


def test_long_retry_after_moves_on() -> None:
    config = RetryConfig(max_retry_after=30)
    assert backoff_delay(config, 1, 31.0) is None


def test_backoff_grows_and_is_capped() -> None:
    config = RetryConfig(backoff_base=0.5, backoff_max=3.0)
    rng = random.Random(1)
    for retry, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)):
        delays = [backoff_delay(config, retry, None, rng) for _ in range(200)]
        assert all(d is not None and 0 <= d <= ceiling for d in delays)
        # Full jitter spreads the waits over the whole range.
        assert max(d for d in delays if d is not None) > ceiling * 0.8


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock) -> CircuitBreaker:
    config = BreakerConfig(failures=3, window_seconds=10, cooldown_seconds=5)
    return CircuitBreaker(config, clock)


def test_breaker_opens_after_failures() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(2):
        breaker.fail()
    assert breaker.state is BreakerState.CLOSED
    breaker.fail()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allows()


def test_breaker_forgets_old_failures() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    breaker.fail()
    breaker.fail()
    clock.now += 11
    breaker.fail()
    assert breaker.state is BreakerState.CLOSED


def test_breaker_probe_closes_it() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.fail()
    clock.now += 5
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allows()
    breaker.begin()
    # Only one probe at a time.
    assert not breaker.allows()
    breaker.succeed()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allows()


def test_failed_probe_reopens_breaker() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    for _ in range(3):
        breaker.fail()
    clock.now += 5
    breaker.begin()
    breaker.fail()
    assert breaker.state is BreakerState.OPEN
    clock.now += 4
    assert breaker.state is BreakerState.OPEN
    clock.now += 1
    assert breaker.state is BreakerState.HALF_OPEN


@dataclass
class Node:
    name: str
    weight: float = 1.0
    unit_price: float | None = None
    stats: DeploymentStats = field(default_factory=DeploymentStats)


def test_weighted_follows_weights() -> None:
    nodes = [Node("a", weight=3), Node("b", weight=1)]
    rng = random.Random(7)
    counts = Counter(choose("weighted", nodes, rng=rng).name for _ in range(4000))
    assert 0.70 < counts["a"] / 4000 < 0.80


def test_least_busy_picks_idle() -> None:
    nodes = [Node("a"), Node("b"), Node("c")]
    nodes[0].stats.in_flight = 4
    nodes[1].stats.in_flight = 1
    nodes[2].stats.in_flight = 2
    assert choose("least_busy", nodes).name == "b"


def test_lowest_latency_picks_fastest() -> None:
    nodes = [Node("a"), Node("b")]
    for _ in range(5):
        nodes[0].stats.observe_latency(0.300)
        nodes[1].stats.observe_latency(0.100)
    assert choose("lowest_latency", nodes).name == "b"


def test_lowest_latency_tries_unmeasured() -> None:
    nodes = [Node("a"), Node("b")]
    nodes[0].stats.observe_latency(0.050)
    assert choose("lowest_latency", nodes).name == "b"


def test_lowest_cost_skips_unpriced() -> None:
    nodes = [
        Node("a", unit_price=None),
        Node("b", unit_price=0.02),
        Node("c", unit_price=0.01),
    ]
    assert choose("lowest_cost", nodes).name == "c"


def test_sticky_keeps_caller_on_deployment() -> None:
    nodes = [Node("a"), Node("b"), Node("c")]
    picks = {
        user: choose("weighted", nodes, sticky=user).name
        for user in map(str, range(300))
    }
    assert set(picks.values()) == {"a", "b", "c"}
    for user, name in picks.items():
        assert choose("weighted", nodes, sticky=user).name == name
    # Removing one deployment moves only the callers it had.
    remaining = [n for n in nodes if n.name != "c"]
    for user, name in picks.items():
        if name != "c":
            assert choose("weighted", remaining, sticky=user).name == name
