"""Replaying a cached chat completion as stream chunks the OpenAI SDK accepts."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk

from keelway.cache import completion_to_chunks

USAGE = {"prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52}


def completion(*messages: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o",
        "system_fingerprint": "fp_1",
        "choices": [
            {"index": i, "message": m, "finish_reason": finish, "logprobs": None}
            for i, m in enumerate(messages)
        ],
        "usage": USAGE,
    }


def parse(chunks: list[dict[str, Any]]) -> list[ChatCompletionChunk]:
    return [ChatCompletionChunk.model_validate(chunk) for chunk in chunks]


def test_text_answer_replays_in_order() -> None:
    text = "Paris is the capital of France. " * 5
    body = completion({"role": "assistant", "content": text})
    chunks = parse(completion_to_chunks(body, piece_chars=16))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert len(chunks) == 2 + -(-len(text) // 16)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {"chatcmpl-abc"}
    assert {c.system_fingerprint for c in chunks} == {"fp_1"}
    assert all(c.usage is None for c in chunks)


def test_usage_chunk_only_when_asked() -> None:
    body = completion({"role": "assistant", "content": "Paris."})
    plain = completion_to_chunks(body)
    assert all(chunk["choices"] for chunk in plain)
    assert all("usage" not in chunk for chunk in plain)
    with_usage = parse(completion_to_chunks(body, include_usage=True))
    assert with_usage[-1].choices == []
    assert with_usage[-1].usage is not None
    assert with_usage[-1].usage.total_tokens == 52
    assert all(c.usage is None for c in with_usage[:-1])


def test_tool_calls_replay_with_arguments_in_pieces() -> None:
    arguments = '{"city": "Paris", "units": "metric", "days": 3}'
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "weather", "arguments": arguments},
        },
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "time", "arguments": "{}"},
        },
    ]
    body = completion(
        {"role": "assistant", "content": None, "tool_calls": calls},
        finish="tool_calls",
    )
    chunks = parse(completion_to_chunks(body, piece_chars=10))
    assembled: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for call in chunk.choices[0].delta.tool_calls or []:
            slot = assembled.setdefault(call.index, {"id": "", "name": "", "args": ""})
            slot["id"] += call.id or ""
            if call.function is not None:
                slot["name"] += call.function.name or ""
                slot["args"] += call.function.arguments or ""
    assert assembled == {
        0: {"id": "call_1", "name": "weather", "args": arguments},
        1: {"id": "call_2", "name": "time", "args": "{}"},
    }
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_several_choices_keep_their_index() -> None:
    body = completion(
        {"role": "assistant", "content": "one"},
        {"role": "assistant", "content": "two"},
    )
    chunks = parse(completion_to_chunks(body))
    texts: dict[int, str] = {}
    finishes = []
    for chunk in chunks:
        choice = chunk.choices[0]
        texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
        if choice.finish_reason:
            finishes.append(choice.index)
    assert texts == {0: "one", 1: "two"}
    assert finishes == [0, 1]


def test_refusal_and_logprobs_replay() -> None:
    logprobs = {
        "content": [{"token": "No", "logprob": -0.1, "bytes": None, "top_logprobs": []}]
    }
    body = completion({"role": "assistant", "content": "No", "refusal": "I can't."})
    body["choices"][0]["logprobs"] = logprobs
    chunks = parse(completion_to_chunks(body))
    assert "".join(c.choices[0].delta.refusal or "" for c in chunks) == "I can't."
    with_logprobs = [c for c in chunks if c.choices[0].logprobs is not None]
    assert len(with_logprobs) == 1
    assert with_logprobs[0].choices[0].delta.content == "No"


def test_body_without_choices_raises() -> None:
    with pytest.raises(ValueError, match="'choices'"):
        completion_to_chunks({"id": "x"})
