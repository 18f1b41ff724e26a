"""The cache section of the configuration."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from keelway.cache import CacheConfig


def test_defaults() -> None:
    config = CacheConfig()
    assert config.backend == "memory"
    assert config.exact.enabled is False
    assert config.semantic.enabled is False
    assert config.semantic.embedding_model == "all-minilm-l6-v2"
    assert config.semantic.threshold == 0.90


def test_group_overrides_fall_back_to_global() -> None:
    config = CacheConfig.model_validate(
        {
            "exact": {"enabled": True},
            "semantic": {"enabled": True, "threshold": 0.95},
            "groups": {
                "gpt-4o": {"exact": False, "threshold": 0.97},
                "o4-mini": {"semantic": False},
            },
        }
    )
    assert config.exact_enabled("gpt-4o") is False
    assert config.exact_enabled("o4-mini") is True
    assert config.semantic_enabled("gpt-4o") is True
    assert config.semantic_enabled("o4-mini") is False
    assert config.threshold("gpt-4o") == 0.97
    assert config.threshold("other") == 0.95


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"backend": "redis"}, "backend 'redis' needs redis_url"),
        ({"redis_url": "http://127.0.0.1:6379"}, "redis://"),
        ({"exact": {"ttl": 5}}, "Extra inputs are not permitted"),
        ({"semantic": {"threshold": 1.5}}, "less than or equal to 1"),
        ({"groups": {"g": {"threshold": 0}}}, "greater than 0"),
        ({"backend": "disk"}, "'memory', 'redis' or 'store'"),
    ],
)
def test_invalid_config_is_rejected(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CacheConfig.model_validate(data)


def test_config_is_frozen() -> None:
    with pytest.raises(ValidationError):
        CacheConfig().backend = "redis"  # type: ignore[misc]


def test_redis_url_is_not_in_repr() -> None:
    config = CacheConfig(backend="redis", redis_url="redis://:secret@127.0.0.1:6379")
    assert "secret" not in repr(config)
