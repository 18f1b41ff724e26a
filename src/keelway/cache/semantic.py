"""The semantic cache: responses found by the meaning of the last user turn.

A lookup embeds the text, searches the partition of its scope and request
context for the cached texts with the highest cosine similarity, and takes the
first of them, above the threshold, that also passes the lexical guard of
:mod:`keelway.cache.guard`. Embeddings cannot tell "Can I get a refund?" from
"Can I not get a refund?", so the guard, not the threshold, is what keeps
negations and other entities apart.

Entries expire after their TTL, and past ``max_entries`` the oldest are
evicted. With a :class:`~keelway.cache.semantic_store.SemanticStore` the
cache also writes entries there and mirrors other replicas' entries into its
own index before each lookup and add.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from keelway.cache.entry import CachedResponse
from keelway.cache.exact import Clock, check_ttl
from keelway.cache.guard import TextFeatures, compare_features, features
from keelway.cache.scope import CacheScope
from keelway.cache.semantic_store import SemanticEntry, SemanticStore, partition_key
from keelway.cache.vector_index import Vector, VectorIndex, unit_vector

log = logging.getLogger(__name__)

# Returns one embedding per input text, in order.
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]

# all-MiniLM-L6-v2 reads at most 256 word pieces, roughly 1,000 characters of
# English. Text past that does not change the vector, so longer texts skip the
# cache instead of matching on their first part.
DEFAULT_MAX_TEXT_CHARS = 1000


def _check_threshold(threshold: float) -> float:
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], not {threshold!r}")
    return threshold


@dataclass(frozen=True, slots=True)
class SemanticHit:
    """A cached entry close enough to the request, its similarity, and why."""

    entry: SemanticEntry
    similarity: float
    reason: str

    @property
    def response(self) -> CachedResponse:
        """The cached response to replay."""
        return self.entry.response


@dataclass(frozen=True, slots=True)
class SemanticLookup:
    """The outcome of a lookup, for the response and the trace.

    ``outcome`` is a code without request content: ``hit``, ``no_text``,
    ``text_too_long``, ``no_entries``, ``below_threshold`` or
    ``guard_<check>`` naming the guard check that rejected the best candidate.
    ``reason`` explains it and may quote words of the texts, so it is request
    content under the trace payload policy. ``similarity`` is the best cosine
    similarity in the partition. ``vector`` is the request's unit embedding,
    to pass to :meth:`SemanticCache.add` so that the text is not embedded
    twice.
    """

    hit: SemanticHit | None
    outcome: str
    reason: str
    similarity: float | None = None
    vector: Vector | None = None


@dataclass(frozen=True, slots=True)
class _Stored:
    entry: SemanticEntry
    features: TextFeatures


class SemanticCache:
    """Responses by scope and text, matched by cosine similarity and the guard.

    ``threshold`` is the minimum cosine similarity of a candidate, ``ttl`` the
    default lifetime of an entry in seconds, ``max_entries`` the bound across
    all scopes. ``max_candidates`` caps how many of the most similar entries
    the guard checks. Texts longer than ``max_text_chars`` are neither looked
    up nor added.
    """

    def __init__(
        self,
        embed: Embed,
        threshold: float,
        ttl: float,
        max_entries: int,
        *,
        store: SemanticStore | None = None,
        clock: Clock = time.time,
        max_candidates: int = 5,
        max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
        sync_batch: int = 500,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be at least 1, not {max_candidates}")
        if max_text_chars < 1:
            raise ValueError(f"max_text_chars must be at least 1, not {max_text_chars}")
        if sync_batch < 1:
            raise ValueError(f"sync_batch must be at least 1, not {sync_batch}")
        self.threshold = _check_threshold(threshold)
        self.ttl = check_ttl(ttl)
        self.max_entries = max_entries
        self.max_candidates = max_candidates
        self.max_text_chars = max_text_chars
        self._embed = embed
        self._store = store
        self._clock = clock
        self._sync_batch = sync_batch
        self._index = VectorIndex()
        self._entries: OrderedDict[str, _Stored] = OrderedDict()
        self._by_text: dict[tuple[str, str], str] = {}
        self._cursor = 0
        self._sync_lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    async def lookup(
        self,
        scope: CacheScope,
        text: str,
        *,
        context: str = "",
        threshold: float | None = None,
    ) -> SemanticHit | None:
        """Return the best cached entry that matches ``text`` in its scope, or None."""
        found = await self.search(scope, text, context=context, threshold=threshold)
        return found.hit

    async def search(
        self,
        scope: CacheScope,
        text: str,
        *,
        context: str = "",
        threshold: float | None = None,
    ) -> SemanticLookup:
        """Look ``text`` up and explain the outcome, hit or miss.

        ``threshold`` overrides the cache's own, for a model group with its own.
        """
        minimum = self.threshold if threshold is None else _check_threshold(threshold)
        skipped = self._skip(text)
        if skipped is not None:
            return skipped
        await self._sync()
        partition = partition_key(scope, context)
        now = self._clock()
        for expired in self._index.expired(partition, now):
            self._drop(expired)
        vector = await self._embed_one(text)
        if self._index.partition_size(partition) == 0:
            return SemanticLookup(
                None,
                "no_entries",
                "no entries for this scope and context",
                None,
                vector,
            )
        matches, best = self._index.search(
            partition, vector, minimum, self.max_candidates, now
        )
        if not matches:
            best_text = "none" if best is None else f"{best:.3f}"
            return SemanticLookup(
                None,
                "below_threshold",
                f"no entry reaches similarity {minimum}; the best is {best_text}",
                best,
                vector,
            )
        request = features(text)
        rejected = []
        for match in matches:
            stored = self._entries[match.id]
            verdict = compare_features(request, stored.features)
            if verdict.passed:
                hit = SemanticHit(
                    stored.entry,
                    match.similarity,
                    f"similarity {match.similarity:.3f} >= {minimum}; {verdict.reason}",
                )
                return SemanticLookup(hit, "hit", hit.reason, best, vector)
            rejected.append((match, verdict))
        first, verdict = rejected[0]
        return SemanticLookup(
            None,
            f"guard_{verdict.check}",
            f"{len(rejected)} entr{'y' if len(rejected) == 1 else 'ies'} reached"
            f" similarity {minimum} but failed the guard; the most similar"
            f" ({first.similarity:.3f}): {verdict.reason}",
            best,
            vector,
        )

    async def add(
        self,
        scope: CacheScope,
        text: str,
        response: CachedResponse,
        *,
        context: str = "",
        vector: Vector | None = None,
        ttl: float | None = None,
    ) -> SemanticEntry | None:
        """Cache ``response`` under ``text``; return the entry, or None if skipped.

        A text that :meth:`search` would skip (empty or too long) is skipped.
        An entry with the same scope, context and text replaces the old one.
        ``vector`` is the embedding from :attr:`SemanticLookup.vector`, if any.
        """
        if self._skip(text) is not None:
            return None
        lifetime = check_ttl(self.ttl if ttl is None else ttl)
        unit = (
            await self._embed_one(text)
            if vector is None
            else unit_vector(vector, self._index.dimensions)
        )
        await self._sync()
        entry = SemanticEntry(
            id=uuid.uuid4().hex,
            scope=scope,
            context=context,
            text=text,
            response=response,
            expires_at=self._clock() + lifetime,
        )
        self._insert(entry, unit)
        if self._store is not None:
            sequence = await self._store.save(entry, unit, lifetime)
            if sequence == self._cursor + 1:
                self._cursor = sequence
        return entry

    async def close(self) -> None:
        """Close the store, if any, and drop the in-process index."""
        if self._store is not None:
            await self._store.close()
        self._clear()

    def _clear(self) -> None:
        self._entries.clear()
        self._by_text.clear()
        self._index = VectorIndex()

    def _skip(self, text: str) -> SemanticLookup | None:
        if not text.strip():
            return SemanticLookup(None, "no_text", "the request has no user text")
        if len(text) > self.max_text_chars:
            return SemanticLookup(
                None,
                "text_too_long",
                f"the user text has {len(text)} characters; the semantic cache"
                f" takes at most {self.max_text_chars}",
            )
        return None

    async def _embed_one(self, text: str) -> Vector:
        vectors = await self._embed([text])
        if len(vectors) != 1:
            raise ValueError(f"embed returned {len(vectors)} vectors for 1 text")
        return unit_vector(vectors[0], self._index.dimensions)

    def _insert(self, entry: SemanticEntry, vector: Vector) -> None:
        partition = entry.partition
        previous = self._by_text.get((partition, entry.text))
        if previous is not None:
            self._drop(previous)
        self._index.add(partition, entry.id, vector, entry.expires_at)
        self._entries[entry.id] = _Stored(entry, features(entry.text))
        self._by_text[(partition, entry.text)] = entry.id
        now = self._clock()
        # Expired entries at the old end go first, then the oldest live ones.
        while self._entries:
            oldest_id, oldest = next(iter(self._entries.items()))
            if oldest.entry.expires_at > now and len(self._entries) <= self.max_entries:
                break
            self._drop(oldest_id)

    def _drop(self, id: str) -> None:
        stored = self._entries.pop(id, None)
        if stored is None:
            return
        partition = stored.entry.partition
        self._index.remove(partition, id)
        if self._by_text.get((partition, stored.entry.text)) == id:
            del self._by_text[(partition, stored.entry.text)]

    async def _sync(self) -> None:
        """Mirror entries other writers saved to the store since the last sync."""
        if self._store is None:
            return
        async with self._sync_lock:
            # Enough batches to read a full cache once, plus one.
            for _ in range(self.max_entries // self._sync_batch + 2):
                changes = await self._store.changes(self._cursor, self._sync_batch)
                if changes.reset:
                    self._clear()
                now = self._clock()
                for entry, vector in changes.entries:
                    if entry.id in self._entries or entry.expires_at <= now:
                        continue
                    try:
                        self._insert(entry, vector)
                    except ValueError as error:
                        log.warning("skipping semantic entry %s: %s", entry.id, error)
                self._cursor = changes.cursor
                if not changes.more:
                    break
