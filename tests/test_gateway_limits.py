"""Rate limits and budgets through the gateway, with the machine's Redis.

Requests go through real keelway servers to the fake OpenAI upstream, whose
default usage is 12 prompt and 6 completion tokens (4 tokens per embedding
input). Deployments here price every token at $100 per million, so a chat
completion costs exactly $0.0018 and an embedding $0.0004.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import text

from tests.conftest import openai_models
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer

REDIS_URL = os.environ.get("KEELWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PRICE = {"input": 100, "output": 100}
# Long enough that the input estimate (about 4 characters a token) exceeds
# the fake's 12 reported prompt tokens, so no call costs more than it reserved.
QUESTION = "Please answer this question about the weather in Paris in April. " * 2


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(record=False) as fake:
        yield fake


@pytest.fixture(scope="module")
def broken() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(record=False) as fake:
        fake.fault = "500"
        yield fake


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own, with its keys deleted after."""
    name = f"keelway-test:{uuid.uuid4().hex[:12]}:"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{name}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _models(fake: FakeOpenAI, broken: FakeOpenAI | None) -> dict[str, Any]:
    models = openai_models(fake.base_url, ["gpt-4o"], price=PRICE)
    models["embed"] = openai_models(fake.base_url, ["embed"], price=PRICE)["embed"]
    if broken is not None:
        # Every call to "primary" fails, so its requests are served by the
        # fallback group after retries, and charged once.
        models["primary"] = {
            **openai_models(broken.base_url, ["primary"], price=PRICE)["primary"],
            "fallbacks": ["gpt-4o"],
        }
    return models


def _server(
    folder: Any,
    database_url: str,
    fake: FakeOpenAI,
    limits: dict[str, Any],
    broken: FakeOpenAI | None = None,
) -> KeelwayServer:
    server = KeelwayServer(
        folder,
        database_url,
        _models(fake, broken),
        settings={
            "limits": limits,
            "routing": {"retries": {"backoff_base": 0.01, "backoff_max": 0.05}},
        },
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    return server.start()


def _request(route: str) -> tuple[str, dict[str, Any]]:
    if route == "embeddings":
        return "/v1/embeddings", {"model": "embed", "input": QUESTION}
    messages = [{"role": "user", "content": QUESTION}]
    if route == "messages":
        body = {"model": "gpt-4o", "max_tokens": 6, "messages": messages}
        return "/v1/messages", body
    body = {"model": "gpt-4o", "max_tokens": 6, "messages": messages}
    if route == "stream":
        body["stream"] = True
    if route == "fallback":
        body["model"] = "primary"
    return "/v1/chat/completions", body


async def _burst(
    urls: list[str], key: str, route: str, total: int
) -> list[httpx.Response]:
    path, body = _request(route)
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=total)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(number: int) -> httpx.Response:
            url = urls[number % len(urls)] + path
            response = await client.post(url, json=body, headers=headers)
            await response.aread()
            return response

        return await asyncio.wait_for(
            asyncio.gather(*(one(n) for n in range(total))), 120
        )


def test_two_servers_share_one_rpm_limit(
    tmp_path: Any, database_url: str, upstream: FakeOpenAI, prefix: str
) -> None:
    limits = {"redis_url": REDIS_URL, "key_prefix": prefix}
    first = _server(tmp_path / "a", database_url, upstream, limits)
    second = _server(tmp_path / "b", database_url, upstream, limits)
    try:
        _, key = first.keys.create(f"rpm-{uuid.uuid4().hex[:8]}", rpm=50)
        responses = asyncio.run(_burst([first.url, second.url], key, "chat", 200))
        passed = [r for r in responses if r.status_code == 200]
        limited = [r for r in responses if r.status_code == 429]
        assert len(passed) == 50
        assert len(limited) == 150
        error = limited[0].json()["error"]
        assert error["type"] == "keelway_error"
        assert error["code"] == "keelway_rate_limited"
        assert int(limited[0].headers["retry-after"]) >= 1
        assert limited[0].headers["x-ratelimit-limit-requests"] == "50"
        assert limited[0].headers["x-ratelimit-remaining-requests"] == "0"
        assert passed[0].headers["x-ratelimit-limit-requests"] == "50"
    finally:
        first.close()
        second.close()


