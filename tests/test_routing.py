"""Routing through real servers: retries, fallbacks and circuit breakers.

Each test starts fake OpenAI upstreams whose faults it sets, and a keelway
server whose model groups spread over them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer
from tests.traces import wait_for_trace

CHAT = "/v1/chat/completions"


def _deployment(name: str, fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "base_url": fake.base_url,
        "api_key": "${FAKE_OPENAI_KEY}",
        **extra,
    }


@pytest.fixture
def fakes() -> Iterator[list[FakeOpenAI]]:
    started = [FakeOpenAI(record=False, slow_seconds=3.0, seed=n) for n in range(3)]
    for fake in started:
        fake.start()
    yield started
    for fake in started:
        fake.stop()


def _server(
    tmp_path: Any, database_url: str, models: dict[str, Any], routing: dict[str, Any]
) -> KeelwayServer:
    server = KeelwayServer(
        tmp_path,
        database_url,
        models,
        settings={"routing": routing},
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    return server.start()


def _post(
    server: KeelwayServer, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return httpx.post(
        server.url + CHAT,
        json=body,
        headers={"Authorization": f"Bearer {server.key}", **headers},
        timeout=30,
    )


def _chat(model: str = "chat", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


async def _load(
    server: KeelwayServer, total: int, concurrency: int
) -> list[tuple[int, str, bool]]:
    """Send ``total`` requests, half of them streamed; return status, id, stream."""
    results: list[tuple[int, str, bool]] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(total):
        queue.put_nowait(number)
    headers = {"Authorization": f"Bearer {server.key}"}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            number = queue.get_nowait()
            request_id = f"load-{uuid.uuid4().hex}"
            stream = number % 2 == 1
            body = _chat(stream=stream)
            async with client.stream(
                "POST",
                server.url + CHAT,
                json=body,
                headers={**headers, "X-Request-Id": request_id},
            ) as response:
                text = (await response.aread()).decode()
            ok = response.status_code == 200 and (
                not stream or ("[DONE]" in text and '"error"' not in text)
            )
            results.append((200 if ok else response.status_code, request_id, stream))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.wait_for(
            asyncio.gather(*(worker(client) for _ in range(concurrency))), 600
        )
    return results


def test_flaky_group_always_answers(
    tmp_path: Any, database_url: str, fakes: list[FakeOpenAI]
) -> None:
    primary, secondary, backup = fakes
    for fake in (primary, secondary):
        fake.fault_rate = 0.3
        fake.fault_modes = ("reset", "500", "429", "slow")
        fake.retry_after = "0.2"
    # Well above a healthy answer's milliseconds and below the 3 s stall.
    timeout = {"connect": 2, "first_token": 1.0, "total": 2.0}
    models = {
        "chat": {
            "deployments": [
                _deployment("primary", primary, timeout=timeout),
                _deployment("secondary", secondary, timeout=timeout),
            ],
            "fallbacks": ["backup"],
        },
        "backup": {"deployments": [_deployment("backup", backup)]},
    }
    routing = {
        "retries": {"max_retries": 2, "backoff_base": 0.02, "backoff_max": 0.2},
        "circuit_breaker": {"failures": 5, "window_seconds": 10, "cooldown_seconds": 1},
    }
    server = _server(tmp_path, database_url, models, routing)
    try:
        results = asyncio.run(_load(server, 1000, 16))
        failed = [r for r in results if r[0] != 200]
        assert failed == []
        assert len(results) == 1000

        traces = [wait_for_trace(server, request_id) for _, request_id, _ in results]
        retried = [t for t in traces if (t["attributes"] or {}).get("routing")]
        assert retried, "no request needed a retry, so the faults did not fire"
        fallbacks = [
            t for t in retried if t["attributes"]["routing"]["group"] == "backup"
        ]
        assert fallbacks, "no request fell back to the backup group"
        for trace in retried:
            routing = trace["attributes"]["routing"]
            attempts = [s for s in trace["spans"] if s["name"] == "provider"]
            failed_spans = [s for s in attempts if s["status"] == "error"]
            assert routing["attempts"] == len(attempts)
            # Every attempt but the last failed, with its error class.
            assert len(failed_spans) == len(attempts) - 1
            assert all(s["attributes"]["error_class"] for s in failed_spans)
            # At most 3 attempts in the group and then 3 in the fallback.
            assert len(attempts) <= 6
            # A first attempt on the fallback means every circuit was open.
            assert routing["attempts"] > 1 or routing["group"] == "backup"
    finally:
        server.close()


def test_retries_stop_at_maximum(
    tmp_path: Any, database_url: str, fakes: list[FakeOpenAI]
) -> None:
    broken = fakes[0]
    broken.fault = "500"
    models = {"chat": {"deployments": [_deployment("broken", broken)]}}
    routing = {
        "retries": {"max_retries": 2, "backoff_base": 0.01, "backoff_max": 0.05},
        "circuit_breaker": {"failures": 1000},
    }
    server = _server(tmp_path, database_url, models, routing)
    try:
        request_id = f"max-{uuid.uuid4().hex}"
        response = _post(server, _chat(), **{"X-Request-Id": request_id})
        assert response.status_code == 502
        assert broken.calls == 3
        trace = wait_for_trace(server, request_id)
        attempts = [s for s in trace["spans"] if s["name"] == "provider"]
        assert [s["attributes"]["attempt"] for s in attempts] == [1, 2, 3]
        assert all(s["status"] == "error" for s in attempts)
        assert trace["http_status"] == 502
    finally:
        server.close()


def test_breaker_isolates_failing_deployment(
    tmp_path: Any, database_url: str, fakes: list[FakeOpenAI]
) -> None:
    failing, healthy = fakes[0], fakes[1]
    failing.fault = "500"
    models = {
        "chat": {
            "deployments": [
                _deployment("failing", failing),
                _deployment("healthy", healthy),
            ]
        }
    }
    routing = {
        "retries": {"max_retries": 1, "backoff_base": 0.01, "backoff_max": 0.02},
        "circuit_breaker": {"failures": 3, "window_seconds": 60, "cooldown_seconds": 4},
    }
    server = _server(tmp_path, database_url, models, routing)
    try:
        for _ in range(60):
            assert _post(server, _chat()).status_code == 200
            if failing.calls >= 3:
                break
        opened = time.monotonic()
        assert failing.calls == 3
        assert _circuit(server, "failing") == "open"

        # While open, the failing deployment gets no traffic at all. The
        # requests stop well inside the cooldown, however slow the machine.
        sent = 0
        while sent < 20 and time.monotonic() - opened < 2.5:
            assert _post(server, _chat()).status_code == 200
            sent += 1
        assert sent > 0
        assert failing.calls == 3

        failing.fault = None
        time.sleep(max(0.0, 4.1 - (time.monotonic() - opened)))
        for _ in range(60):
            assert _post(server, _chat()).status_code == 200
            if failing.calls > 3:
                break
        assert failing.calls > 3
        assert _circuit(server, "failing") == "closed"
        assert _metric(server, "failing") == 0
    finally:
        server.close()


def _circuit(server: KeelwayServer, deployment: str) -> str:
    body = httpx.get(server.url + "/readyz", timeout=30).json()
    state: str = body["deployments"][deployment]["circuit"]
    return state


def _metric(server: KeelwayServer, deployment: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=30).text
    prefix = f'keelway_circuit_state{{deployment="{deployment}",model="chat"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    raise AssertionError(f"no circuit metric for {deployment}")


def test_all_open_is_keelway_error(
    tmp_path: Any, database_url: str, fakes: list[FakeOpenAI]
) -> None:
    broken = fakes[0]
    broken.fault = "reset"
    models = {"chat": {"deployments": [_deployment("broken", broken)]}}
    routing = {
        "retries": {"max_retries": 0},
        "circuit_breaker": {"failures": 1, "cooldown_seconds": 60},
    }
    server = _server(tmp_path, database_url, models, routing)
    try:
        first = _post(server, _chat())
        assert first.status_code == 502
        assert first.json()["error"]["type"] != "keelway_error"
        second = _post(server, _chat())
        assert second.status_code == 503
        error = second.json()["error"]
        assert error["type"] == "keelway_error"
        assert error["code"] == "deployments_unavailable"
        assert "Retry-After" in second.headers
        assert broken.calls == 1
    finally:
        server.close()


def test_context_overflow_uses_its_fallback(
    tmp_path: Any, database_url: str, fakes: list[FakeOpenAI]
) -> None:
    small, general, large = fakes
    small.fault = "context"
    models = {
        "chat": {
            "deployments": [_deployment("small", small)],
            "fallbacks": ["general"],
            "context_window_fallbacks": ["large"],
        },
        "general": {"deployments": [_deployment("general", general)]},
        "large": {"deployments": [_deployment("large", large)]},
    }
    server = _server(tmp_path, database_url, models, {"retries": {"max_retries": 2}})
    try:
        request_id = f"ctx-{uuid.uuid4().hex}"
        response = _post(server, _chat(), **{"X-Request-Id": request_id})
        assert response.status_code == 200
        # Overflow is not retried on the same group: straight to the fallback.
        assert small.calls == 1
        assert large.calls == 1
        assert general.calls == 0
        trace = wait_for_trace(server, request_id)
        assert trace["deployment"] == "large"
        assert trace["attributes"]["routing"] == {"attempts": 2, "group": "large"}
        spans = [s for s in trace["spans"] if s["name"] == "provider"]
        assert spans[0]["attributes"]["error_class"] == "context_window_exceeded"
    finally:
        server.close()


def test_refusal_is_returned_not_rerouted(
    tmp_path: Any, database_url: str, fakes: list[FakeOpenAI]
) -> None:
    strict, lenient = fakes[0], fakes[1]
    strict.fault = "policy"
    models = {
        "chat": {
            "deployments": [_deployment("strict", strict)],
            "fallbacks": ["other"],
        },
        "other": {"deployments": [_deployment("lenient", lenient)]},
    }
    server = _server(tmp_path, database_url, models, {})
    try:
        response = _post(server, _chat())
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "content_policy_violation"
        assert strict.calls == 1
        assert lenient.calls == 0
    finally:
        server.close()


def test_slow_stream_moves_before_first_byte(
    tmp_path: Any, database_url: str, fakes: list[FakeOpenAI]
) -> None:
    slow, quick = fakes[0], fakes[1]
    slow.fault = "slow"
    timeout = {"first_token": 1.0, "total": 30}
    models = {
        "chat": {
            "deployments": [
                _deployment("slow", slow, timeout=timeout, weight=1000),
                _deployment("quick", quick, timeout=timeout, weight=0.001),
            ]
        }
    }
    routing = {"retries": {"max_retries": 1, "backoff_base": 0.01}}
    server = _server(tmp_path, database_url, models, routing)
    try:
        request_id = f"slow-{uuid.uuid4().hex}"
        response = _post(server, _chat(stream=True), **{"X-Request-Id": request_id})
        assert response.status_code == 200
        events = [
            orjson.loads(line[6:])
            for line in response.text.splitlines()
            if line.startswith("data: {")
        ]
        text = "".join(
            e["choices"][0]["delta"].get("content") or ""
            for e in events
            if e["choices"]
        )
        assert text == "Hello from the fake upstream."
        trace = wait_for_trace(server, request_id)
        assert trace["deployment"] == "quick"
        spans = [s for s in trace["spans"] if s["name"] == "provider"]
        assert spans[0]["attributes"]["error_class"] == "timeout"
    finally:
        server.close()


def test_sticky_user_keeps_deployment(
    tmp_path: Any, database_url: str, fakes: list[FakeOpenAI]
) -> None:
    models = {
        "chat": {
            "deployments": [_deployment(f"d{n}", fake) for n, fake in enumerate(fakes)],
            "sticky": "user",
        }
    }
    server = _server(tmp_path, database_url, models, {})
    try:
        seen: dict[str, set[str]] = {}
        for round_number in range(3):
            for user in ("ann", "bob", "cyd", "dee", "eve", "fay"):
                request_id = f"sticky-{round_number}-{user}-{uuid.uuid4().hex[:6]}"
                response = _post(
                    server, _chat(user=user), **{"X-Request-Id": request_id}
                )
                assert response.status_code == 200
                trace = wait_for_trace(server, request_id)
                seen.setdefault(user, set()).add(trace["deployment"])
        assert all(len(deployments) == 1 for deployments in seen.values())
    finally:
        server.close()
