"""The response cache on the request path: lookup before routing, store after.

A request reads the exact cache, then the semantic cache, when its policy
allows (deterministic by default, see :func:`keelway.cache.cache_policy`)
and its model group has them on. A hit is returned without calling a
provider, streamed or not, and its trace records the kind of hit and the
cost saved. A successful provider response is stored after it is sent,
off the hot path. A cache that fails is logged and treated as a miss.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from keelway.cache import (
    CacheConfig,
    CachedResponse,
    CacheError,
    CachePolicy,
    CacheScope,
    ExactCache,
    InvalidCacheDirective,
    SemanticCache,
    cache_policy,
    exact_key,
    last_user_text,
    semantic_context,
)
from keelway.cache.vector_index import Vector
from keelway.gateway.errors import InvalidRequest
from keelway.tracing.records import TraceRecord
from keelway.tracing.usage import Usage

log = logging.getLogger(__name__)

JSONObject = dict[str, Any]


@dataclass(slots=True)
class CacheState:
    """The cache policy, scope and keys of one request."""

    policy: CachePolicy
    scope: CacheScope
    exact_key: str | None
    semantic_text: str | None
    semantic_context: str
    vector: Vector | None = None


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A cached response for a request."""

    response: CachedResponse
    kind: str
    similarity: float | None
    reason: str


class ResponseCache:
    """The exact and semantic caches as the pipeline uses them."""

    def __init__(
        self,
        config: CacheConfig,
        exact: ExactCache | None,
        semantic: SemanticCache | None,
    ) -> None:
        self.config = config
        self.exact = exact
        self.semantic = semantic

    def applies(self, group: str) -> bool:
        """Return whether any cache is on for the model group."""
        return (self.exact is not None and self.config.exact_enabled(group)) or (
            self.semantic is not None and self.config.semantic_enabled(group)
        )

    def prepare(
        self,
        request: Request,
        body: JSONObject,
        group: str,
        access: str,
        prompt: str | None,
    ) -> CacheState:
        """Work out the request's cache policy and keys."""
        try:
            policy = cache_policy(request.headers, body)
        except InvalidCacheDirective as error:
            raise InvalidRequest(
                str(error), param=error.param, code="invalid_cache_directive"
            ) from None
        messages = body.get("messages")
        messages = messages if isinstance(messages, list) else []
        scope = CacheScope.for_request(group, messages, access, prompt)
        exact = None
        if self.exact is not None and self.config.exact_enabled(group):
            try:
                exact = exact_key(body, scope)
            except ValueError:
                # A body orjson cannot encode canonically is not cached.
                exact = None
        text = None
        if self.semantic is not None and self.config.semantic_enabled(group):
            text = last_user_text(messages)
        return CacheState(policy, scope, exact, text, semantic_context(body))

    async def lookup(self, state: CacheState, group: str) -> CacheHit | None:
        """Return a cached response for the request, or None."""
        if not state.policy.read:
            return None
        try:
            if state.exact_key is not None and self.exact is not None:
                found = await self.exact.get(state.exact_key)
                if found is not None:
                    return CacheHit(found, "exact", None, "same request")
            if state.semantic_text is not None and self.semantic is not None:
                result = await self.semantic.search(
                    state.scope,
                    state.semantic_text,
                    context=state.semantic_context,
                    threshold=self.config.threshold(group),
                )
                state.vector = result.vector
                if result.hit is not None:
                    return CacheHit(
                        result.hit.response,
                        "semantic",
                        result.hit.similarity,
                        result.hit.reason,
                    )
        except CacheError as error:
            log.warning("cache lookup failed, treating it as a miss: %s", error)
        return None

    async def store(
        self,
        state: CacheState,
        body: JSONObject,
        usage: Usage | None,
        cost_usd: float | None,
    ) -> None:
        """Store a provider's response under the request's keys, if allowed."""
        if not state.policy.write or not _complete(body):
            return
        entry = CachedResponse(body, usage, cost_usd, time.time(), state.scope)
        try:
            if state.exact_key is not None and self.exact is not None:
                await self.exact.set(state.exact_key, entry)
            if state.semantic_text is not None and self.semantic is not None:
                await self.semantic.add(
                    state.scope,
                    state.semantic_text,
                    entry,
                    context=state.semantic_context,
                    vector=state.vector,
                )
        except CacheError as error:
            log.warning("cache store failed: %s", error)

    async def close(self) -> None:
        """Close the caches' connections."""
        for cache in (self.exact, self.semantic):
            if cache is not None:
                await cache.close()


def _complete(body: JSONObject) -> bool:
    """Return whether every choice finished normally, so the response is reusable."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    return all(
        isinstance(c, dict) and c.get("finish_reason") in ("stop", "tool_calls")
        for c in choices
    )


def record_hit(trace: TraceRecord, hit: CacheHit, started: float) -> None:
    """Put a cache hit on the trace: a span, zero cost and the cost saved."""
    details: JSONObject = {"hit": hit.kind, "cost_saved_usd": hit.response.cost_usd}
    if trace.payloads == "full":
        # A semantic hit's reason quotes words of the request.
        details["reason"] = hit.reason
    if hit.similarity is not None:
        details["similarity"] = round(hit.similarity, 4)
    trace.span("cache", started, time.perf_counter(), attributes=details)
    trace.attributes = {**(trace.attributes or {}), "cache": details}
    trace.cost_usd = 0.0
