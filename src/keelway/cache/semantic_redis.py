"""A semantic store in Redis, mirrored into each replica's in-process index.

Keys under ``prefix``:

- ``{prefix}seq``: the counter that numbers writes;
- ``{prefix}epoch``: a random token set by the first write after the keys
  were created or flushed, so that readers notice a restarted counter;
- ``{prefix}log``: a sorted set of entry ids scored by write number;
- ``{prefix}entry:{id}``: a hash with ``meta`` (the entry as orjson) and
  ``vector`` (the unit vector as little-endian float32 bytes), expiring with
  the entry's TTL.

A Lua script numbers, writes and trims in one step, so readers never see a
gap that a later write fills, and the log keeps at most ``max_entries``
ids: past that the lowest-numbered (oldest) entries are deleted. Ids of
entries that expired stay in the log until trimmed, and readers skip them.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, cast

import numpy as np
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from keelway.cache.entry import CachedResponse
from keelway.cache.errors import CacheError
from keelway.cache.redis_exact import connect
from keelway.cache.scope import CacheScope
from keelway.cache.semantic_store import SemanticEntry, StoreChanges
from keelway.cache.vector_index import Vector, unit_vector

log = logging.getLogger(__name__)

# KEYS: sequence key, log key, entry key, epoch key.
# ARGV: id, meta, vector bytes, ttl in ms, max entries, entry key prefix, epoch.
_SAVE_SCRIPT = """
redis.call('SET', KEYS[4], ARGV[7], 'NX')
local sequence = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[3], 'meta', ARGV[2], 'vector', ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('ZADD', KEYS[2], sequence, ARGV[1])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if excess > 0 then
  local evicted = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #evicted, 2 do
    redis.call('DEL', ARGV[6] .. evicted[i])
  end
end
return sequence
"""


def _decode(id: str, meta: bytes, vector: bytes) -> tuple[SemanticEntry, Vector]:
    data: Any = orjson.loads(meta)
    if not isinstance(data, dict):
        raise ValueError("meta is not a JSON object")
    scope, context, text = data.get("scope"), data.get("context"), data.get("text")
    expires_at = data.get("expires_at")
    if not isinstance(scope, dict) or not isinstance(context, str):
        raise ValueError("meta has no scope object or context string")
    if not isinstance(text, str) or not isinstance(expires_at, int | float):
        raise ValueError("meta has no text string or expires_at number")
    entry = SemanticEntry(
        id=id,
        scope=CacheScope.from_dict(scope),
        context=context,
        text=text,
        response=CachedResponse.from_dict(data.get("response")),
        expires_at=float(expires_at),
    )
    return entry, unit_vector(np.frombuffer(vector, dtype="<f4"))


class RedisSemanticStore:
    """Semantic entries in Redis under ``prefix``, at most ``max_entries`` of them."""

    def __init__(
        self,
        redis: str | Redis,
        *,
        prefix: str = "keelway:cache:semantic:",
        max_entries: int,
    ) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty")
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.prefix = prefix
        self.max_entries = max_entries
        self.sequence_key = f"{prefix}seq"
        self.log_key = f"{prefix}log"
        self.entry_prefix = f"{prefix}entry:"
        self.epoch_key = f"{prefix}epoch"
        self._epoch: str | None = None
        self._client, self._owns_client = connect(redis)
        self._save_script = self._client.register_script(_SAVE_SCRIPT)

    async def save(self, entry: SemanticEntry, vector: Vector, ttl: float) -> int:
        """Write ``entry`` for ``ttl`` seconds and return its write number."""
        meta = orjson.dumps(
            {
                "scope": entry.scope.to_dict(),
                "context": entry.context,
                "text": entry.text,
                "response": entry.response.to_dict(),
                "expires_at": entry.expires_at,
            }
        )
        try:
            sequence = await self._save_script(
                keys=[
                    self.sequence_key,
                    self.log_key,
                    self.entry_prefix + entry.id,
                    self.epoch_key,
                ],
                args=[
                    entry.id,
                    meta,
                    np.asarray(vector, dtype="<f4").tobytes(),
                    max(1, round(ttl * 1000)),
                    self.max_entries,
                    self.entry_prefix,
                    uuid.uuid4().hex,
                ],
            )
        except RedisError as error:
            raise CacheError(
                f"Redis write of semantic entry {self.entry_prefix}{entry.id} failed:"
                f" {error}"
            ) from error
        return int(sequence)

    async def changes(self, cursor: int, limit: int) -> StoreChanges:
        """Return up to ``limit`` live entries written after ``cursor``, oldest first.

        When the epoch token changed since the last call, the keys were
        flushed and the counter restarted, so reading starts again from 0 and
        the result has ``reset`` set. The first call always has it set.
        """
        try:
            raw_epoch = await self._client.get(self.epoch_key)
            epoch = None if raw_epoch is None else _text(raw_epoch)
            reset = epoch != self._epoch
            if reset:
                cursor = 0
            self._epoch = epoch
            logged = await self._client.zrange(
                self.log_key,
                f"({cursor}",
                "+inf",
                byscore=True,
                offset=0,
                num=limit,
                withscores=True,
            )
            pairs = cast(list[tuple[bytes | str, float]], logged)
            ids = [(_text(member), int(score)) for member, score in pairs]
            pipeline = self._client.pipeline(transaction=False)
            for id, _ in ids:
                pipeline.hmget(self.entry_prefix + id, ["meta", "vector"])
            fields = await pipeline.execute() if ids else []
        except RedisError as error:
            raise CacheError(
                f"Redis read of semantic log {self.log_key} failed: {error}"
            ) from error
        entries = []
        for (id, _), (meta, vector) in zip(ids, fields, strict=True):
            if meta is None or vector is None:
                continue  # expired or evicted since it was logged
            try:
                entries.append(_decode(id, meta, vector))
            except ValueError as error:
                log.warning("skipping unreadable semantic entry %s: %s", id, error)
        next_cursor = ids[-1][1] if ids else cursor
        return StoreChanges(entries, next_cursor, more=len(ids) == limit, reset=reset)

    async def close(self) -> None:
        """Close the connection pool if this store created it from a URL."""
        if self._owns_client:
            await self._client.aclose()


def _text(member: bytes | str) -> str:
    return member.decode() if isinstance(member, bytes) else member
