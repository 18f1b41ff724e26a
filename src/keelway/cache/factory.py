"""Cache objects built from a :class:`~keelway.cache.config.CacheConfig`."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from keelway.cache.config import CacheConfig
from keelway.cache.exact import Clock, ExactCache
from keelway.cache.memory_exact import MemoryExactCache
from keelway.cache.redis_exact import RedisExactCache
from keelway.cache.semantic import Embed, SemanticCache
from keelway.cache.semantic_redis import RedisSemanticStore
from keelway.cache.store_exact import StoreExactCache
from keelway.store.database import Database


def _redis(config: CacheConfig, client: Redis | None) -> str | Redis:
    if client is not None:
        return client
    if config.redis_url is None:
        raise ValueError("backend 'redis' needs redis_url")
    return config.redis_url


def build_exact_cache(
    config: CacheConfig,
    *,
    redis: Redis | None = None,
    clock: Clock = time.time,
    database: Database | None = None,
) -> ExactCache:
    """Return the exact cache the config describes.

    With the Redis backend, ``redis`` is a client to share; by default the
    cache opens its own from ``redis_url`` and closes it on ``close()``.
    """
    exact = config.exact
    if config.backend == "memory":
        return MemoryExactCache(exact.max_entries, exact.ttl_seconds, clock=clock)
    if config.backend == "store":
        if database is None:
            raise ValueError("backend 'store' needs the gateway's database")
        return StoreExactCache(
            database, exact.max_entries, exact.ttl_seconds, clock=clock
        )
    return RedisExactCache(
        _redis(config, redis),
        prefix=f"{config.prefix}exact:",
        max_entries=exact.max_entries,
        default_ttl=exact.ttl_seconds,
        clock=clock,
    )


def build_semantic_cache(
    config: CacheConfig,
    embed: Embed,
    *,
    redis: Redis | None = None,
    clock: Clock = time.time,
) -> SemanticCache:
    """Return the semantic cache the config describes.

    Pass ``config.threshold(group)`` to each lookup so that a model group's
    own threshold applies.
    """
    semantic = config.semantic
    store = None
    if config.backend == "redis":
        store = RedisSemanticStore(
            _redis(config, redis),
            prefix=f"{config.prefix}semantic:",
            max_entries=semantic.max_entries,
        )
    return SemanticCache(
        embed,
        semantic.threshold,
        semantic.ttl_seconds,
        semantic.max_entries,
        store=store,
        clock=clock,
        max_candidates=semantic.max_candidates,
        max_text_chars=semantic.max_text_chars,
    )