def test_provider_rate_limit_is_not_keelways(
    tmp_path: Any, database_url: str, upstream: FakeOpenAI
) -> None:
    server = _server(tmp_path, database_url, upstream, {})
    try:
        upstream.fault = "429"
        upstream.retry_after = "60"
        response = httpx.post(
            server.url + "/v1/chat/completions",
            json=_request("chat")[1],
            headers={"Authorization": f"Bearer {server.key}"},
            timeout=30,
        )
        assert response.status_code == 429
        assert response.json()["error"]["type"] != "keelway_error"
    finally:
        upstream.fault = None
        upstream.retry_after = "1"
        server.close()


BUDGET = Decimal("0.05")
CASES = [
    ("chat", "memory"),
    ("stream", "memory"),
    ("messages", "memory"),
    ("embeddings", "memory"),
    ("fallback", "memory"),
    ("chat", "redis"),
]


@pytest.mark.parametrize(
    ("route", "backend"), CASES, ids=[f"{r}-{b}" for r, b in CASES]
)
def test_budget_holds_under_concurrency(
    tmp_path: Any,
    database_url: str,
    upstream: FakeOpenAI,
    broken: FakeOpenAI,
    prefix: str,
    route: str,
    backend: str,
) -> None:
    limits = (
        {"redis_url": REDIS_URL, "key_prefix": prefix} if backend == "redis" else {}
    )
    server = _server(tmp_path, database_url, upstream, limits, broken)
    try:
        record, key = server.keys.create(
            f"budget-{uuid.uuid4().hex[:8]}", budget_usd=BUDGET, budget_period="day"
        )
        responses = asyncio.run(_burst([server.url], key, route, 100))
        passed = [r for r in responses if r.status_code == 200]
        rejected = [r for r in responses if r.status_code == 429]
        assert len(passed) + len(rejected) == 100
        assert rejected, "the budget never ran out"
        body = rejected[0].json()
        error = body["error"] if "error" in body and route != "messages" else body
        if route == "messages":
            assert body["type"] == "error"
        else:
            assert error["type"] == "keelway_error"
            assert error["code"] == "keelway_budget_exceeded"
        assert rejected[0].headers["x-should-retry"] == "false"

        cost = Decimal("0.0004") if route == "embeddings" else Decimal("0.0018")
        spent = cost * len(passed)
        # Each request reserves its input estimate plus max_tokens: under
        # 50 tokens at $100 per million.
        reservation = Decimal("0.005")
        assert spent <= BUDGET + reservation
        ledger, traced, count = _wait_for_ledger(server, record.id, 100)
        assert count == 100
        assert ledger == spent
        assert traced == spent
    finally:
        server.close()


def _wait_for_ledger(
    server: KeelwayServer, key_id: str, expected: int
) -> tuple[Decimal, Decimal, int]:
    """Return the ledger sum, the traced cost and the trace count of a key."""
    for _ in range(100):
        with server.database.engine.connect() as connection:
            count = connection.execute(
                text("SELECT count(*) FROM traces WHERE key_id = :k"), {"k": key_id}
            ).scalar_one()
            if count >= expected:
                nano = connection.execute(
                    text(
                        "SELECT coalesce(sum(amount_nano_usd), 0) FROM budget_ledger"
                        " WHERE scope = :s"
                    ),
                    {"s": f"key:{key_id}"},
                ).scalar_one()
                costs = connection.execute(
                    text("SELECT cost_usd FROM traces WHERE key_id = :k"),
                    {"k": key_id},
                ).scalars()
                traced = sum(
                    (Decimal(str(c)) for c in costs if c is not None), Decimal(0)
                )
                return (
                    Decimal(nano) / Decimal(10**9),
                    traced.quantize(Decimal("0.000001")),
                    count,
                )
        asyncio.run(asyncio.sleep(0.1))
    raise AssertionError(f"traces of key {key_id} did not reach {expected}")
