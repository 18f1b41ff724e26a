"""Rate limits in memory and in Redis: exact counts, tokens, headers, atomicity."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis

from keelway.limits import (
    LimitsUnavailable,
    MemoryRateLimiter,
    RateLimiter,
    RateLimitExceeded,
    RateLimitRule,
    RedisRateLimiter,
    format_duration,
)
from keelway.limits.rate_window import WINDOW_SECONDS

REDIS_URL = os.environ.get("KEELWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T = TypeVar("T")
# A start time on a minute boundary, so token windows line up with the test.
START = 1_800_000_000.0 - 1_800_000_000.0 % WINDOW_SECONDS


class FakeClock:
    """A clock that moves only when a test moves it."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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


class Limiters:
    """Builds limiters of one backend and runs a scenario on one event loop."""

    def __init__(self, backend: str, prefix: str) -> None:
        self.backend = backend
        self.prefix = prefix
        self.built: list[RateLimiter] = []

    def make(self, clock: Callable[[], float] | None = None) -> RateLimiter:
        """Return a new limiter; None as clock means Redis's clock for Redis."""
        limiter: RateLimiter
        if self.backend == "memory":
            limiter = MemoryRateLimiter(clock=clock or FakeClock())
        else:
            limiter = RedisRateLimiter(REDIS_URL, key_prefix=self.prefix, clock=clock)
        self.built.append(limiter)
        return limiter

    def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        """Run ``scenario`` and close every limiter it built, on one loop."""

        async def main() -> None:
            try:
                await scenario()
            finally:
                for limiter in self.built:
                    await limiter.close()
                self.built.clear()

        asyncio.run(main())


@pytest.fixture(params=["memory", "redis"])
def limiters(request: pytest.FixtureRequest, redis_prefix: str) -> Limiters:
    return Limiters(request.param, redis_prefix)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def _admitted(
    limiter: RateLimiter, rules: list[RateLimitRule], count: int, tokens: int = 0
) -> tuple[int, list[RateLimitExceeded]]:
    """Fire ``count`` acquires at once; return how many passed and the errors."""

    async def one() -> RateLimitExceeded | None:
        try:
            await limiter.acquire(rules, tokens)
        except RateLimitExceeded as error:
            return error
        return None

    results = await asyncio.gather(*(one() for _ in range(count)))
    errors = [r for r in results if r is not None]
    return count - len(errors), errors


def test_exactly_n_of_200_concurrent_pass(limiters: Limiters) -> None:
    async def scenario() -> None:
        # Redis uses its own clock here, as in production.
        limiter = limiters.make(None)
        rule = RateLimitRule("key:exact", requests_per_minute=37)
        admitted, errors = await _admitted(limiter, [rule], 200)
        assert admitted == 37
        assert len(errors) == 163
        assert {e.scope for e in errors} == {"key:exact"}
        assert {e.limit_kind for e in errors} == {"requests"}
        assert {e.limit for e in errors} == {37}
        assert all(0 < e.retry_after <= WINDOW_SECONDS for e in errors)

    limiters.run(scenario)


