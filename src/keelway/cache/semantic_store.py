"""Semantic cache entries and the interface of a store that shares them.

A :class:`~keelway.cache.semantic.SemanticCache` always searches an
in-process index. A store, when given, persists entries so that other
replicas (and a restarted process) mirror them into their own index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from keelway.cache.canonical import digest
from keelway.cache.entry import CachedResponse
from keelway.cache.scope import CacheScope
from keelway.cache.vector_index import Vector


def partition_key(scope: CacheScope, context: str) -> str:
    """Return the digest naming the partition of a scope and a request context."""
    return digest({"scope": scope.to_dict(), "context": context})


@dataclass(frozen=True, slots=True)
class SemanticEntry:
    """A cached response found by the text of the request that produced it.

    ``context`` is :func:`~keelway.cache.keys.semantic_context` of that
    request. ``expires_at`` is Unix time in seconds.
    """

    id: str
    scope: CacheScope
    context: str
    text: str
    response: CachedResponse
    expires_at: float

    @property
    def partition(self) -> str:
        """The digest of scope and context; a lookup searches one partition."""
        return partition_key(self.scope, self.context)


@dataclass(frozen=True, slots=True)
class StoreChanges:
    """Entries written after a cursor, the cursor to resume from, and whether
    more are waiting.

    ``reset`` is true when the store was emptied since the previous call, so
    the reader drops its mirror before adding ``entries``.
    """

    entries: list[tuple[SemanticEntry, Vector]]
    cursor: int
    more: bool
    reset: bool = False


class SemanticStore(Protocol):
    """Shared storage of semantic entries, read as a log of writes.

    Each write gets the next sequence number. ``changes(cursor)`` returns live
    entries with a higher number, oldest first. Backends raise
    :class:`~keelway.cache.errors.CacheError` when their storage fails.
    """

    async def save(self, entry: SemanticEntry, vector: Vector, ttl: float) -> int:
        """Persist ``entry`` for ``ttl`` seconds and return its sequence number."""
        ...

    async def changes(self, cursor: int, limit: int) -> StoreChanges:
        """Return up to ``limit`` entries written after ``cursor``."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
