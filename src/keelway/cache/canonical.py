"""Canonical JSON and the SHA-256 digests that cache keys are made of.

Canonical means that two JSON values equal as JSON encode to the same bytes.
Object keys are sorted at every level (orjson ``OPT_SORT_KEYS``) and there is
no whitespace. A float with an integral value is written as the integer, so
``0`` and ``0.0`` are one value, as they are in JSON.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def normalize(value: Any) -> Any:
    """Return ``value`` with integral floats turned into ints, at every level."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: normalize(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [normalize(item) for item in value]
    return value


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON.

    Raises ValueError when ``value`` is not JSON, for example an integer wider
    than 64 bits or a non-string object key.
    """
    try:
        return orjson.dumps(normalize(value), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as error:
        raise ValueError(
            f"cannot encode the value as canonical JSON: {error}"
        ) from None


def digest(value: Any) -> str:
    """Return the SHA-256 hex digest (64 characters) of ``value``'s canonical JSON."""
    return hashlib.sha256(canonical_json(value)).hexdigest()
