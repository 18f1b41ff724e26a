"""Hostile inputs against routing, limits and the response cache.

Each test runs real ``keelway`` processes (``keelway serve`` or ``keelway
keys``) against the fake OpenAI upstream or the machine's Redis. The tests
first group cover inputs that once gave a traceback, a 500, a leaked
password or a cache entry crossing prompt versions. The rest pin down
behaviour of the same features that other tests do not cover.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from tests.conftest import openai_models
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer
from tests.traces import wait_for_trace

CHAT = "/v1/chat/completions"
REDIS_URL = os.environ.get("KEELWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# $1,000 per million tokens: a request with max_tokens 1000 reserves about $1.
PRICE = {"input": 1000, "output": 1000}
SECRET = "hunter2pw"


def _closed_port() -> int:
    """Return a loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _deployment(name: str, fake: FakeOpenAI, model: str = "gpt-4o") -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai",
        "model": model,
        "base_url": fake.base_url,
        "api_key": "${FAKE_OPENAI_KEY}",
        "price": PRICE,
    }


def _serve_once(folder: Path, config: dict[str, Any], wait: float = 12) -> str:
    """Run ``keelway serve`` on a config it should reject and return its output.

    A server that starts anyway is stopped, and the test fails.
    """
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "server": {"host": "127.0.0.1", "port": 0},
        "database": {"url": f"sqlite:///{folder / 'keelway.db'}"},
        **config,
    }
    path = folder / "keelway.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "KEELWAY_HOME": str(folder / "home"),
        "FAKE_OPENAI_KEY": API_KEY,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "keelway", "serve", "--config", str(path)],
        env=env,
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
        pytest.fail(f"keelway serve started on an invalid config:\n{output}")
    assert process.returncode != 0, output
    return output


def _assert_one_line(output: str, field: str) -> None:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert field in lines[0], output


