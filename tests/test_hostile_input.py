"""Hostile input: every bad request gets a clean error of the documented shape.

``EDGE_CASES`` are requests that once gave a 500, the wrong status or the
wrong error shape: deep nesting, Anthropic-shaped errors, empty embedding
input. ``CONTRACT`` covers the rest of the error table in docs/gateway.md
that tests/test_gateway_errors.py does not.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.openai_upstream import API_KEY
from tests.servers import KeelwayServer

CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
MESSAGES = "/v1/messages"
MODELS = "/v1/models"
HELLO = [{"role": "user", "content": "hi"}]
TIMEOUT = 10


def _json(body: Any) -> bytes:
    return orjson.dumps(body)


def _nested(depth: int) -> bytes:
    """A JSON array nested ``depth`` levels deep."""
    return b"[" * depth + b"]" * depth


def _chat_with(field: bytes) -> bytes:
    """A valid chat body with one extra raw JSON member appended."""
    return (
        b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],' + field + b"}"
    )


def _messages(**fields: Any) -> bytes:
    body = {"model": "gpt-4o", "max_tokens": 16, "messages": HELLO, **fields}
    return _json(body)


def _send(
    gateway: KeelwayServer,
    path: str,
    body: bytes | None = None,
    *,
    method: str = "POST",
    key: str | None = "valid",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"Content-Type": "application/json"}
    if key == "valid":
        sent["Authorization"] = f"Bearer {gateway.key}"
    sent.update(headers or {})
    return httpx.request(
        method, gateway.url + path, content=body, headers=sent, timeout=TIMEOUT
    )


def _check_error(
    response: httpx.Response,
    status: int,
    code: str | None,
    style: str,
    param: str | None = None,
) -> None:
    """Assert the status, the JSON content type and the route's error shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    body = response.json()
    if style == "anthropic":
        assert body["type"] == "error", body
        assert isinstance(body["error"]["type"], str)
        assert isinstance(body["error"]["message"], str)
        assert body["error"]["message"]
        return
    error = body["error"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error


# (name, method, path, raw body, expected status, expected OpenAI code or None)
EDGE_CASES = [
    # orjson.loads accepts 1024 levels of nesting but orjson.dumps only 254, so
    # a body between the two is read and then fails with a 500 on serializing.
    (
        "chat: extra field nested 300 deep",
        "POST",
        CHAT,
        _chat_with(b'"x":' + _nested(300)),
        400,
        "invalid_json",
    ),
    (
        "chat: metadata nested 1000 deep",
        "POST",
        CHAT,
        _chat_with(b'"metadata":{"a":' + _nested(1000) + b"}"),
        400,
        "invalid_json",
    ),
    (
        "chat: content part nested 300 deep",
        "POST",
        CHAT,
        b'{"model":"gpt-4o","messages":[{"role":"user","content":'
        b'[{"type":"text","text":"a","x":' + _nested(300) + b"}]}]}",
        400,
        "invalid_json",
    ),
    (
        "chat: streamed, nested 300 deep",
        "POST",
        CHAT,
        _chat_with(b'"stream":true,"x":' + _nested(300)),
        400,
        "invalid_json",
    ),
    (
        "chat: unknown model, nested 300 deep",
        "POST",
        CHAT,
        b'{"model":"no-such-model","messages":[],"x":' + _nested(300) + b"}",
        400,
        "invalid_json",
    ),
    (
        "embeddings: nested 300 deep",
        "POST",
        EMBED,
        b'{"model":"gpt-4o","input":"x","x":' + _nested(300) + b"}",
        400,
        "invalid_json",
    ),
    (
        "messages: nested 300 deep",
        "POST",
        MESSAGES,
        b'{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user",'
        b'"content":"hi"}],"x":' + _nested(300) + b"}",
        400,
        None,
    ),
    # /v1/messages returns its 405 in OpenAI's error shape, not Anthropic's.
    ("messages: GET", "GET", MESSAGES, None, 405, None),
    ("messages: PUT", "PUT", MESSAGES, b"{}", 405, None),
    ("messages: DELETE", "DELETE", MESSAGES, None, 405, None),
    # /v1/messages rejects a wrong-valued field with 400, but the contract (and
    # /v1/chat/completions for the same mistakes) requires 422.
    (
        "messages: unknown role",
        "POST",
        MESSAGES,
        _messages(messages=[{"role": "wizard", "content": "x"}]),
        422,
        None,
    ),
    (
        "messages: system role inside messages",
        "POST",
        MESSAGES,
        _messages(messages=[{"role": "system", "content": "x"}]),
        422,
        None,
    ),
    (
        "messages: message without role",
        "POST",
        MESSAGES,
        _messages(messages=[{"content": "x"}]),
        422,
        None,
    ),
    (
        "messages: message without content",
        "POST",
        MESSAGES,
        _messages(messages=[{"role": "user"}]),
        422,
        None,
    ),
    (
        "messages: content is a number",
        "POST",
        MESSAGES,
        _messages(messages=[{"role": "user", "content": 5}]),
        422,
        None,
    ),
    (
        "messages: content is an object",
        "POST",
        MESSAGES,
        _messages(messages=[{"role": "user", "content": {"type": "text"}}]),
        422,
        None,
    ),
    (
        "messages: content block is a number",
        "POST",
        MESSAGES,
        _messages(messages=[{"role": "user", "content": [5]}]),
        422,
        None,
    ),
    (
        "messages: tool_choice of unknown type",
        "POST",
        MESSAGES,
        _messages(tool_choice={"type": "bogus"}),
        422,
        None,
    ),
    # Empty embedding input is a wrong value of a field, so 422.
    (
        "embeddings: input is an empty list",
        "POST",
        EMBED,
        _json({"model": "gpt-4o", "input": []}),
        422,
        "invalid_field",
    ),
    (
        "embeddings: input is an empty string",
        "POST",
        EMBED,
        _json({"model": "gpt-4o", "input": ""}),
        422,
        "invalid_field",
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "status", "code"),
    EDGE_CASES,
    ids=[case[0] for case in EDGE_CASES],
)
def test_edge_case(
    gateway: KeelwayServer,
    name: str,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    code: str | None,
) -> None:
    response = _send(gateway, path, body, method=method)
    style = "anthropic" if path == MESSAGES else "openai"
    _check_error(response, status, code, style)


def test_405_has_allow_header(gateway: KeelwayServer) -> None:
    """Check the Allow header that HTTP Semantics (RFC 9110) requires on a 405."""
    response = _send(gateway, CHAT, method="GET")
    assert response.status_code == 405
    assert "POST" in response.headers.get("allow", ""), dict(response.headers)
    response = _send(gateway, MODELS, b"{}", method="POST")
    assert response.status_code == 405
    assert "GET" in response.headers.get("allow", ""), dict(response.headers)


def test_trailing_slash_path(gateway: KeelwayServer) -> None:
    """Check that a trailing slash gets a JSON error, not an empty 307 redirect.

    Both fixes pass: serving the path (401 here, as no key is sent) or 404.
    """
    response = _send(gateway, CHAT + "/", _json({"model": "gpt-4o"}), key=None)
    assert response.status_code in (401, 404), (
        response.status_code,
        response.headers.get("location"),
    )
    _check_error(response, response.status_code, None, "openai")


def _log_lines_since(gateway: KeelwayServer, offset: int) -> list[str]:
    return gateway.log()[offset:].splitlines()


def _wait_for_unhandled(gateway: KeelwayServer, offset: int) -> list[str]:
    """Return 'unhandled error' log lines written after ``offset``, waiting 2 s."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        lines = [
            line
            for line in _log_lines_since(gateway, offset)
            if "unhandled error" in line
        ]
        if lines:
            return lines
        time.sleep(0.1)
    return []


def test_client_disconnect_mid_body(gateway: KeelwayServer) -> None:
    """Check that a client disconnecting mid-body is not an unhandled error."""
    offset = len(gateway.log())
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {gateway.key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=TIMEOUT) as s:
        s.sendall(head.encode() + b'{"model": "gpt-4o", ')
        time.sleep(0.3)
    assert _wait_for_unhandled(gateway, offset) == []


# (name, method, path, raw body, key, extra headers, status, OpenAI code, param)
CONTRACT = [
    (
        "body is a JSON string",
        "POST",
        CHAT,
        b'"x"',
        "valid",
        {},
        400,
        "invalid_json",
        None,
    ),
    (
        "body is a JSON number",
        "POST",
        CHAT,
        b"42",
        "valid",
        {},
        400,
        "invalid_json",
        None,
    ),
    (
        "body is JSON null",
        "POST",
        EMBED,
        b"null",
        "valid",
        {},
        400,
        "invalid_json",
        None,
    ),
    (
        "body starts with a BOM",
        "POST",
        CHAT,
        b"\xef\xbb\xbf{}",
        "valid",
        {},
        400,
        "invalid_json",
        None,
    ),
    (
        "lone surrogate escape",
        "POST",
        CHAT,
        b'{"model":"gpt-4o","messages":[{"role":"user","content":"\\ud800"}]}',
        "valid",
        {},
        400,
        "invalid_json",
        None,
    ),
    (
        "NaN literal",
        "POST",
        CHAT,
        b'{"temperature":NaN}',
        "valid",
        {},
        400,
        "invalid_json",
        None,
    ),
    (
        "number overflowing to infinity",
        "POST",
        CHAT,
        b'{"temperature":1e400}',
        "valid",
        {},
        400,
        "invalid_json",
        None,
    ),
    (
        "60000 levels of [",
        "POST",
        CHAT,
        b"[" * 60000,
        "valid",
        {},
        400,
        "invalid_json",
        None,
    ),
    (
        "UTF-16 body",
        "POST",
        EMBED,
        '{"model":"gpt-4o"}'.encode("utf-16"),
        "valid",
        {},
        400,
        "invalid_utf8",
        None,
    ),
    ("two JSON objects", "POST", CHAT, b"{}{}", "valid", {}, 400, "invalid_json", None),
    (
        "form-encoded body",
        "POST",
        CHAT,
        b"model=gpt-4o",
        "valid",
        {"Content-Type": "application/x-www-form-urlencoded"},
        400,
        "invalid_json",
        None,
    ),
    (
        "stream as the string 'true'",
        "POST",
        CHAT,
        _json({"model": "gpt-4o", "messages": HELLO, "stream": "true"}),
        "valid",
        {},
        422,
        "invalid_field",
        "stream",
    ),
    (
        "n far too large",
        "POST",
        CHAT,
        _chat_with(b'"n":1000000000000000000000000000000'),
        "valid",
        {},
        422,
        "invalid_field",
        "n",
    ),
    (
        "max_tokens as a float",
        "POST",
        CHAT,
        _json({"model": "gpt-4o", "messages": HELLO, "max_tokens": 1.5}),
        "valid",
        {},
        422,
        "invalid_field",
        "max_tokens",
    ),
    (
        "tool without function",
        "POST",
        CHAT,
        _json({"model": "gpt-4o", "messages": HELLO, "tools": [{"type": "function"}]}),
        "valid",
        {},
        422,
        "invalid_field",
        "tools[0].function",
    ),
    (
        "stream_options as a string",
        "POST",
        CHAT,
        _json({"model": "gpt-4o", "messages": HELLO, "stream_options": "x"}),
        "valid",
        {},
        422,
        "invalid_field",
        "stream_options",
    ),
    (
        "user as an object",
        "POST",
        CHAT,
        _json({"model": "gpt-4o", "messages": HELLO, "user": {"id": 1}}),
        "valid",
        {},
        422,
        "invalid_field",
        "user",
    ),
    (
        "model as a number",
        "POST",
        CHAT,
        _json({"model": 5, "messages": HELLO}),
        "valid",
        {},
        422,
        "invalid_field",
        "model",
    ),
    (
        "embeddings input of mixed types",
        "POST",
        EMBED,
        _json({"model": "gpt-4o", "input": ["a", 1]}),
        "valid",
        {},
        422,
        "invalid_field",
        "input",
    ),
    (
        "no key and a body over the limit",
        "POST",
        CHAT,
        _json({"x": "a" * 70_000}),
        None,
        {},
        401,
        "missing_api_key",
        None,
    ),
    (
        "'Bearer' without a key",
        "POST",
        CHAT,
        b"{}",
        None,
        {"Authorization": "Bearer"},
        401,
        "missing_api_key",
        None,
    ),
    (
        "Basic credentials",
        "POST",
        CHAT,
        b"{}",
        None,
        {"Authorization": "Basic dXNlcjpwYXNz"},
        401,
        "missing_api_key",
        None,
    ),
    (
        "10 KB key",
        "POST",
        CHAT,
        b"{}",
        None,
        {"Authorization": "Bearer " + "k" * 10240},
        401,
        "invalid_api_key",
        None,
    ),
    (
        "wrong key on /v1/models",
        "GET",
        MODELS,
        None,
        None,
        {"x-api-key": "kw-wrong"},
        401,
        "invalid_api_key",
        None,
    ),
    (
        "POST /v1/models",
        "POST",
        MODELS,
        b"{}",
        "valid",
        {},
        405,
        "method_not_allowed",
        None,
    ),
    (
        "DELETE on an unknown path",
        "DELETE",
        "/v1/nothing",
        None,
        "valid",
        {},
        404,
        "route_not_found",
        None,
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "key", "headers", "status", "code", "param"),
    CONTRACT,
    ids=[case[0] for case in CONTRACT],
)
def test_contract(
    gateway: KeelwayServer,
    name: str,
    method: str,
    path: str,
    body: bytes | None,
    key: str | None,
    headers: dict[str, str],
    status: int,
    code: str,
    param: str | None,
) -> None:
    response = _send(gateway, path, body, method=method, key=key, headers=headers)
    _check_error(response, status, code, "openai", param)


MESSAGES_CONTRACT = [
    ("malformed JSON", b'{"model":', "valid", 400, "invalid_request_error"),
    ("body is an array", b"[]", "valid", 400, "invalid_request_error"),
    (
        "missing max_tokens",
        _json({"model": "gpt-4o", "messages": HELLO}),
        "valid",
        422,
        "invalid_request_error",
    ),
    (
        "body over the limit",
        _json({"x": "a" * 70_000}),
        "valid",
        413,
        "request_too_large",
    ),
    ("wrong x-api-key", _messages(), "wrong", 401, "authentication_error"),
]


@pytest.mark.parametrize(
    ("name", "body", "key", "status", "kind"),
    MESSAGES_CONTRACT,
    ids=[case[0] for case in MESSAGES_CONTRACT],
)
def test_messages_error_shape(
    gateway: KeelwayServer, name: str, body: bytes, key: str, status: int, kind: str
) -> None:
    if key == "wrong":
        wrong = {"x-api-key": "kw-wrong"}
        response = _send(gateway, MESSAGES, body, key=None, headers=wrong)
    else:
        response = _send(gateway, MESSAGES, body)
    _check_error(response, status, None, "anthropic")
    assert response.json()["error"]["type"] == kind


def test_chunked_body_over_limit(gateway: KeelwayServer) -> None:
    """Check that a body without Content-Length is cut at server.max_body_bytes."""

    def chunks() -> Iterator[bytes]:
        yield b'{"model":"gpt-4o","messages":[{"role":"user","content":"'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}]}'

    response = httpx.post(
        gateway.url + CHAT,
        content=chunks(),
        headers={
            "Authorization": f"Bearer {gateway.key}",
            "Content-Type": "application/json",
        },
        timeout=TIMEOUT,
    )
    assert "content-length" not in response.request.headers
    _check_error(response, 413, "request_too_large", "openai")


def test_huge_attribution_headers(gateway: KeelwayServer) -> None:
    headers = {
        "X-Request-Id": "r" * 10240,
        "X-Keelway-User": "u" * 8000,
        "X-Keelway-Tags": ",".join(["t" * 300] * 30),
    }
    body = _json({"model": "gpt-4o", "messages": HELLO})
    response = _send(gateway, CHAT, body, headers=headers)
    assert response.status_code == 200, response.text


def test_no_secret_leaks(gateway: KeelwayServer) -> None:
    """Check that neither the upstream key nor the virtual key is echoed.

    It runs last, so the log covers every other case in this file.
    """
    response = _send(
        gateway, CHAT, _json({"model": "no-such-model", "messages": HELLO})
    )
    assert gateway.key not in response.text
    assert API_KEY not in response.text
    time.sleep(0.5)
    log = gateway.log()
    assert API_KEY not in log
    assert gateway.key not in log


def test_slow_body_times_out(gateway: KeelwayServer) -> None:
    """Check that a body that stops arriving gets 408 after server.body_timeout."""
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {gateway.key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=TIMEOUT) as s:
        s.sendall(head.encode() + b'{"model": "gpt-4o", ')
        reply = _read_response(s)
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.split()[1] == b"408"
    body = orjson.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] == "request_timeout"


def _read_response(sock: socket.socket) -> bytes:
    """Read one HTTP response whole: its head and Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
