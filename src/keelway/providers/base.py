"""The interface every provider adapter implements.

Requests and responses between the gateway and a provider are OpenAI wire
objects (``chat.completion``, ``chat.completion.chunk``, ``embedding`` lists)
held as plain JSON dicts, because the gateway passes fields it does not know
through to OpenAI-compatible upstreams unchanged. Usage travels beside them
as a normalized :class:`~keelway.tracing.usage.Usage`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from keelway.config import DeploymentConfig
from keelway.tracing.usage import Usage

JSONObject = dict[str, Any]


@dataclass(slots=True)
class ChatResult:
    """A complete ``chat.completion`` and its usage."""

    body: JSONObject
    usage: Usage | None


@dataclass(slots=True)
class ChatChunk:
    """One streamed ``chat.completion.chunk``.

    ``usage`` is set on the chunk that carries the provider's usage report.
    ``forward`` is false for chunks the client did not ask for, such as the
    usage chunk keelway requests for its own accounting.
    """

    data: JSONObject
    usage: Usage | None = None
    forward: bool = True


@dataclass(slots=True)
class EmbeddingResult:
    """An OpenAI ``list`` of embeddings and its usage."""

    body: JSONObject
    usage: Usage | None


@dataclass(slots=True)
class ProviderStatus:
    """Readiness of one deployment as ``/readyz`` reports it."""

    ready: bool
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    """An adapter for one deployment of a model."""

    deployment: DeploymentConfig

    async def start(self) -> None:
        """Open connection pools; called once at server start."""

    async def close(self) -> None:
        """Release connections and models; called once at shutdown."""

    async def check(self) -> ProviderStatus:
        """Report whether the deployment can take requests now."""
        ...


class ChatProvider(Provider, Protocol):
    """A provider that serves chat completions."""

    async def chat(self, body: JSONObject) -> ChatResult:
        """Run a non-streamed chat completion."""
        ...

    def chat_stream(self, body: JSONObject) -> AsyncIterator[ChatChunk]:
        """Run a streamed chat completion, yielding chunks as they arrive."""
        ...


class EmbeddingProvider(Provider, Protocol):
    """A provider that serves embeddings."""

    async def embed(self, body: JSONObject) -> EmbeddingResult:
        """Embed the ``input`` of an OpenAI embeddings request."""
        ...
