"""Token counts estimated by keelway when a provider reports none.

This happens when a client aborts a stream before the provider's final usage
chunk, or when an upstream sends no usage at all. The estimate uses the
rule of thumb of about four characters of English text per token, so it is
only an estimate and the trace says so, naming the heuristic.
"""

from __future__ import annotations

import math
from typing import Any

from keelway.tracing.usage import Usage

TOKENIZER = "heuristic:4-chars-per-token"
# Role markers and separators that chat formats add to each message.
PER_MESSAGE_OVERHEAD = 4


def count_text(text: str) -> int:
    """Estimate the tokens of ``text``."""
    return math.ceil(len(text) / 4) if text else 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        )
    return ""


def estimate_prompt(messages: list[Any]) -> int:
    """Estimate the prompt tokens of OpenAI chat messages."""
    total = 0
    for message in messages:
        if isinstance(message, dict):
            total += PER_MESSAGE_OVERHEAD + count_text(
                _content_text(message.get("content"))
            )
    return total


def estimate_usage(messages: list[Any], output_text: str) -> Usage:
    """Estimate the usage of a call from its messages and the text received."""
    return Usage(
        input_tokens=estimate_prompt(messages),
        output_tokens=count_text(output_text),
        source="estimated",
        tokenizer=TOKENIZER,
    )
