"""The ``cache`` section of the configuration file.

Exact caching is on by default, because it only returns a response to a
request equal in every field that can change the response, and by default only
deterministic requests are cached. Semantic caching is off by default because
it returns the response to a different, similar text.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExactCacheConfig(_Strict):
    """The exact cache: responses keyed by the whole canonical request."""

    enabled: bool = False
    ttl_seconds: float = Field(3600.0, gt=0)
    max_entries: int = Field(10_000, ge=1)


class SemanticCacheConfig(_Strict):
    """The semantic cache: responses found by the meaning of the last user turn.

    ``threshold`` is the minimum cosine similarity. The default 0.90 comes
    from all-MiniLM-L6-v2: paraphrases that pass the lexical guard scored
    0.906 to 0.996 on a hand-made set of pairs, and the guard, not this
    threshold, rejects negations and other entities, which score up to 0.98.
    ``embedding_model`` is a model group that keelway serves.
    """

    enabled: bool = False
    threshold: float = Field(0.90, gt=0, le=1)
    ttl_seconds: float = Field(3600.0, gt=0)
    max_entries: int = Field(10_000, ge=1)
    embedding_model: str = Field("all-minilm-l6-v2", min_length=1)
    max_candidates: int = Field(5, ge=1, le=100)
    max_text_chars: int = Field(1000, ge=1)


class GroupCacheConfig(_Strict):
    """Overrides for one model group; None keeps the global setting."""

    exact: bool | None = None
    semantic: bool | None = None
    threshold: float | None = Field(None, gt=0, le=1)


class CacheConfig(_Strict):
    """The cache backend and the caches each model group uses.

    ``backend: redis`` shares entries across replicas and needs ``redis_url``.
    ``backend: store`` keeps exact entries in keelway's database, shared by
    replicas that use it; semantic entries then stay in each process.
    ``prefix`` starts every Redis key the cache writes.
    """

    backend: Literal["memory", "redis", "store"] = "memory"
    redis_url: str | None = Field(None, repr=False)
    prefix: str = Field("keelway:cache:", min_length=1)
    exact: ExactCacheConfig = ExactCacheConfig()
    semantic: SemanticCacheConfig = SemanticCacheConfig()
    groups: dict[str, GroupCacheConfig] = Field(default_factory=dict)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="after")
    def _check_backend(self) -> CacheConfig:
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("backend 'redis' needs redis_url")
        return self

    def exact_enabled(self, group: str) -> bool:
        """Say whether requests to ``group`` use the exact cache."""
        override = self.groups.get(group)
        if override is not None and override.exact is not None:
            return override.exact
        return self.exact.enabled

    def semantic_enabled(self, group: str) -> bool:
        """Say whether requests to ``group`` use the semantic cache."""
        override = self.groups.get(group)
        if override is not None and override.semantic is not None:
            return override.semantic
        return self.semantic.enabled

    def threshold(self, group: str) -> float:
        """Return the semantic similarity threshold for ``group``."""
        override = self.groups.get(group)
        if override is not None and override.threshold is not None:
            return override.threshold
        return self.semantic.threshold
