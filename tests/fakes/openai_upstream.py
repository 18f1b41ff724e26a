"""A fake OpenAI API: a real HTTP server speaking the chat and embeddings wire format.

The upstream model name in each request picks the behaviour, so one server
covers every case a test config maps a public model to:

- any name in ``usage`` answers with that exact usage object;
- ``slow``: waits ``slow_seconds`` before answering;
- ``garbage``: answers 200 with a body that is not JSON;
- ``error-429``: 429 with Retry-After; ``error-500``: 500; ``error-401``: 401
  whose message echoes the presented key, as some providers do;
- ``cut-stream``: streams a few chunks and then drops the connection;
- ``no-usage``: answers without any usage object;
- ``long-answer``: streams a long answer slowly, for clients that abort;
- ``scripted``: answers (without streaming) with a reply a test scripted,
  see :meth:`FakeOpenAI.script`; with none left, 500.
- ``repeat``: answers with the last user message, word for word; streamed,
  in pieces of ``echo_chunk`` characters, so any value in it arrives split.
- ``repeat-system``: answers with the system message, as a model tricked
  into reciting its instructions would; streamed like ``repeat``.

A request with ``tools`` whose last user message mentions "weather" gets a
tool call. Every request body is recorded in ``requests``.

Faults for routing tests apply to every model: set ``fault`` to one of
``FAULTS`` to fail every chat call that way, or ``fault_rate`` and
``fault_modes`` to fail that share of calls, picked by a seeded random
generator. ``reset`` drops the connection, ``500`` and ``429`` (with
``Retry-After``) answer with that status, ``slow`` holds the first byte
(of a stream: the first chunk) for ``slow_seconds``, ``context`` and
``policy`` answer with OpenAI's context-length and content-policy 400s.
``calls`` counts chat calls, faulty or not.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.server_thread import ServerThread

ANSWER = "Hello from the fake upstream."
DEFAULT_USAGE = {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}
API_KEY = "sk-fake-upstream-key-1234567890abcdef"
FAULTS = ("reset", "500", "429", "slow", "context", "policy")


def _json(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error(
    status: int, message: str, kind: str, code: str | None = None
) -> web.Response:
    return _json(
        {"error": {"message": message, "type": kind, "param": None, "code": code}},
        status,
    )


def _echo(body: dict[str, Any]) -> str:
    """Return what the repeat models say: the last user or the system message."""
    role = "system" if body.get("model") == "repeat-system" else "user"
    found = [m for m in body.get("messages", []) if m.get("role") == role]
    content = found[-1].get("content") if found else ""
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        )
    return str(content or "")


def _share(body: dict[str, Any]) -> float:
    """Return a number in [0, 1) fixed by the request's last message."""
    messages = body.get("messages") or [{}]
    text = str(messages[-1].get("content"))
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class FakeOpenAI:
    """The fake server's state and handlers."""

    def __init__(
        self,
        usage: dict[str, dict[str, Any]] | None = None,
        *,
        slow_seconds: float = 3.0,
        api_key: str | None = API_KEY,
        record: bool = True,
        seed: int = 0,
        delay: float = 0.0,
        jitter: float = 0.0,
    ) -> None:
        self.usage = usage or {}
        self.slow_seconds = slow_seconds
        # Seconds every chat completion waits before answering, as a model
        # would: ``delay`` plus a share of ``jitter`` set by a hash of the
        # last message, so the same request always waits the same time.
        self.delay = delay
        self.jitter = jitter
        self.api_key = api_key
        self.record = record
        self.fault: str | None = None
        self.fault_rate = 0.0
        self.fault_modes: tuple[str, ...] = ()
        self.retry_after = "1"
        self.calls = 0
        self._rng = random.Random(seed)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        # Replies of the ``scripted`` model: rules first, then the queue.
        self._script_lock = threading.Lock()
        self._script_rules: list[tuple[str, str]] = []
        self._script_queue: deque[str] = deque()
        # Characters per chunk of a streamed echo answer.
        self.echo_chunk = 3
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.chat)
        self.app.router.add_post("/v1/embeddings", self.embeddings)
        self.app.router.add_get("/v1/models", self.models)
        self._thread: ServerThread | None = None

    def start(self) -> str:
        """Start on a free port; return the base URL including ``/v1``."""
        self._thread = ServerThread(self.app)
        return self._thread.start() + "/v1"

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._thread is not None
        return self._thread.base_url + "/v1"

    def script(self, replies: Iterable[str] | Mapping[str, str]) -> None:
        """Add replies for the ``scripted`` model to return.

        A list of replies joins the end of a queue: each call takes the next
        one. A mapping adds rules from a substring to a reply: a call whose
        last user message contains the substring gets the reply, every time,
        and rules are tried before the queue, in the order they were added.
        """
        with self._script_lock:
            if isinstance(replies, Mapping):
                self._script_rules.extend(replies.items())
            else:
                self._script_queue.extend(replies)

    def clear_script(self) -> None:
        """Drop every scripted rule and queued reply."""
        with self._script_lock:
            self._script_rules.clear()
            self._script_queue.clear()

    @property
    def scripted_left(self) -> int:
        """How many queued replies no call has taken yet."""
        with self._script_lock:
            return len(self._script_queue)

    def _scripted_reply(self, body: dict[str, Any]) -> str | None:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        content = users[-1].get("content") if users else ""
        text = content if isinstance(content, str) else str(content)
        with self._script_lock:
            for needle, reply in self._script_rules:
                if needle in text:
                    return reply
            if self._script_queue:
                return self._script_queue.popleft()
        return None

    def _authorized(self, request: web.Request) -> bool:
        return (
            self.api_key is None
            or request.headers.get("Authorization") == f"Bearer {self.api_key}"
        )

    async def models(self, request: web.Request) -> web.Response:
        return _json({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if self.record:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
        model = body.get("model", "")
        self.calls += 1
        if self.delay > 0 or self.jitter > 0:
            await asyncio.sleep(self.delay + self.jitter * _share(body))
        fault = self._fault()
        if fault is not None and fault != "slow":
            return self._faulty(request, fault)
        if fault == "slow" and not body.get("stream"):
            await asyncio.sleep(self.slow_seconds)
        if model == "error-401" or not self._authorized(request):
            presented = request.headers.get("Authorization", "")
            return _error(
                401,
                f"Incorrect API key provided: {presented}",
                "invalid_request_error",
                "invalid_api_key",
            )
        if model == "error-429":
            return web.Response(
                body=orjson.dumps(
                    {
                        "error": {
                            "message": "Rate limit reached",
                            "type": "requests",
                            "code": "rate_limit_exceeded",
                        }
                    }
                ),
                status=429,
                content_type="application/json",
                headers={"Retry-After": "7"},
            )
        if model == "error-500":
            return _error(500, "The server had an error", "server_error")
        if model == "slow":
            await asyncio.sleep(self.slow_seconds)
        if model == "garbage":
            return web.Response(
                body=b"<html>502 Bad Gateway</html>",
                status=200,
                content_type="text/html",
            )
        if model == "scripted":
            reply = self._scripted_reply(body)
            if reply is None:
                return _error(
                    500, "no scripted reply is left for this request", "server_error"
                )
            return _json(self._completion(body, reply))
        echo = _echo(body) if model in ("repeat", "repeat-system") else None
        if echo is not None and body.get("stream"):
            return await self._stream_text(request, body, echo)
        if echo is not None:
            return _json(self._completion(body, echo))
        if body.get("stream"):
            return await self._stream(request, body, slow=fault == "slow")
        return _json(self._completion(body))

    def _fault(self) -> str | None:
        if self.fault is not None:
            return self.fault
        if self.fault_modes and self._rng.random() < self.fault_rate:
            return self._rng.choice(self.fault_modes)
        return None

    def _faulty(self, request: web.Request, fault: str) -> web.StreamResponse:
        if fault == "reset":
            request.transport.close()  # type: ignore[union-attr]
            return web.Response()
        if fault == "500":
            return _error(500, "The server had an error", "server_error")
        if fault == "429":
            response = _error(
                429, "Rate limit reached", "requests", "rate_limit_exceeded"
            )
            response.headers["Retry-After"] = self.retry_after
            return response
        if fault == "context":
            return _error(
                400,
                "This model's maximum context length is 128000 tokens.",
                "invalid_request_error",
                "context_length_exceeded",
            )
        if fault == "policy":
            return _error(
                400,
                "Your request was rejected as a result of our safety system.",
                "invalid_request_error",
                "content_policy_violation",
            )
        raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")

    def _usage(self, model: str) -> dict[str, Any] | None:
        if model == "no-usage":
            return None
        return self.usage.get(model, DEFAULT_USAGE)

    def _wants_tool(self, body: dict[str, Any]) -> bool:
        if not body.get("tools"):
            return False
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        content = users[-1].get("content") if users else ""
        return isinstance(content, str) and "weather" in content

    def _completion(self, body: dict[str, Any], answer: str = ANSWER) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": answer}
        if body.get("model") == "echo":
            # Answers with the messages it was sent, so tests can see a prompt.
            message["content"] = "\n".join(
                f"{m.get('role')}: {m.get('content')}" for m in body["messages"]
            )
        finish = "stop"
        if self._wants_tool(body):
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_fake_1",
                        "type": "function",
                        "function": {
                            "name": body["tools"][0]["function"]["name"],
                            "arguments": '{"city": "Paris"}',
                        },
                    }
                ],
            }
            finish = "tool_calls"
        n = int(body.get("n") or 1)
        result: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": i,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for i in range(n)
            ],
        }
        usage = self._usage(body.get("model", ""))
        if usage is not None:
            result["usage"] = usage
        return result

    def _chunk(
        self, body: dict[str, Any], delta: dict[str, Any], finish: str | None = None
    ) -> bytes:
        chunk = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }
        if (body.get("stream_options") or {}).get("include_usage"):
            chunk["usage"] = None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    async def _stream(
        self, request: web.Request, body: dict[str, Any], *, slow: bool = False
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if slow:
            await asyncio.sleep(self.slow_seconds)
        model = body.get("model", "")
        await response.write(self._chunk(body, {"role": "assistant", "content": ""}))
        if self._wants_tool(body):
            name = body["tools"][0]["function"]["name"]
            await response.write(
                self._chunk(
                    body,
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_fake_1",
                                "type": "function",
                                "function": {"name": name, "arguments": ""},
                            }
                        ]
                    },
                )
            )
            for piece in ('{"city":', ' "Paris"}'):
                await response.write(
                    self._chunk(
                        body,
                        {
                            "tool_calls": [
                                {"index": 0, "function": {"arguments": piece}}
                            ]
                        },
                    )
                )
            finish = "tool_calls"
        else:
            words = ANSWER.split(" ") if model != "long-answer" else ["word"] * 400
            for i, word in enumerate(words):
                await response.write(
                    self._chunk(body, {"content": word if i == 0 else " " + word})
                )
                if model == "long-answer":
                    await asyncio.sleep(0.01)
                if model == "cut-stream" and i == 2:
                    request.transport.close()  # type: ignore[union-attr]
                    return response
            finish = "stop"
        await response.write(self._chunk(body, {}, finish))
        usage = self._usage(model)
        if (body.get("stream_options") or {}).get(
            "include_usage"
        ) and usage is not None:
            final = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [],
                "usage": usage,
            }
            await response.write(b"data: " + orjson.dumps(final) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _stream_text(
        self, request: web.Request, body: dict[str, Any], text: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(self._chunk(body, {"role": "assistant", "content": ""}))
        size = max(1, self.echo_chunk)
        for start in range(0, len(text), size):
            piece = text[start : start + size]
            await response.write(self._chunk(body, {"content": piece}))
        await response.write(self._chunk(body, {}, "stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if self.record:
            self.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return _json(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                    for i in range(len(inputs))
                ],
                "model": body.get("model"),
                "usage": {
                    "prompt_tokens": 4 * len(inputs),
                    "total_tokens": 4 * len(inputs),
                },
            }
        )


def main() -> None:
    """Run the fake as a process, for benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=0.0,
        help="Milliseconds each chat completion waits before answering.",
    )
    parser.add_argument(
        "--jitter-ms",
        type=float,
        default=0.0,
        help=(
            "Up to this many milliseconds more per completion, fixed by a hash "
            "of its last message."
        ),
    )
    args = parser.parse_args()
    fake = FakeOpenAI(
        api_key=None,
        record=False,
        delay=args.delay_ms / 1000,
        jitter=args.jitter_ms / 1000,
    )
    web.run_app(
        fake.app,
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=lambda *_: None,
    )


if __name__ == "__main__":
    main()
