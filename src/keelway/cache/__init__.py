"""Exact and semantic response caches for chat completions.

The exact cache returns a stored response to a request equal in every field
that can change the response (:func:`exact_key`). The semantic cache returns
the response to a similar last user turn in the same scope and request context
(:class:`SemanticCache`). :func:`cache_policy` decides per request whether
either may be read or written, and :func:`completion_to_chunks` replays a
cached response as a stream.
"""

from keelway.cache.config import (
    CacheConfig,
    ExactCacheConfig,
    GroupCacheConfig,
    SemanticCacheConfig,
)
from keelway.cache.embedding import embedding_vectors
from keelway.cache.entry import CachedResponse
from keelway.cache.errors import CacheError
from keelway.cache.exact import Clock, ExactCache
from keelway.cache.factory import build_exact_cache, build_semantic_cache
from keelway.cache.guard import GuardVerdict
from keelway.cache.keys import ANSWER_NEUTRAL_FIELDS, exact_key, semantic_context
from keelway.cache.memory_exact import MemoryExactCache
from keelway.cache.policy import CachePolicy, InvalidCacheDirective, cache_policy
from keelway.cache.redis_exact import RedisExactCache
from keelway.cache.replay import completion_to_chunks
from keelway.cache.scope import CacheScope, system_prompt_hash
from keelway.cache.semantic import Embed, SemanticCache, SemanticHit, SemanticLookup
from keelway.cache.semantic_redis import RedisSemanticStore
from keelway.cache.semantic_store import SemanticEntry, SemanticStore
from keelway.cache.text import last_user_text

__all__ = [
    "ANSWER_NEUTRAL_FIELDS",
    "CacheConfig",
    "CacheError",
    "CachePolicy",
    "CacheScope",
    "CachedResponse",
    "Clock",
    "Embed",
    "ExactCache",
    "ExactCacheConfig",
    "GroupCacheConfig",
    "GuardVerdict",
    "InvalidCacheDirective",
    "MemoryExactCache",
    "RedisExactCache",
    "RedisSemanticStore",
    "SemanticCache",
    "SemanticCacheConfig",
    "SemanticEntry",
    "SemanticHit",
    "SemanticLookup",
    "SemanticStore",
    "build_exact_cache",
    "build_semantic_cache",
    "cache_policy",
    "completion_to_chunks",
    "embedding_vectors",
    "exact_key",
    "last_user_text",
    "semantic_context",
    "system_prompt_hash",
]
