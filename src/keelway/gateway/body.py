"""Reading a request body within the size limit and parsing it as JSON."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from keelway.gateway.errors import BodyTooLarge, InvalidRequest


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """Read the body, rejecting one over ``limit`` bytes, bad UTF-8 or bad JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
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
    return value


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
