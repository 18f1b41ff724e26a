"""Bad requests and failing upstreams get the right status and an OpenAI error body."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.openai_upstream import API_KEY
from tests.servers import KeelwayServer

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hi"}]


def _json(body: Any) -> bytes:
    return orjson.dumps(body)


# (name, path, raw body, key choice, expected status, expected error code)
CASES = [
    (
        "malformed json",
        CHAT,
        b'{"model": "gpt-4o", "messages": [',
        "valid",
        400,
        "invalid_json",
    ),
    ("empty body", CHAT, b"", "valid", 400, "invalid_json"),
    ("json array body", CHAT, b"[1, 2]", "valid", 400, "invalid_json"),
    (
        "invalid utf-8",
        CHAT,
        b'{"model": "gpt-4o", "messages": "\xff\xfe"}',
        "valid",
        400,
        "invalid_utf8",
    ),
    (
        "missing messages",
        CHAT,
        _json({"model": "gpt-4o"}),
        "valid",
        422,
        "invalid_field",
    ),
    ("missing model", CHAT, _json({"messages": HELLO}), "valid", 422, "invalid_field"),
    (
        "wrong-typed temperature",
        CHAT,
        _json({"model": "gpt-4o", "messages": HELLO, "temperature": "hot"}),
        "valid",
        422,
        "invalid_field",
    ),
    (
        "wrong-typed messages",
        CHAT,
        _json({"model": "gpt-4o", "messages": "hi"}),
        "valid",
        422,
        "invalid_field",
    ),
    (
        "unknown role",
        CHAT,
        _json({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}),
        "valid",
        422,
        "invalid_field",
    ),
    (
        "n out of range",
        CHAT,
        _json({"model": "gpt-4o", "messages": HELLO, "n": 0}),
        "valid",
        422,
        "invalid_field",
    ),
    (
        "unknown model",
        CHAT,
        _json({"model": "no-such-model", "messages": HELLO}),
        "valid",
        404,
        "model_not_found",
    ),
    (
        "missing key",
        CHAT,
        _json({"model": "gpt-4o", "messages": HELLO}),
        "none",
        401,
        "missing_api_key",
    ),
    (
        "wrong key",
        CHAT,
        _json({"model": "gpt-4o", "messages": HELLO}),
        "wrong",
        401,
        "invalid_api_key",
    ),
    (
        "revoked key",
        CHAT,
        _json({"model": "gpt-4o", "messages": HELLO}),
        "revoked",
        401,
        "revoked_api_key",
    ),
    (
        "body over limit",
        CHAT,
        _json(
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 70_000}]}
        ),
        "valid",
        413,
        "request_too_large",
    ),
    (
        "upstream timeout",
        CHAT,
        _json({"model": "slow", "messages": HELLO}),
        "valid",
        504,
        "upstream_timeout",
    ),
    (
        "upstream garbage",
        CHAT,
        _json({"model": "garbage", "messages": HELLO}),
        "valid",
        502,
        "upstream_invalid_response",
    ),
    (
        "upstream server error",
        CHAT,
        _json({"model": "error-500", "messages": HELLO}),
        "valid",
        502,
        "upstream_error",
    ),
    (
        "upstream rejects keelway's key",
        CHAT,
        _json({"model": "error-401", "messages": HELLO}),
        "valid",
        502,
        "invalid_api_key",
    ),
    (
        "upstream rate limit",
        CHAT,
        _json({"model": "error-429", "messages": HELLO}),
        "valid",
        429,
        "rate_limit_exceeded",
    ),
    (
        "streamed upstream timeout",
        CHAT,
        _json({"model": "slow", "messages": HELLO, "stream": True}),
        "valid",
        504,
        "upstream_timeout",
    ),
    (
        "streamed upstream garbage",
        CHAT,
        _json({"model": "garbage", "messages": HELLO, "stream": True}),
        "valid",
        502,
        "upstream_invalid_response",
    ),
    (
        "embeddings on a chat model",
        "/v1/embeddings",
        _json({"model": "gpt-4o-embed-missing", "input": "x"}),
        "valid",
        404,
        "model_not_found",
    ),
    (
        "embeddings without input",
        "/v1/embeddings",
        _json({"model": "gpt-4o"}),
        "valid",
        422,
        "invalid_field",
    ),
    ("unknown route", "/v1/nothing-here", b"{}", "valid", 404, "route_not_found"),
]


@pytest.fixture(scope="module")
def revoked_key(gateway: KeelwayServer) -> str:
    record, secret = gateway.keys.create(f"revoked-{uuid.uuid4().hex[:6]}")
    gateway.keys.revoke(record.name)
    return secret


def _headers(choice: str, gateway: KeelwayServer, revoked: str) -> dict[str, str]:
    keys = {"valid": gateway.key, "wrong": "kw-not-a-real-key", "revoked": revoked}
    headers = {"Content-Type": "application/json"}
    if choice in keys:
        headers["Authorization"] = f"Bearer {keys[choice]}"
    return headers


@pytest.mark.parametrize(
    ("name", "path", "body", "key", "status", "code"), CASES, ids=[c[0] for c in CASES]
)
def test_error_table(
    gateway: KeelwayServer,
    revoked_key: str,
    name: str,
    path: str,
    body: bytes,
    key: str,
    status: int,
    code: str,
) -> None:
    response = httpx.post(
        gateway.url + path,
        content=body,
        headers=_headers(key, gateway, revoked_key),
        timeout=10,
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["type"], str)
    assert "Traceback" not in response.text


def test_wrong_type_names_the_field(gateway: KeelwayServer) -> None:
    body = {"model": "gpt-4o", "messages": HELLO, "temperature": "hot"}
    response = httpx.post(
        gateway.url + CHAT,
        json=body,
        headers={"Authorization": f"Bearer {gateway.key}"},
    )
    error = response.json()["error"]
    assert error["param"] == "temperature"
    assert "temperature" in error["message"]


def test_rate_limit_keeps_retry_after(gateway: KeelwayServer) -> None:
    body = {"model": "error-429", "messages": HELLO}
    response = httpx.post(
        gateway.url + CHAT,
        json=body,
        headers={"Authorization": f"Bearer {gateway.key}"},
    )
    assert response.headers["retry-after"] == "7"


def test_upstream_key_never_echoed(gateway: KeelwayServer) -> None:
    body = {"model": "error-401", "messages": HELLO}
    response = httpx.post(
        gateway.url + CHAT,
        json=body,
        headers={"Authorization": f"Bearer {gateway.key}"},
    )
    assert API_KEY not in response.text
    assert "[redacted]" in response.json()["error"]["message"]


def test_stream_cut_ends_with_error_event(gateway: KeelwayServer) -> None:
    body = {"model": "cut-stream", "messages": HELLO, "stream": True}
    response = httpx.post(
        gateway.url + CHAT,
        json=body,
        headers={"Authorization": f"Bearer {gateway.key}"},
        timeout=10,
    )
    assert response.status_code == 200
    events = [
        line[6:] for line in response.text.splitlines() if line.startswith("data: ")
    ]
    last = orjson.loads(events[-1])
    assert last["error"]["code"] == "upstream_invalid_response"


def test_wrong_method_is_405(gateway: KeelwayServer) -> None:
    response = httpx.get(gateway.url + CHAT)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_server_log_has_no_traceback(gateway: KeelwayServer) -> None:
    assert "Traceback" not in gateway.log()