_WORKER = """
import asyncio, json, sys, time
import redis.asyncio as aioredis
from keelway.limits import RateLimitExceeded, RateLimitRule, RedisRateLimiter

async def main(url, prefix, limit, count):
    limiter = RedisRateLimiter(url, key_prefix=prefix)
    client = aioredis.Redis.from_url(url)
    barrier = prefix + "barrier"
    await client.incr(barrier)
    deadline = time.monotonic() + 30
    while int(await client.get(barrier) or 0) < 2:
        if time.monotonic() > deadline:
            raise SystemExit("the other worker did not start within 30 s")
        await asyncio.sleep(0.005)
    rule = RateLimitRule("team:shared", requests_per_minute=limit)

    async def one():
        try:
            await limiter.acquire([rule])
        except RateLimitExceeded:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(count)))
    print(json.dumps({"admitted": sum(results)}))
    await client.aclose()
    await limiter.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


def test_two_processes_share_one_limit(redis_prefix: str) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, REDIS_URL, redis_prefix, "41", "100"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    admitted = []
    for worker in workers:
        out, err = worker.communicate(timeout=90)
        assert worker.returncode == 0, err
        admitted.append(json.loads(out)["admitted"])
    assert sum(admitted) == 41


def test_rules_count_all_or_none(limiters: Limiters) -> None:
    async def scenario() -> None:
        limiter = limiters.make(FakeClock())
        key = RateLimitRule("key:k", requests_per_minute=5)
        team = RateLimitRule("team:t", requests_per_minute=3)
        admitted, errors = await _admitted(limiter, [key, team], 10)
        assert admitted == 3
        assert {e.scope for e in errors} == {"team:t"}
        # The seven rejected requests were not counted against the key.
        admitted, _ = await _admitted(limiter, [key], 10)
        assert admitted == 2

    limiters.run(scenario)


def test_same_scope_counts_once(limiters: Limiters) -> None:
    async def scenario() -> None:
        limiter = limiters.make(FakeClock())
        rules = [
            RateLimitRule("user:u", requests_per_minute=5),
            RateLimitRule("user:u", requests_per_minute=3),
        ]
        admitted, errors = await _admitted(limiter, rules, 6)
        assert admitted == 3
        assert errors[0].limit == 3

    limiters.run(scenario)


def test_window_slides(limiters: Limiters) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        limiter = limiters.make(clock)
        rule = RateLimitRule("key:slide", requests_per_minute=3)
        for _ in range(3):
            await limiter.acquire([rule])
            clock.advance(10)
        with pytest.raises(RateLimitExceeded) as caught:
            await limiter.acquire([rule])
        # The first request, made at 0 s, leaves the window at 60 s.
        assert caught.value.retry_after == pytest.approx(30)
        clock.advance(30)
        await limiter.acquire([rule])
        with pytest.raises(RateLimitExceeded) as caught:
            await limiter.acquire([rule])
        assert caught.value.retry_after == pytest.approx(10)

    limiters.run(scenario)


def test_tokens_per_minute(limiters: Limiters) -> None:
    async def scenario() -> None:
        limiter = limiters.make(FakeClock())
        rule = RateLimitRule("team:tokens", tokens_per_minute=1000)
        await limiter.acquire([rule], 400)
        await limiter.acquire([rule], 400)
        with pytest.raises(RateLimitExceeded) as caught:
            await limiter.acquire([rule], 400)
        assert caught.value.limit_kind == "tokens"
        assert caught.value.limit == 1000
        assert "800 tokens used" in str(caught.value)
        # Exactly the limit fits.
        await limiter.acquire([rule], 200)
        with pytest.raises(RateLimitExceeded):
            await limiter.acquire([rule], 1)
        # The calls used 300 tokens fewer than estimated.
        await limiter.adjust_tokens([rule], -300)
        await limiter.acquire([rule], 300)
        with pytest.raises(RateLimitExceeded):
            await limiter.acquire([rule], 1)

    limiters.run(scenario)


def test_tokens_of_previous_minute_decay(limiters: Limiters) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        limiter = limiters.make(clock)
        rule = RateLimitRule("team:decay", tokens_per_minute=1000)
        await limiter.acquire([rule], 1000)
        # Half-way through the next minute, half of the previous minute counts.
        clock.advance(90)
        with pytest.raises(RateLimitExceeded) as caught:
            await limiter.acquire([rule], 501)
        # With 499 tokens of room, the request waits until the previous 1000
        # tokens decay to 499.
        assert caught.value.retry_after == pytest.approx(0.06)
        status = await limiter.acquire([rule], 500)
        assert status.headers()["x-ratelimit-remaining-tokens"] == "0"

    limiters.run(scenario)


def test_concurrent_tokens_stop_at_limit(limiters: Limiters) -> None:
    async def scenario() -> None:
        limiter = limiters.make(None)
        rule = RateLimitRule("key:burst", tokens_per_minute=10_000)
        admitted, errors = await _admitted(limiter, [rule], 200, tokens=300)
        assert admitted == 33
        assert {e.limit_kind for e in errors} == {"tokens"}

    limiters.run(scenario)


def test_request_larger_than_limit_never_fits(limiters: Limiters) -> None:
    async def scenario() -> None:
        limiter = limiters.make(FakeClock())
        rule = RateLimitRule("key:small", tokens_per_minute=100)
        with pytest.raises(RateLimitExceeded, match="cannot be admitted"):
            await limiter.acquire([rule], 101)

    limiters.run(scenario)


def test_headers_show_tightest_rules(limiters: Limiters) -> None:
    async def scenario() -> None:
        limiter = limiters.make(FakeClock())
        key = RateLimitRule("key:h", requests_per_minute=10, tokens_per_minute=1000)
        team = RateLimitRule("team:h", requests_per_minute=5, tokens_per_minute=5000)
        status = await limiter.acquire([key, team], 100)
        assert status.headers() == {
            "x-ratelimit-limit-requests": "5",
            "x-ratelimit-remaining-requests": "4",
            "x-ratelimit-reset-requests": "1m0s",
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "900",
            # Tokens of this minute still weigh on the sliding window next minute.
            "x-ratelimit-reset-tokens": "2m0s",
        }

    limiters.run(scenario)


def test_headers_omit_unlimited_kind(limiters: Limiters) -> None:
    async def scenario() -> None:
        limiter = limiters.make(FakeClock())
        status = await limiter.acquire([RateLimitRule("key:r", 2)], 10)
        assert set(status.headers()) == {
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        }
        empty = await limiter.acquire([], 10)
        assert empty.headers() == {}

    limiters.run(scenario)


def test_exceeded_carries_retry_headers(limiters: Limiters) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        limiter = limiters.make(clock)
        rule = RateLimitRule("key:retry", requests_per_minute=2)
        await limiter.acquire([rule])
        clock.advance(15)
        await limiter.acquire([rule])
        clock.advance(5)
        with pytest.raises(RateLimitExceeded) as caught:
            await limiter.acquire([rule])
        headers = caught.value.headers()
        assert headers["retry-after"] == "40"
        assert headers["retry-after-ms"] == "40000"
        assert headers["x-ratelimit-limit-requests"] == "2"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["x-ratelimit-reset-requests"] == "55s"
        assert "2 requests in the last minute" in caught.value.message
        assert "limit of 2 requests per minute" in caught.value.message

    limiters.run(scenario)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0004, "1ms"),
        (0.12, "120ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (60, "1m0s"),
        (90.25, "1m30.25s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (-1, "0s"),
    ],
)
def test_duration_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_rule_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="requests_per_minute of key:x"):
        RateLimitRule("key:x", requests_per_minute=0)
    with pytest.raises(ValueError, match="scope must not be empty"):
        RateLimitRule("", tokens_per_minute=10)


def test_negative_tokens_rejected() -> None:
    limiter = MemoryRateLimiter()
    with pytest.raises(ValueError, match="non-negative integer, got -1"):
        run(limiter.acquire([RateLimitRule("key:n", 1)], -1))


def test_redis_keys_expire(redis_prefix: str) -> None:
    async def scenario() -> None:
        limiter = RedisRateLimiter(REDIS_URL, key_prefix=redis_prefix)
        await limiter.acquire([RateLimitRule("key:ttl", 5, 500)], 10)
        await limiter.close()

    run(scenario())
    client = redis.Redis.from_url(REDIS_URL)
    keys = sorted(k.decode() for k in client.scan_iter(match=f"{redis_prefix}*"))
    assert keys == [f"{redis_prefix}rpm:key:ttl", f"{redis_prefix}tpm:key:ttl"]
    for key in keys:
        assert 0 < client.pttl(key) <= 121_000
    client.close()


def test_redis_acquire_is_one_round_trip(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> list[str]:
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        limiter = RedisRateLimiter(client, key_prefix=redis_prefix)
        rules = [RateLimitRule("key:a", 10, 1000), RateLimitRule("team:b", 10)]
        await limiter.acquire(rules, 5)  # loads the script into Redis
        commands: list[str] = []
        original = client.execute_command

        async def counting(*args: Any, **options: Any) -> Any:
            commands.append(str(args[0]))
            return await original(*args, **options)

        monkeypatch.setattr(client, "execute_command", counting)
        await limiter.acquire(rules, 5)
        await limiter.close()
        await client.aclose()
        return commands

    assert run(scenario()) == ["EVALSHA"]


def test_unreachable_redis_raises_unavailable() -> None:
    # A port that this test bound and released, so nothing listens on it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0")
        try:
            await limiter.acquire([RateLimitRule("key:down", 1)])
        finally:
            await limiter.close()

    with pytest.raises(LimitsUnavailable, match="rate limit check failed in Redis"):
        run(scenario())
