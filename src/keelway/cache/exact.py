"""The interface of an exact-match response cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from keelway.cache.entry import CachedResponse

# Returns the current Unix time in seconds; tests pass a fake one.
Clock = Callable[[], float]


@runtime_checkable
class ExactCache(Protocol):
    """A store of responses under :func:`~keelway.cache.keys.exact_key` keys.

    ``get`` never returns an expired entry. Backends raise
    :class:`~keelway.cache.errors.CacheError` when their storage fails.
    """

    async def get(self, key: str) -> CachedResponse | None:
        """Return the live entry under ``key``, or None."""
        ...

    async def set(
        self, key: str, response: CachedResponse, ttl: float | None = None
    ) -> None:
        """Store ``response`` under ``key`` for ``ttl`` seconds (None: the default)."""
        ...

    async def close(self) -> None:
        """Release connections; the cache is not used afterwards."""
        ...


def check_ttl(ttl: float) -> float:
    """Return ``ttl`` if it is a positive number of seconds, else raise ValueError."""
    if not ttl > 0:
        raise ValueError(f"cache ttl must be a positive number of seconds, not {ttl!r}")
    return ttl
