"""Cache keys derived from a chat completion request.

The exact key covers every field that can change the response. Only fields
known not to change it are left out. Any field not listed here, including
provider extensions keelway has never seen, is part of the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keelway.cache.canonical import digest
from keelway.cache.scope import SYSTEM_ROLES, CacheScope

KEY_VERSION = 1

# Request fields that change how a response is delivered, billed or logged, but
# not its content.
ANSWER_NEUTRAL_FIELDS = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)


def answer_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """Return the request fields that can change the response.

    A top-level ``null`` is dropped, because OpenAI treats ``"seed": null`` as
    an absent seed.
    """
    return {
        name: value
        for name, value in body.items()
        if name not in ANSWER_NEUTRAL_FIELDS and value is not None
    }


def exact_key(body: Mapping[str, Any], scope: CacheScope) -> str:
    """Return the exact cache key of a request: a 64-character SHA-256 hex digest.

    Two bodies get the same key only when their answer-changing fields are
    equal as JSON, whatever their key order or whitespace, and their scopes
    are equal. Raises ValueError when the body cannot be encoded as JSON.
    """
    return digest(
        {
            "version": KEY_VERSION,
            "scope": scope.to_dict(),
            "request": answer_fields(body),
        }
    )


def semantic_context(body: Mapping[str, Any]) -> str:
    """Return the digest of what a semantic cache entry must share besides its text.

    The semantic cache compares only the last user turn, so everything else
    that changes the answer must match exactly: the request parameters
    (``response_format``, ``tools``, ``max_tokens`` ...) and the earlier turns
    of the conversation. System and developer messages are left out because
    the scope already contains their hash.
    """
    fields = answer_fields(body)
    messages = fields.pop("messages", [])
    history: list[Any] = []
    if isinstance(messages, Sequence) and not isinstance(messages, str):
        history = [
            message
            for message in list(messages)[:-1]
            if not (
                isinstance(message, Mapping) and message.get("role") in SYSTEM_ROLES
            )
        ]
    return digest({"version": KEY_VERSION, "parameters": fields, "history": history})
