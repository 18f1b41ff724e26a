"""Reading a request body within the size limit and parsing it as JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from keelway.gateway.errors import (
    BodyReadTimedOut,
    BodyTooLarge,
    ClientClosed,
    InvalidRequest,
)

# orjson parses up to 1024 levels of nesting but serializes only 254, and
# keelway serializes every body again (for the trace and the upstream).
MAX_DEPTH = 254


async def read_json_object(
    request: Request, limit: int, timeout: float | None = None
) -> dict[str, Any]:
    """Read the body, rejecting one over ``limit`` bytes, bad UTF-8 or bad JSON.

    ``timeout`` bounds the whole read in seconds, so a client that announces
    a body and sends it slowly or not at all cannot hold a connection open.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    try:
        data = await asyncio.wait_for(_read(request, limit), timeout)
    except TimeoutError:
        raise BodyReadTimedOut(
            f"request body was not received within {timeout:g} seconds"
        ) from None
    except ClientDisconnect:
        raise ClientClosed("client closed the connection while sending") from None
    if not data:
        raise InvalidRequest(
            "request body is empty; expected a JSON object", code="invalid_json"
        )
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise _decode_error(data, error) from None
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"request body must be a JSON object, not {type(value).__name__}",
            code="invalid_json",
        )
    # Counting brackets is a C-speed scan; only a body with enough of them
    # can be nested too deeply, so most bodies skip the walk.
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise InvalidRequest(
            f"request body is nested more than {MAX_DEPTH} levels deep",
            code="invalid_json",
        )
    return value


async def _read(request: Request, limit: int) -> bytes:
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _depth(value: Any) -> int:
    """Return the nesting depth of arrays and objects in a parsed JSON value."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _decode_error(data: bytes, error: orjson.JSONDecodeError) -> InvalidRequest:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return InvalidRequest(
            f"request body is not valid UTF-8 (invalid byte at offset {bad.start})",
            code="invalid_utf8",
        )
    return InvalidRequest(
        f"request body is not valid JSON: {error}", code="invalid_json"
    )
