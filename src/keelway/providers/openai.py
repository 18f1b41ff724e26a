"""Adapter for any OpenAI-compatible API: OpenAI, Azure OpenAI, vLLM, Ollama, ..."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from keelway.config import DeploymentConfig
from keelway.providers.base import (
    ChatChunk,
    ChatResult,
    EmbeddingResult,
    ProviderStatus,
)
from keelway.providers.errors import ProviderError, UpstreamInvalidResponse
from keelway.providers.http import HTTPUpstream
from keelway.tracing.usage import Usage

DEFAULT_BASE_URL = "https://api.openai.com/v1"
READY_CACHE_SECONDS = 30.0

JSONObject = dict[str, Any]


def wants_usage(body: JSONObject) -> bool:
    """Return whether the client asked for the final usage chunk of a stream."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _check_completion(data: JSONObject) -> None:
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise UpstreamInvalidResponse("upstream chat completion has no choices list")


def _usage(data: JSONObject) -> Usage | None:
    usage = data.get("usage")
    return Usage.from_openai(usage) if isinstance(usage, dict) else None


class OpenAIProvider:
    """Chat completions and embeddings over an OpenAI-compatible HTTP API.

    An ``api_version`` in the deployment selects Azure OpenAI conventions: the
    key goes in the ``api-key`` header and the version in the query string.
    """

    def __init__(self, deployment: DeploymentConfig) -> None:
        self.deployment = deployment
        headers = dict(deployment.headers)
        params = {}
        if deployment.api_version:
            params["api-version"] = deployment.api_version
            if deployment.api_key:
                headers["api-key"] = deployment.api_key
        elif deployment.api_key:
            headers["Authorization"] = f"Bearer {deployment.api_key}"
        self.upstream = HTTPUpstream(
            deployment.base_url or DEFAULT_BASE_URL,
            headers,
            connect_timeout=deployment.timeout.connect,
            total_timeout=deployment.timeout.total,
            max_connections=deployment.max_connections,
            params=params,
        )
        self._ready: tuple[float, ProviderStatus] | None = None

    async def start(self) -> None:
        """Nothing to do: the pool opens on first use."""

    async def close(self) -> None:
        """Close the connection pool."""
        await self.upstream.close()

    async def check(self) -> ProviderStatus:
        """List the upstream's models, caching the answer for 30 seconds."""
        now = time.monotonic()
        if self._ready and now - self._ready[0] < READY_CACHE_SECONDS:
            return self._ready[1]
        try:
            await self.upstream.get_json("models", timeout=3.0)
            status = ProviderStatus(ready=True)
        except ProviderError as error:
            status = ProviderStatus(ready=False, detail=str(error))
        self._ready = (now, status)
        return status

    def _body(self, body: JSONObject) -> JSONObject:
        return {**body, "model": self.deployment.model}

    async def chat(self, body: JSONObject) -> ChatResult:
        """Run a non-streamed chat completion."""
        data = await self.upstream.post_json("chat/completions", self._body(body))
        _check_completion(data)
        return ChatResult(data, _usage(data))

    async def chat_stream(self, body: JSONObject) -> AsyncIterator[ChatChunk]:
        """Stream a chat completion, always asking the upstream for usage."""
        client_wants_usage = wants_usage(body)
        upstream_body = self._body(body)
        upstream_body["stream"] = True
        upstream_body["stream_options"] = {
            **(body.get("stream_options") or {}),
            "include_usage": True,
        }
        async for event in self.upstream.post_stream("chat/completions", upstream_body):
            yield split_usage_chunk(event, client_wants_usage)

    async def embed(self, body: JSONObject) -> EmbeddingResult:
        """Embed the request's input."""
        data = await self.upstream.post_json("embeddings", self._body(body))
        if not isinstance(data.get("data"), list):
            raise UpstreamInvalidResponse("upstream embeddings answer has no data list")
        return EmbeddingResult(data, _usage(data))


def split_usage_chunk(event: JSONObject, client_wants_usage: bool) -> ChatChunk:
    """Wrap a streamed chunk, hiding usage the client did not ask for."""
    usage = event.get("usage")
    if not isinstance(usage, dict):
        return ChatChunk(event)
    parsed = Usage.from_openai(usage)
    if client_wants_usage:
        return ChatChunk(event, usage=parsed)
    if event.get("choices"):
        # Some servers (llama.cpp) put usage on the last content chunk.
        return ChatChunk({k: v for k, v in event.items() if k != "usage"}, usage=parsed)
    return ChatChunk(event, usage=parsed, forward=False)
