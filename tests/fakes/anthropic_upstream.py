"""A fake Anthropic Messages API server for tests.

``FakeAnthropic`` serves ``POST /v1/messages`` over real HTTP on 127.0.0.1,
on a free port, from an event loop in a background thread, so that sync tests
can point any HTTP client at it::

    with FakeAnthropic(api_key="sk-test") as fake:
        provider = AnthropicProvider(deployment(base_url=fake.base_url))
        ...
        assert fake.requests[-1].body["max_tokens"] == 4096

It checks the API key (``x-api-key``, or a bearer token as the official SDK
sends it) and ``anthropic-version``, and records every request. It responds
with text, or with a ``tool_use`` block when the request has tools and the
last user message contains "use the tool". A failure mode is chosen for
one request by the marker ``[fail:MODE]`` in the last user message, or for
every request by setting ``fake.failure = MODE``:

    rate_limit    HTTP 429 rate_limit_error with a Retry-After header
    overloaded    HTTP 529 overloaded_error
    server_error  HTTP 500 api_error
    garbage       HTTP 200 whose body (or stream event data) is not JSON
    slow          waits ``delay`` seconds before answering
    cut           sends the start of the answer, then drops the connection
    stall         a stream that pauses ``delay`` seconds after its first text delta
    error_event   a stream with an overloaded ``error`` event after message_start
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

FAILURE_MODES = (
    "rate_limit",
    "overloaded",
    "server_error",
    "garbage",
    "slow",
    "cut",
    "stall",
    "error_event",
)

_FAILURE_MARKER = re.compile(r"\[fail:([a-z_]+)\]")
_START_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received: path, lower-cased headers and JSON body."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeUsage:
    """Token counts the fake reports, in Anthropic's disjoint split."""

    input_tokens: int = 100
    output_tokens: int = 300
    cache_read_input_tokens: int = 2000
    cache_creation_input_tokens: int = 500


