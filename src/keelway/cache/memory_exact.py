"""An exact cache in process memory: LRU-bounded, with a TTL per entry."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from keelway.cache.entry import CachedResponse
from keelway.cache.exact import Clock, check_ttl

log = logging.getLogger(__name__)


class MemoryExactCache:
    """An LRU map of at most ``max_entries`` entries, each with its own expiry.

    ``get`` and ``set`` are O(1). Entries are stored as JSON bytes, so each
    hit decodes a fresh copy that callers may change freely. An expired entry
    is never returned: ``get`` drops it when it finds it, and until then it
    counts toward ``max_entries`` and is evicted in LRU order like any other.
    """

    def __init__(
        self, max_entries: int, default_ttl: float, *, clock: Clock = time.time
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.max_entries = max_entries
        self.default_ttl = check_ttl(default_ttl)
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> CachedResponse | None:
        """Return the live entry under ``key``, marking it most recently used."""
        found = self._entries.get(key)
        if found is None:
            return None
        expires_at, payload = found
        if expires_at <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        try:
            return CachedResponse.from_json(payload)
        except ValueError as error:
            # Only a bug in CachedResponse.to_json could get here.
            log.warning("dropping unreadable cache entry %s: %s", key, error)
            del self._entries[key]
            return None

    async def set(
        self, key: str, response: CachedResponse, ttl: float | None = None
    ) -> None:
        """Store ``response``, evicting least recently used entries past the bound."""
        expires_at = self._clock() + check_ttl(self.default_ttl if ttl is None else ttl)
        self._entries[key] = (expires_at, response.to_json())
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def close(self) -> None:
        """Drop every entry."""
        self._entries.clear()
