"""A cached chat completion and its serialized form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson

from keelway.cache.scope import CacheScope
from keelway.tracing.usage import Usage

JSONObject = dict[str, Any]

_USAGE_FIELDS = {field.name for field in dataclasses.fields(Usage)}


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """An OpenAI ``chat.completion`` body as the model returned it.

    ``usage`` and ``cost_usd`` are those of the original call, so a hit can
    report the tokens and money it saved. ``created_at`` is Unix time in
    seconds.
    """

    body: JSONObject
    usage: Usage | None
    cost_usd: float | None
    created_at: float
    scope: CacheScope

    def to_dict(self) -> JSONObject:
        """Return the entry as a JSON object."""
        return {
            "body": self.body,
            "usage": dataclasses.asdict(self.usage) if self.usage else None,
            "cost_usd": self.cost_usd,
            "created_at": self.created_at,
            "scope": self.scope.to_dict(),
        }

    def to_json(self) -> bytes:
        """Encode the entry as JSON bytes."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> CachedResponse:
        """Read an entry written by :meth:`to_dict`; raise ValueError if malformed."""
        if not isinstance(data, dict):
            raise ValueError(f"cached entry must be a JSON object, not {type(data)}")
        body, usage = data.get("body"), data.get("usage")
        cost, created = data.get("cost_usd"), data.get("created_at")
        if not isinstance(body, dict):
            raise ValueError("cached entry has no 'body' object")
        if not isinstance(created, int | float) or isinstance(created, bool):
            raise ValueError(f"cached entry has a bad 'created_at': {created!r}")
        if cost is not None and (
            not isinstance(cost, int | float) or isinstance(cost, bool)
        ):
            raise ValueError(f"cached entry has a bad 'cost_usd': {cost!r}")
        if usage is not None and (
            not isinstance(usage, dict) or not usage.keys() <= _USAGE_FIELDS
        ):
            raise ValueError(f"cached entry has a bad 'usage': {usage!r}")
        scope = data.get("scope")
        if not isinstance(scope, dict):
            raise ValueError("cached entry has no 'scope' object")
        return cls(
            body=body,
            usage=Usage(**usage) if usage is not None else None,
            cost_usd=float(cost) if cost is not None else None,
            created_at=float(created),
            scope=CacheScope.from_dict(scope),
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> CachedResponse:
        """Decode an entry written by :meth:`to_json`; raise ValueError if malformed."""
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise ValueError(f"cached entry is not JSON: {error}") from None
        return cls.from_dict(decoded)
