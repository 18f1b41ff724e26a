"""An exact cache in keelway's store (SQLite or PostgreSQL), shared by replicas.

For a deployment that has a database but no Redis: entries survive restarts
and every replica that uses the same database reads them. Each entry is a
row with its JSON payload and its expiry. ``get`` ignores and deletes an
expired row. ``set`` replaces the row of its key, deletes expired rows and,
past ``max_entries`` rows, the oldest ones. The bound is first-in-first-out
rather than LRU, since reading an entry does not write to the store.

Queries run on a worker thread, off the event loop; the gateway stores
answers after the response is sent, so a write never delays one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from keelway.cache.entry import CachedResponse
from keelway.cache.errors import CacheError
from keelway.cache.exact import Clock, check_ttl
from keelway.store.database import Database
from keelway.store.models import CacheEntry

log = logging.getLogger(__name__)


class StoreExactCache:
    """Exact cache entries as rows of the ``cache_entries`` table."""

    def __init__(
        self,
        database: Database,
        max_entries: int,
        default_ttl: float,
        *,
        clock: Clock = time.time,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.database = database
        self.max_entries = max_entries
        self.default_ttl = check_ttl(default_ttl)
        self._clock = clock

    async def get(self, key: str) -> CachedResponse | None:
        """Return the live entry under ``key``, or None."""
        return await asyncio.to_thread(self._get, key)

    async def set(
        self, key: str, response: CachedResponse, ttl: float | None = None
    ) -> None:
        """Store ``response`` under ``key``, trimming the table now and then."""
        lifetime = check_ttl(self.default_ttl if ttl is None else ttl)
        await asyncio.to_thread(self._set, key, response.to_json(), lifetime)

    async def close(self) -> None:
        """Nothing to release: the store's engine belongs to the gateway."""

    def _get(self, key: str) -> CachedResponse | None:
        now = self._clock()
        try:
            with self.database.session() as session:
                row = session.get(CacheEntry, key)
                if row is None:
                    return None
                if row.expires_at <= now:
                    session.delete(row)
                    session.commit()
                    return None
                payload = row.payload
        except SQLAlchemyError as error:
            raise CacheError(
                f"reading cache entry {key} failed: {error.__class__.__name__}"
            ) from error
        try:
            return CachedResponse.from_json(payload)
        except ValueError as error:
            log.warning("ignoring unreadable cache entry %s: %s", key, error)
            return None

    def _set(self, key: str, payload: bytes, lifetime: float) -> None:
        now = self._clock()
        try:
            with self.database.session() as session:
                row = session.get(CacheEntry, key)
                if row is None:
                    session.add(
                        CacheEntry(
                            key=key,
                            payload=payload,
                            expires_at=now + lifetime,
                            stored_at=now,
                        )
                    )
                else:
                    row.payload = payload
                    row.expires_at = now + lifetime
                    row.stored_at = now
                session.commit()
                self._trim(session, now)
        except SQLAlchemyError as error:
            raise CacheError(
                f"storing cache entry {key} failed: {error.__class__.__name__}"
            ) from error

    def _trim(self, session: Session, now: float) -> None:
        session.execute(delete(CacheEntry).where(CacheEntry.expires_at <= now))
        count = session.scalar(select(func.count()).select_from(CacheEntry)) or 0
        excess = count - self.max_entries
        if excess > 0:
            oldest = select(CacheEntry.key).order_by(CacheEntry.stored_at).limit(excess)
            keys = list(session.scalars(oldest))
            session.execute(delete(CacheEntry).where(CacheEntry.key.in_(keys)))
        session.commit()
