"""Replay of a cached chat completion as a stream of chunks.

A cached response to a streamed request goes out as the ``chat.completion.chunk``
objects OpenAI would have sent. For each choice, in index order, the stream
has a role chunk, the reasoning, content and refusal text in pieces, each tool
call (a chunk with its id and name, then its arguments in pieces), and a chunk
with the finish reason. When the client asked for
``stream_options.include_usage``, every chunk has ``"usage": null`` and a last
chunk with no choices carries the usage. The choice's ``logprobs`` ride on its
first content chunk whole rather than split per token. Audio and annotations
are not replayed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

JSONObject = dict[str, Any]

DEFAULT_PIECE_CHARS = 64

# Message fields streamed as text deltas, in the order OpenAI-compatible
# servers send them: reasoning (vLLM and llama.cpp) before the answer.
_TEXT_FIELDS = ("reasoning_content", "content", "refusal")


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def completion_to_chunks(
    body: Mapping[str, Any],
    *,
    include_usage: bool = False,
    piece_chars: int = DEFAULT_PIECE_CHARS,
) -> list[JSONObject]:
    """Turn a ``chat.completion`` body into the ``chat.completion.chunk`` dicts.

    Text is cut into pieces of at most ``piece_chars`` characters. The usage
    chunk is added only with ``include_usage`` and only when the body has a
    usage object. Raises ValueError when ``body`` has no ``choices`` list.
    """
    if piece_chars < 1:
        raise ValueError(f"piece_chars must be at least 1, not {piece_chars}")
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise ValueError("a chat completion must have a 'choices' list")
    base: JSONObject = {
        "id": body.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": body.get("created") or int(time.time()),
        "model": body.get("model") or "",
    }
    for name in ("system_fingerprint", "service_tier"):
        if body.get(name) is not None:
            base[name] = body[name]
    if include_usage:
        base["usage"] = None

    def chunk(
        index: int,
        delta: JSONObject,
        finish_reason: str | None = None,
        logprobs: Any = None,
    ) -> JSONObject:
        choice: JSONObject = {
            "index": index,
            "delta": delta,
            "finish_reason": finish_reason,
            "logprobs": logprobs,
        }
        return {**base, "choices": [choice]}

    chunks: list[JSONObject] = []
    ordered = sorted(
        (c for c in choices if isinstance(c, Mapping)),
        key=lambda c: c.get("index", 0) if isinstance(c.get("index"), int) else 0,
    )
    for position, choice in enumerate(ordered):
        index = choice.get("index")
        index = index if isinstance(index, int) else position
        message = choice.get("message")
        message = message if isinstance(message, Mapping) else {}
        chunks.append(chunk(index, {"role": message.get("role") or "assistant"}))
        logprobs = choice.get("logprobs")
        for field in _TEXT_FIELDS:
            text = message.get(field)
            if not isinstance(text, str):
                continue
            for piece in _pieces(text, piece_chars):
                first_content = field == "content" and logprobs is not None
                chunks.append(
                    chunk(
                        index,
                        {field: piece},
                        logprobs=logprobs if first_content else None,
                    )
                )
                if first_content:
                    logprobs = None
        chunks += [chunk(index, delta) for delta in _tool_deltas(message, piece_chars)]
        finish_reason = choice.get("finish_reason")
        chunks.append(
            chunk(
                index, {}, finish_reason if isinstance(finish_reason, str) else "stop"
            )
        )
    usage = body.get("usage")
    if include_usage and isinstance(usage, Mapping):
        chunks.append({**base, "choices": [], "usage": dict(usage)})
    return chunks


def _tool_deltas(message: Mapping[str, Any], piece_chars: int) -> Iterator[JSONObject]:
    """Yield the deltas of a message's tool calls, or its legacy function call."""
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for position, call in enumerate(calls):
            if not isinstance(call, Mapping):
                continue
            function = call.get("function")
            function = function if isinstance(function, Mapping) else {}
            yield {
                "tool_calls": [
                    {
                        "index": position,
                        "id": call.get("id"),
                        "type": call.get("type") or "function",
                        "function": {"name": function.get("name"), "arguments": ""},
                    }
                ]
            }
            arguments = function.get("arguments")
            for piece in _pieces(
                arguments if isinstance(arguments, str) else "", piece_chars
            ):
                yield {
                    "tool_calls": [
                        {"index": position, "function": {"arguments": piece}}
                    ]
                }
    function_call = message.get("function_call")
    if isinstance(function_call, Mapping):
        yield {"function_call": {"name": function_call.get("name"), "arguments": ""}}
        arguments = function_call.get("arguments")
        for piece in _pieces(
            arguments if isinstance(arguments, str) else "", piece_chars
        ):
            yield {"function_call": {"arguments": piece}}
