"""Model calls of an eval run, made through the keelway gateway.

Every generation, judge call and embedding an eval makes goes through the
gateway's OpenAI-compatible API, so it is routed, limited, priced and traced
like production traffic (with ``use_case`` ``eval``). The gateway is either
a running server (``--gateway URL`` with a key) or an app built in process
from the config, reached through httpx's ASGI transport.

Calls are retried with exponential backoff and full jitter on 429s, 5xx
answers, connection errors and timeouts; ``Retry-After`` is honoured up to
the backoff cap. Other 4xx answers are not retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson

from keelway.evals.base import JudgeReply, ServiceError

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
IN_PROCESS_URL = "http://keelway.in-process"
EMBED_BATCH = 256


class CallRejected(ServiceError):
    """The gateway rejected a call in a way a retry cannot fix (a 4xx)."""

    def __init__(self, message: str, status: int, code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class CallFailed(ServiceError):
    """A call that still failed after its last retry."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a failed call.

    ``attempts`` counts the first call. ``timeout`` bounds each attempt in
    seconds, so a stalled provider cannot hold a run.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    timeout: float = 120.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Return the seconds to wait before retry number ``attempt`` (from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)


@dataclass(frozen=True, slots=True)
class ChatReply:
    """A chat completion's text with what it cost and where it is traced."""

    text: str
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float
    trace_id: str | None
    prompt_version: str | None
    finish_reason: str | None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _error_text(response: httpx.Response) -> tuple[str, str | None]:
    try:
        body = orjson.loads(response.content)
        error = body.get("error", {})
        if isinstance(error, dict):
            return str(error.get("message", "")), error.get("code")
    except (orjson.JSONDecodeError, AttributeError):
        pass
    return response.text[:300], None


class GatewayClient:
    """Chat, judge and embedding calls to a keelway gateway, with retries."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_key: str,
        retry: RetryPolicy | None = None,
        embedding_model: str = "all-minilm-l6-v2",
        tags: Sequence[str] = ("eval",),
    ) -> None:
        self.http = http
        self.retry = retry or RetryPolicy()
        self.embedding_model = embedding_model
        self.headers = {
            "authorization": f"Bearer {api_key}",
            "x-keelway-use-case": "eval",
            "x-keelway-tags": ",".join(tags),
        }

    async def _post(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        content = orjson.dumps(body)
        last = "no attempt made"
        for attempt in range(1, self.retry.attempts + 1):
            retry_after = None
            try:
                response = await asyncio.wait_for(
                    self.http.post(path, content=content, headers=self.headers),
                    self.retry.timeout,
                )
            except TimeoutError:
                last = f"timed out after {self.retry.timeout:g} s"
            except httpx.TransportError as error:
                last = f"connection failed: {error.__class__.__name__}: {error}"
            else:
                if response.status_code < 400:
                    return response
                message, code = _error_text(response)
                if response.status_code not in RETRYABLE_STATUS:
                    raise CallRejected(
                        f"gateway rejected the call with {response.status_code}: "
                        f"{message}",
                        response.status_code,
                        code,
                    )
                last = f"{response.status_code}: {message}"
                retry_after = _retry_after(response)
            if attempt < self.retry.attempts:
                wait = self.retry.delay(attempt, retry_after)
                log.info(
                    "retrying %s in %.2f s after attempt %d: %s",
                    path,
                    wait,
                    attempt,
                    last,
                )
                await asyncio.sleep(wait)
        raise CallFailed(f"{path} failed after {self.retry.attempts} attempts: {last}")

    async def chat(self, body: Mapping[str, Any]) -> ChatReply:
        """Send one chat completion; raise ServiceError when it fails."""
        started = time.perf_counter()
        response = await self._post("/v1/chat/completions", body)
        latency = (time.perf_counter() - started) * 1000
        try:
            data = orjson.loads(response.content)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as error:
            raise CallFailed(f"malformed chat completion: {error!r}") from None
        usage = data.get("usage") or {}
        return ChatReply(
            text=text,
            model=data.get("model"),
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
            latency_ms=latency,
            trace_id=response.headers.get("x-keelway-trace-id"),
            prompt_version=response.headers.get("x-keelway-prompt-version"),
            finish_reason=choice.get("finish_reason"),
        )

    async def judge(
        self, rubric: str, variables: Mapping[str, Any], model: str | None = None
    ) -> JudgeReply:
        """Run the rubric prompt ``rubric`` with ``variables`` on the judge model."""
        body: dict[str, Any] = {
            "prompt": rubric,
            "variables": dict(variables),
            "messages": [],
        }
        if model is not None:
            body["model"] = model
        reply = await self.chat(body)
        return JudgeReply(
            text=reply.text,
            model=reply.model,
            latency_ms=reply.latency_ms,
            trace_id=reply.trace_id,
        )

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into L2-normalised rows, one per text.

        Long lists are sent in batches of EMBED_BATCH, under the input
        limits of embedding APIs.
        """
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        parts = [
            await self._embed_batch(texts[start : start + EMBED_BATCH])
            for start in range(0, len(texts), EMBED_BATCH)
        ]
        return parts[0] if len(parts) == 1 else np.vstack(parts)

    async def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        response = await self._post(
            "/v1/embeddings", {"model": self.embedding_model, "input": list(texts)}
        )
        try:
            data = orjson.loads(response.content)["data"]
            rows = sorted(data, key=lambda item: item["index"])
            matrix = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise CallFailed(f"malformed embeddings response: {error!r}") from None
        if matrix.shape[0] != len(texts):
            raise CallFailed(
                f"asked for {len(texts)} embeddings, got {matrix.shape[0]}"
            )
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return matrix / norms


@asynccontextmanager
async def remote_gateway(
    base_url: str, api_key: str, retry: RetryPolicy | None = None, **options: Any
) -> AsyncIterator[GatewayClient]:
    """Yield a client of the keelway server at ``base_url``."""
    async with httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=None) as http:
        yield GatewayClient(http, api_key, retry, **options)


@asynccontextmanager
async def self_client(
    app: Any, embedding_model: str, retry: RetryPolicy | None = None
) -> AsyncIterator[GatewayClient]:
    """Yield a client that calls ``app`` in process with its master key.

    An app without a master key gets one made now, known only to this
    client. For work the gateway does on its own traffic, such as online
    evaluation.
    """
    auth = app.state.pipeline.auth
    if auth.master_key is None:
        auth.master_key = secrets.token_urlsafe(32)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url=IN_PROCESS_URL, timeout=None
    ) as http:
        yield GatewayClient(http, auth.master_key, retry, embedding_model)


@asynccontextmanager
async def in_process_gateway(
    config: Any, database: Any, retry: RetryPolicy | None = None, **options: Any
) -> AsyncIterator[GatewayClient]:
    """Build the gateway app from ``config`` in process and yield its client.

    The app gets a master key made for this run only, so no key is stored.
    Its lifespan runs around the block: on exit the trace writer drains, so
    every call of the run is in the store afterwards.
    """
    from keelway.gateway.app import create_app

    app = create_app(config, database)
    key = secrets.token_urlsafe(32)
    app.state.pipeline.auth.master_key = key
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url=IN_PROCESS_URL, timeout=None
        ) as http:
            yield GatewayClient(http, key, retry, **options)
