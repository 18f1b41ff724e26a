"""Golden usage fixtures: each provider's usage shape, normalized and priced by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from keelway.providers.anthropic_format import MessagesToChatStream
from keelway.providers.openai import split_usage_chunk
from keelway.tracing.pricing import PriceTable
from keelway.tracing.usage import Usage

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "usage").glob("*.json"))
FIELDS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def _normalize(fixture: dict[str, Any]) -> Usage:
    if "stream_chunk" in fixture:
        chunk = split_usage_chunk(fixture["stream_chunk"], client_wants_usage=False)
        assert chunk.forward is False
        assert chunk.usage is not None
        return chunk.usage
    if "events" in fixture:
        stream = MessagesToChatStream(fixture["model"])
        for event, data in fixture["events"]:
            stream.feed(event, data)
        assert stream.usage is not None
        return stream.usage
    if fixture["provider"] == "anthropic":
        return Usage.from_anthropic(fixture["usage"])
    return Usage.from_openai(fixture["usage"])


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_golden_usage_and_cost(path: Path) -> None:
    fixture = json.loads(path.read_text())
    usage = _normalize(fixture)
    for field in FIELDS:
        assert getattr(usage, field) == fixture["normalized"][field], field
    cost = PriceTable.load().cost(fixture["model"], usage)
    assert cost == pytest.approx(fixture["cost_usd"], abs=1e-12)


def test_openai_prompt_total_is_kept() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 10,
            "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": 4},
        }
    )
    assert usage.prompt_tokens == 10
    assert usage.to_openai()["prompt_tokens"] == 10


def test_anthropic_prompt_total_adds_caches() -> None:
    usage = Usage.from_anthropic(
        {
            "input_tokens": 1,
            "cache_read_input_tokens": 2,
            "cache_creation_input_tokens": 3,
            "output_tokens": 4,
        }
    )
    assert usage.prompt_tokens == 6
    assert usage.to_anthropic()["cache_creation_input_tokens"] == 3


def test_bad_counts_become_zero() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": -5,
            "completion_tokens": "7",
            "prompt_tokens_details": {"cached_tokens": 99},
        }
    )
    assert usage.input_tokens == 0
    assert usage.cache_read_tokens == 0
    assert usage.output_tokens == 0


def test_usage_chunk_with_choices_loses_usage() -> None:
    chunk = split_usage_chunk(
        {
            "choices": [{"index": 0, "delta": {"content": "x"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        },
        client_wants_usage=False,
    )
    assert chunk.forward is True
    assert "usage" not in chunk.data
    assert chunk.usage is not None
    assert chunk.usage.input_tokens == 3