def _unhandled(server: KeelwayServer) -> list[str]:
    return [
        line
        for line in server.log().splitlines()
        if "unhandled error" in line or "Exception in ASGI application" in line
    ]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(record=False, slow_seconds=2.0) as fake:
        yield fake


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, upstream: FakeOpenAI
) -> Iterator[KeelwayServer]:
    """A server with in-process limits, the exact cache and sticky routing."""
    models: dict[str, Any] = {
        "gpt-4o": {
            "sticky": "metadata.tenant",
            "deployments": [
                _deployment("east", upstream),
                _deployment("west", upstream),
            ],
        },
        "long-answer": {"deployments": [_deployment("long", upstream, "long-answer")]},
    }
    server = KeelwayServer(
        tmp_path_factory.mktemp("hostile-limited"),
        database_url,
        models,
        settings={
            "limits": {"users": {"rpm": 1000}},
            "cache": {"exact": {"enabled": True}},
        },
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    server.start()
    yield server
    server.close()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own, with its keys deleted after."""
    name = f"keelway-hostile:{uuid.uuid4().hex[:12]}:"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{name}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _chat(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}


def _post(
    server: KeelwayServer, body: dict[str, Any], key: str | None = None, **headers: str
) -> httpx.Response:
    return httpx.post(
        server.url + CHAT,
        json=body,
        headers={"Authorization": f"Bearer {key or server.key}", **headers},
        timeout=30,
    )


# Inputs that once failed badly.


def test_keys_create_huge_rpm(tmp_path: Path, database_url: str) -> None:
    """A per-minute limit past a 32-bit integer is a one-line error."""
    server = KeelwayServer(tmp_path, database_url, {})
    try:
        for flag in ("--rpm", "--tpm"):
            result = server.cli(
                "keys",
                "create",
                "--name",
                f"huge-{uuid.uuid4().hex[:8]}",
                flag,
                "99999999999999999999",
                check=False,
            )
            output = result.stdout + result.stderr
            assert result.returncode != 0, output
            assert "Traceback" not in output, output
            assert flag.removeprefix("--") in output, output
    finally:
        server.close()


@pytest.mark.parametrize("section", ["limits", "cache"])
def test_bad_redis_url_error_hides_password(tmp_path: Path, section: str) -> None:
    """A config error about a redis_url hides the URL's password."""
    url = f"redi://:{SECRET}@127.0.0.1:6379/0"
    settings: dict[str, Any] = {"redis_url": url}
    if section == "cache":
        settings["backend"] = "redis"
    output = _serve_once(tmp_path, {"models": {}, section: settings})
    _assert_one_line(output, f"{section}.redis_url")
    assert SECRET not in output


def test_unreachable_limits_redis_fails_start(tmp_path: Path) -> None:
    """A limits Redis that cannot be reached stops the server at start."""
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    output = _serve_once(tmp_path, {"models": {}, "limits": {"redis_url": url}})
    _assert_one_line(output, "limits.redis_url")


def test_budget_with_redis_gone_is_503(
    tmp_path: Path, database_url: str, upstream: FakeOpenAI
) -> None:
    """A Redis that stops after start makes budgeted requests 503, not 500."""
    port = _closed_port()
    redis_server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = KeelwayServer(
        tmp_path,
        database_url,
        openai_models(upstream.base_url, ["gpt-4o"], price=PRICE),
        settings={"limits": {"redis_url": f"redis://127.0.0.1:{port}/0"}},
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    try:
        _wait_for_port(port)
        server.start()
        _, key = server.keys.create(
            f"budget-{uuid.uuid4().hex[:8]}", budget_usd=Decimal("5")
        )
        assert _post(server, _chat(max_tokens=5), key).status_code == 200
        redis_server.terminate()
        redis_server.wait(10)
        response = _post(server, _chat(max_tokens=5), key)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["type"] == "keelway_error"
        assert error["code"] == "keelway_limits_unavailable"
        assert _unhandled(server) == []
    finally:
        server.close()
        if redis_server.poll() is None:
            redis_server.kill()
            redis_server.wait(10)


def _wait_for_port(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"redis-server did not listen on port {port}")


@pytest.mark.parametrize(
    "extra", [{"max_tokens": 10**15}, {"max_tokens": 10**14, "n": 16}]
)
def test_huge_max_tokens_budget_rejected(
    limited: KeelwayServer, extra: dict[str, Any]
) -> None:
    """A maximum cost past any budget's range is rejected as over budget."""
    _, key = limited.keys.create(
        f"budget-{uuid.uuid4().hex[:8]}", budget_usd=Decimal("5")
    )
    before = len(_unhandled(limited))
    response = _post(limited, _chat(**extra), key)
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "keelway_budget_exceeded"
    assert len(_unhandled(limited)) == before


def test_long_prompt_versions_split_cache(
    limited: KeelwayServer, upstream: FakeOpenAI
) -> None:
    """Prompt labels past the trace's 200 characters still split entries."""
    stem = "release-" + "p" * 200
    body = _chat(f"question {uuid.uuid4().hex}", temperature=0)
    calls = upstream.calls
    for version in (f"{stem}-v1", f"{stem}-v2"):
        response = _post(limited, {**body, "metadata": {"prompt": version}})
        assert response.status_code == 200, response.text
        time.sleep(0.3)
    assert upstream.calls - calls == 2


def test_long_registry_reference_rejected(limited: KeelwayServer) -> None:
    """A registry reference too long to be a prompt name gets a 422, not a 500."""
    reference = "release-" + "p" * 300 + "@production"
    response = _post(limited, _chat("hello"), **{"X-Keelway-Prompt": reference})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_prompt_reference"


def test_duplicate_deployment_names_rejected(
    tmp_path: Path, upstream: FakeOpenAI
) -> None:
    """Deployment names must be unique: breakers and limits are keyed by name."""
    models = {
        "chat": {
            "deployments": [
                _deployment("same", upstream),
                _deployment("same", upstream),
            ]
        }
    }
    output = _serve_once(tmp_path, {"models": models})
    _assert_one_line(output, "models.chat.deployments[1].name")


@pytest.mark.parametrize("sticky", ["users", "metadata."])
def test_sticky_field_must_be_known(
    tmp_path: Path, upstream: FakeOpenAI, sticky: str
) -> None:
    """A sticky field other than user or metadata.<key> stops the start."""
    models = {"chat": {"sticky": sticky, "deployments": [_deployment("a", upstream)]}}
    output = _serve_once(tmp_path, {"models": models})
    _assert_one_line(output, "models.chat.sticky")


# Behaviour that is already right.


@pytest.mark.parametrize(
    ("models", "field"),
    [
        ({"chat": {"fallbacks": ["nope"]}}, "models.chat.fallbacks[0]"),
        ({"chat": {"fallbacks": ["chat"]}}, "models.chat.fallbacks[0]"),
        (
            {"chat": {"context_window_fallbacks": ["chat"]}},
            "models.chat.context_window_fallbacks[0]",
        ),
    ],
    ids=["unknown", "self", "self-context"],
)
def test_bad_fallbacks_fail_at_start(
    tmp_path: Path, upstream: FakeOpenAI, models: dict[str, Any], field: str
) -> None:
    for group in models.values():
        group["deployments"] = [_deployment("a", upstream)]
    _assert_one_line(_serve_once(tmp_path, {"models": models}), field)


def test_router_semantic_checks_fail_start(
    tmp_path: Path, upstream: FakeOpenAI
) -> None:
    models = {
        "chat": {"deployments": [_deployment("a", upstream)]},
        "big": {"deployments": [_deployment("b", upstream)]},
    }
    clash = {
        "models": models,
        "routers": {"chat": {"simple": "chat", "complex": "big"}},
    }
    _assert_one_line(_serve_once(tmp_path / "clash", clash), "routers.chat")
    semantic = {"models": models, "cache": {"semantic": {"enabled": True}}}
    _assert_one_line(
        _serve_once(tmp_path / "semantic", semantic), "cache.semantic.embedding_model"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--rpm", "0"],
        ["--rpm", "-5"],
        ["--tpm", "abc"],
        ["--budget", "0"],
        ["--budget", "nan"],
        ["--budget", "1e30"],
        ["--budget", "5", "--budget-soft", "6"],
    ],
    ids=lambda a: " ".join(a),
)
def test_keys_create_bad_limits(
    tmp_path: Path, database_url: str, args: list[str]
) -> None:
    server = KeelwayServer(tmp_path, database_url, {})
    try:
        name = f"bad-{uuid.uuid4().hex[:8]}"
        result = server.cli("keys", "create", "--name", name, *args, check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert "Traceback" not in output, output
        assert "Error:" in output, output
    finally:
        server.close()


@pytest.mark.parametrize("value", [5, [1], {"a": 1}, None, "", True])
def test_bad_metadata_cache_directive_is_400(
    limited: KeelwayServer, value: Any
) -> None:
    response = _post(limited, _chat(temperature=0, metadata={"cache": value}))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_cache_directive"
    assert error["param"] == "metadata.cache"


def test_empty_cache_header_is_400(limited: KeelwayServer) -> None:
    response = _post(limited, _chat(temperature=0), **{"X-Keelway-Cache": ""})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_cache_directive"


@pytest.mark.parametrize(
    "tenant", [{"x": 1}, [1, 2], 1.5, True, 10**18, "t" * 100_000, None]
)
def test_sticky_metadata_any_type_served(limited: KeelwayServer, tenant: Any) -> None:
    response = _post(limited, _chat(max_tokens=5, metadata={"tenant": tenant}))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("when", ["before_first_chunk", "mid_stream"])
def test_aborted_stream_releases_reservation(
    limited: KeelwayServer, upstream: FakeOpenAI, when: str
) -> None:
    # One open reservation of about $1 fits in $1.50, but two do not.
    _, key = limited.keys.create(
        f"abort-{uuid.uuid4().hex[:8]}", budget_usd=Decimal("1.5")
    )
    request_id = f"abort-{uuid.uuid4().hex}"
    model = "gpt-4o" if when == "before_first_chunk" else "long-answer"
    body = {**_chat(max_tokens=1000), "model": model, "stream": True}
    headers = {"Authorization": f"Bearer {key}", "X-Request-Id": request_id}
    if when == "before_first_chunk":
        upstream.fault = "slow"

    try:
        try:
            with httpx.stream(
                "POST",
                limited.url + CHAT,
                json=body,
                headers=headers,
                timeout=httpx.Timeout(30, read=0.5),
            ) as response:
                for number, _ in enumerate(response.iter_bytes()):
                    if number >= 2:
                        break
        except httpx.ReadTimeout:
            pass
        time.sleep(upstream.slow_seconds + 1)
    finally:
        upstream.fault = None

    # The trace of the aborted stream is written, so its charge is settled.
    wait_for_trace(limited, request_id)
    response = _post(limited, _chat(f"after {uuid.uuid4().hex}", max_tokens=1000), key)
    assert response.status_code == 200, response.text


def test_odd_users_with_redis_limits(
    tmp_path: Path, database_url: str, upstream: FakeOpenAI, prefix: str
) -> None:
    server = KeelwayServer(
        tmp_path,
        database_url,
        openai_models(upstream.base_url, ["gpt-4o"], price=PRICE),
        settings={
            "limits": {
                "redis_url": REDIS_URL,
                "key_prefix": prefix,
                "users": {"rpm": 100, "tpm": 10**9},
            }
        },
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    try:
        server.start()
        for user in ("a*{b}:\n\u00e9" * 50, "u" * 100_000):
            response = _post(server, _chat(max_tokens=5, user=user))
            assert response.status_code == 200, response.text
        response = _post(server, _chat(max_tokens=10**18, user="bob"))
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "keelway_rate_limited"
        assert _unhandled(server) == []
    finally:
        server.close()
