"""The boundary that no cache entry crosses.

Exact keys and semantic partitions both include every field of the scope, so
two requests share a cache entry only when they have the same model group,
prompt version, system prompt and access scope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keelway.cache.canonical import digest

# Roles whose messages instruct the model rather than ask it something.
SYSTEM_ROLES = frozenset({"system", "developer"})


def system_prompt_hash(messages: Sequence[Any]) -> str:
    """Return the SHA-256 hex digest of the system and developer messages, in order.

    A conversation without such messages hashes as an empty list, so all of
    them share one value.
    """
    system = [
        dict(message)
        for message in messages
        if isinstance(message, Mapping) and message.get("role") in SYSTEM_ROLES
    ]
    return digest(system)


@dataclass(frozen=True, slots=True)
class CacheScope:
    """The partition of the cache that a request may read and write.

    ``access`` is the caller's access boundary: the team name, or the key id
    for a key without a team.
    """

    model_group: str
    prompt_version: str | None
    system_prompt_hash: str
    access: str

    def __post_init__(self) -> None:
        if not self.model_group:
            raise ValueError("CacheScope.model_group must not be empty")
        if not self.access:
            raise ValueError("CacheScope.access must not be empty")
        if not self.system_prompt_hash:
            raise ValueError("CacheScope.system_prompt_hash must not be empty")

    @classmethod
    def for_request(
        cls,
        model_group: str,
        messages: Sequence[Any],
        access: str,
        prompt_version: str | None = None,
    ) -> CacheScope:
        """Build the scope of a request from its messages and the caller."""
        return cls(model_group, prompt_version, system_prompt_hash(messages), access)

    @property
    def key(self) -> str:
        """The SHA-256 hex digest of the scope, used to name its partition."""
        return digest(self.to_dict())

    def to_dict(self) -> dict[str, str | None]:
        """Return the scope as a JSON object."""
        return {
            "model_group": self.model_group,
            "prompt_version": self.prompt_version,
            "system_prompt_hash": self.system_prompt_hash,
            "access": self.access,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CacheScope:
        """Read a scope written by :meth:`to_dict`; raise ValueError if malformed."""
        fields = ("model_group", "system_prompt_hash", "access")
        values = {name: data.get(name) for name in fields}
        version = data.get("prompt_version")
        bad = [name for name, value in values.items() if not isinstance(value, str)]
        if bad or not (version is None or isinstance(version, str)):
            raise ValueError(f"malformed cache scope: {dict(data)!r}")
        return cls(
            model_group=str(values["model_group"]),
            prompt_version=version,
            system_prompt_hash=str(values["system_prompt_hash"]),
            access=str(values["access"]),
        )
