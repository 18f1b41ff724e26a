"""Response helpers: JSON bodies, SSE streams and error answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from keelway.gateway.errors import GatewayError, render

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def json_response(
    body: Any,
    status: int = 200,
    background: BackgroundTask | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Return ``body`` serialized with orjson."""
    return Response(
        orjson.dumps(body),
        status,
        headers=headers,
        media_type="application/json",
        background=background,
    )


def error_response(
    error: GatewayError, style: str = "openai", background: BackgroundTask | None = None
) -> Response:
    """Return the error body with its status and headers."""
    return Response(
        render(error, style),
        error.status,
        headers=error.headers,
        media_type="application/json",
        background=background,
    )


def sse(data: Any, event: str | None = None) -> bytes:
    """Encode one server-sent event."""
    payload = b"data: " + orjson.dumps(data) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + payload if event else payload


class SSEResponse(StreamingResponse):
    """A stream that always closes its generator, even when the client leaves.

    Starlette stops iterating when the client disconnects but leaves the
    generator suspended; closing it here runs its ``finally`` block at once,
    which is where the trace of an aborted stream is completed.
    """

    body_iterator: AsyncIterator[bytes]

    def __init__(
        self, content: AsyncIterator[bytes], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **(headers or {})},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
