"""The text of a request that the semantic cache embeds and compares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def last_user_text(messages: Sequence[Any]) -> str | None:
    """Return the text of the final message when a user sent it, else None.

    Content may be a string or a list of content parts, whose text parts are
    joined with newlines. Returns None when the final message is not from the
    user, because the model would continue from a tool result or an assistant
    turn. Also returns None for a message with no text, or with a non-text
    part such as an image, because the text alone does not describe it.
    """
    if not messages:
        return None
    message = messages[-1]
    if not isinstance(message, Mapping) or message.get("role") != "user":
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content if content.strip() else None
    if not isinstance(content, list):
        return None
    texts: list[str] = []
    for part in content:
        if not isinstance(part, Mapping) or part.get("type") != "text":
            return None
        text = part.get("text")
        if not isinstance(text, str):
            return None
        texts.append(text)
    joined = "\n".join(texts)
    return joined if joined.strip() else None
