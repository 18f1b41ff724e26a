"""Checking the virtual key of each request.

Keys arrive as ``Authorization: Bearer ...`` (OpenAI SDK) or ``x-api-key``
(Anthropic SDK). A checked key is trusted for ``auth.key_cache_seconds`` so
that the store is not read on every request. A revoked key therefore stops
working within that time. An unknown key is never cached.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from dataclasses import dataclass

from starlette.requests import Request

from keelway.gateway.errors import AuthenticationFailed
from keelway.store.keys import ApiKeyRecord, KeyStore, hash_key

MASTER_KEY_ENV = "KEELWAY_MASTER_KEY"


@dataclass(frozen=True, slots=True)
class Caller:
    """Identity behind a request: a virtual key or the master key."""

    key_id: str | None
    key_name: str
    team: str | None
    models: tuple[str, ...] | None
    payloads: str | None
    is_master: bool = False
    # The stored key, for its rate limits and budget; None for the master key.
    record: ApiKeyRecord | None = None

    def allows(self, model: str) -> bool:
        """Return whether this caller may use ``model``."""
        return self.models is None or model in self.models


def _caller(record: ApiKeyRecord) -> Caller:
    return Caller(
        record.id,
        record.name,
        record.team,
        record.models,
        record.payloads,
        record=record,
    )


def presented_key(request: Request) -> str | None:
    """Return the key the request carries, if any."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = request.headers.get("x-api-key")
    return api_key.strip() if api_key and api_key.strip() else None


class Authenticator:
    """Resolves a presented key to a :class:`Caller`, with a short-lived cache."""

    def __init__(self, keys: KeyStore, cache_seconds: float) -> None:
        self.keys = keys
        self.cache_seconds = cache_seconds
        self.master_key = os.environ.get(MASTER_KEY_ENV) or None
        self._cache: dict[str, tuple[float, Caller]] = {}

    async def authenticate(self, request: Request) -> Caller:
        """Return the caller, or raise AuthenticationFailed."""
        secret = presented_key(request)
        if secret is None:
            raise AuthenticationFailed(
                "missing API key: send it as 'Authorization: Bearer <key>'",
                code="missing_api_key",
            )
        if self.master_key and hmac.compare_digest(
            secret.encode("utf-8", "surrogatepass"), self.master_key.encode()
        ):
            return Caller(None, "master", None, None, None, is_master=True)
        digest = hash_key(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now < cached[0]:
            return cached[1]
        record = await asyncio.to_thread(self.keys.find_by_hash, digest)
        if record is None:
            raise AuthenticationFailed("invalid API key")
        if not record.active:
            self._cache.pop(digest, None)
            raise AuthenticationFailed(
                "API key has been revoked", code="revoked_api_key"
            )
        caller = _caller(record)
        if self.cache_seconds > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self.cache_seconds, caller)
        return caller
