"""Token usage normalized across providers.

Providers count tokens differently. OpenAI reports cached input as a part of
``prompt_tokens`` and reasoning as a part of ``completion_tokens``; Anthropic
reports cache reads and cache writes apart from ``input_tokens``. ``Usage``
holds one disjoint split so that each token is priced exactly once:

    prompt tokens = input_tokens + cache_read_tokens + cache_write_tokens
    output_tokens includes reasoning_tokens
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

UsageSource = Literal["provider", "estimated"]


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def _details(usage: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    details = usage.get(key)
    return details if isinstance(details, Mapping) else {}


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one model call, split so that no token is counted twice."""

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    source: UsageSource = "provider"
    tokenizer: str | None = None

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any]) -> Usage:
        """Split an OpenAI ``usage`` object, where cached and reasoning tokens nest."""
        prompt = _count(usage.get("prompt_tokens"))
        completion = _count(usage.get("completion_tokens"))
        cached = min(
            _count(_details(usage, "prompt_tokens_details").get("cached_tokens")),
            prompt,
        )
        reasoning = _count(
            _details(usage, "completion_tokens_details").get("reasoning_tokens")
        )
        return cls(
            input_tokens=prompt - cached,
            cache_read_tokens=cached,
            output_tokens=completion,
            reasoning_tokens=min(reasoning, completion),
        )

    @classmethod
    def from_anthropic(cls, usage: Mapping[str, Any]) -> Usage:
        """Read an Anthropic ``usage`` object, which counts cache tokens apart."""
        return cls(
            input_tokens=_count(usage.get("input_tokens")),
            cache_read_tokens=_count(usage.get("cache_read_input_tokens")),
            cache_write_tokens=_count(usage.get("cache_creation_input_tokens")),
            output_tokens=_count(usage.get("output_tokens")),
        )

    def to_openai(self) -> dict[str, Any]:
        """Render as an OpenAI ``usage`` object, with cache writes as an extra field."""
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cache_read_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }
        if self.cache_write_tokens:
            usage["prompt_tokens_details"]["cache_write_tokens"] = (
                self.cache_write_tokens
            )
        return usage

    def to_anthropic(self) -> dict[str, Any]:
        """Render as an Anthropic ``usage`` object."""
        return {
            "input_tokens": self.input_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
        }

    def estimated(self, tokenizer: str) -> Usage:
        """Return a copy marked as counted by keelway with ``tokenizer``."""
        return replace(self, source="estimated", tokenizer=tokenizer)