@dataclass
class FakeAnthropic:
    """Anthropic Messages API server on 127.0.0.1 for tests."""

    api_key: str = "sk-ant-fake-key"
    model: str = "claude-fake-1-20250101"
    text: str = "Hello from the fake Anthropic server."
    tool_input: dict[str, Any] = field(default_factory=lambda: {"city": "Paris"})
    usage: FakeUsage = field(default_factory=FakeUsage)
    failure: str | None = None
    delay: float = 2.0
    retry_after: str = "7"
    line_ending: str = "\n"
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._port: int | None = None
        self._message_count = 0

    @property
    def base_url(self) -> str:
        """URL of the running server, without a trailing slash."""
        if self._port is None:
            raise RuntimeError("FakeAnthropic is not started; call start() first")
        return f"http://127.0.0.1:{self._port}"

    def reset(self) -> None:
        """Forget recorded requests and clear the failure mode."""
        self.requests.clear()
        self.failure = None
        self.line_ending = "\n"

    def start(self) -> str:
        """Start serving in a background thread and return the base URL."""
        if self._thread is not None:
            return self.base_url
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failures: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._open())
            except BaseException as error:  # reported to start() below
                failures.append(error)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._shut_down())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(
            target=serve, name="fake-anthropic", daemon=True
        )
        self._thread.start()
        if not started.wait(_START_TIMEOUT_SECONDS):
            raise RuntimeError(
                f"FakeAnthropic did not start within {_START_TIMEOUT_SECONDS:g} s"
            )
        if failures:
            self._thread = None
            raise RuntimeError("FakeAnthropic failed to start") from failures[0]
        return self.base_url

    def stop(self) -> None:
        """Stop the server, ending slow responses early, and join its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(self._request_stop)
        thread.join(_START_TIMEOUT_SECONDS)
        self._loop = self._thread = None
        self._port = None

    def __enter__(self) -> FakeAnthropic:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Server lifecycle, run on the background loop.

    async def _open(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    def _request_stop(self) -> None:
        assert self._stopping is not None and self._loop is not None
        self._stopping.set()
        self._loop.stop()

    async def _shut_down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _wait(self, seconds: float) -> None:
        """Sleep for ``seconds``, or less when the server stops."""
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # Request handling.

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append(RecordedRequest(request.path, headers, body))

        # The official SDK 2.16 sends the key as a bearer token instead.
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key not in (request.headers.get("x-api-key"), bearer):
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "body must be a JSON object")
        problem = _validate(body)
        if problem:
            return _error(400, "invalid_request_error", problem)

        mode = self._failure_mode(body)
        if mode == "rate_limit":
            return _error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                headers={"retry-after": self.retry_after},
            )
        if mode == "overloaded":
            return _error(529, "overloaded_error", "Overloaded")
        if mode == "server_error":
            return _error(500, "api_error", "Internal server error")
        if mode == "slow":
            await self._wait(self.delay)

        message = self._answer(body)
        if body.get("stream") is True:
            return await self._stream(request, message, mode)
        if mode == "garbage":
            return web.Response(
                status=200, text="<html>upstream proxy error", content_type="text/html"
            )
        if mode == "cut":
            return await self._cut_json(request, message)
        return web.json_response(message)

    def _failure_mode(self, body: Mapping[str, Any]) -> str | None:
        match = _FAILURE_MARKER.search(_last_user_text(body))
        mode = match.group(1) if match else self.failure
        if mode is not None and mode not in FAILURE_MODES:
            raise ValueError(
                f"unknown failure mode {mode!r}; use one of {FAILURE_MODES}"
            )
        return mode

    def _answer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._message_count += 1
        blocks: list[dict[str, Any]]
        stop_sequence = None
        tools = body.get("tools") or []
        if tools and "use the tool" in _last_user_text(body):
            choice = body.get("tool_choice") or {}
            name = choice.get("name") if choice.get("type") == "tool" else None
            blocks = [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": f"toolu_fake_{self._message_count:04d}",
                    "name": name or tools[0]["name"],
                    "input": dict(self.tool_input),
                },
            ]
            stop_reason = "tool_use"
        else:
            text, stop_reason = self.text, "end_turn"
            for sequence in body.get("stop_sequences") or []:
                if sequence in text:
                    text = text[: text.index(sequence)]
                    stop_reason, stop_sequence = "stop_sequence", sequence
                    break
            blocks = [{"type": "text", "text": text}]
        return {
            "id": f"msg_fake{self._message_count:04d}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "cache_creation_input_tokens": self.usage.cache_creation_input_tokens,
                "cache_read_input_tokens": self.usage.cache_read_input_tokens,
                "output_tokens": self.usage.output_tokens,
            },
        }

    async def _cut_json(
        self, request: web.Request, message: dict[str, Any]
    ) -> web.StreamResponse:
        data = json.dumps(message).encode()
        response = web.StreamResponse(
            status=200,
            headers={
                "content-type": "application/json",
                "content-length": str(len(data)),
            },
        )
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        _drop_connection(request)
        return response

    async def _stream(
        self, request: web.Request, message: dict[str, Any], mode: str | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"},
        )
        await response.prepare(request)
        if mode == "garbage":
            await response.write(b"event: message_start\ndata: {not json\n\n")
            await response.write_eof()
            return response

        # A client that cancels a stream closes the connection mid-write.
        with contextlib.suppress(ConnectionResetError):
            await self._write_events(request, response, message, mode)
        return response

    async def _write_events(
        self,
        request: web.Request,
        response: web.StreamResponse,
        message: dict[str, Any],
        mode: str | None,
    ) -> None:
        for position, (name, data) in enumerate(_stream_events(message)):
            # At position 4, message_start, content_block_start, ping and one
            # delta have gone out.
            if mode == "cut" and position == 4:
                _drop_connection(request)
                return
            if mode == "stall" and position == 4:
                await self._wait(self.delay)
            if mode == "error_event" and position == 1:
                error = {
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"},
                }
                await self._write_event(response, "error", error)
                break
            await self._write_event(response, name, data)
        await response.write_eof()

    async def _write_event(
        self, response: web.StreamResponse, name: str, data: dict[str, Any]
    ) -> None:
        end = self.line_ending
        event = f"event: {name}{end}data: {json.dumps(data)}{end}{end}".encode()
        # Two writes per event, so that clients meet events split across reads.
        middle = len(event) // 2
        await response.write(event[:middle])
        await response.write(event[middle:])


def _error(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def _drop_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(block.get("text", ""))
            for block in content
            if isinstance(block, Mapping) and block.get("type") == "text"
        )
    return ""


def _last_user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _validate(body: Mapping[str, Any]) -> str | None:
    """Return what is wrong with a Messages request, as Anthropic would reject it."""
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if (
        not isinstance(max_tokens, int)
        or isinstance(max_tokens, bool)
        or max_tokens < 1
    ):
        return "max_tokens: Field required and must be a positive integer"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    previous_role = None
    tool_use_ids: set[object] = set()
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, Mapping) else None
        if role not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        # Rejected so that tests see whether the translation merged such turns.
        if role == previous_role:
            return "messages: roles must alternate between user and assistant"
        previous_role = role
        content = message.get("content")
        blocks = [
            block
            for block in (content if isinstance(content, list) else [])
            if isinstance(block, Mapping)
        ]
        if role == "user":
            for block in blocks:
                if block.get("type") != "tool_result":
                    continue
                if block.get("tool_use_id") not in tool_use_ids:
                    return (
                        f"messages.{index}: tool_result block has no matching"
                        " tool_use block in the previous assistant message"
                    )
            tool_use_ids = set()
        else:
            tool_use_ids = {
                block.get("id") for block in blocks if block.get("type") == "tool_use"
            }
    return None


def _stream_events(message: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Return the stream events for ``message`` in the order Anthropic sends them."""
    usage = message["usage"]
    start_usage = dict(usage, output_tokens=1)
    start = dict(message, content=[], stop_reason=None, stop_sequence=None)
    start["usage"] = start_usage
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            text = block["text"]
            pieces = [text[i : i + 8] for i in range(0, len(text), 8)]
            deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
        else:
            opening = dict(block, input={})
            arguments = json.dumps(block["input"])
            third = max(len(arguments) // 3, 1)
            pieces = [arguments[i : i + third] for i in range(0, len(arguments), third)]
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [
                {"type": "input_json_delta", "partial_json": piece} for piece in pieces
            ]
        events.append(
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": opening,
                },
            )
        )
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        for delta in deltas:
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        events.append(
            ("content_block_stop", {"type": "content_block_stop", "index": index})
        )
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": message["stop_reason"],
                    "stop_sequence": message["stop_sequence"],
                },
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events
