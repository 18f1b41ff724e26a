"""Reading vectors out of an OpenAI embeddings response."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np


def embedding_vectors(body: Mapping[str, Any]) -> list[list[float]]:
    """Return the vectors of an OpenAI ``list`` of embeddings, in input order.

    Items are ordered by their ``index``. An embedding may be a list of floats
    or base64 of little-endian float32, as ``encoding_format`` requests. Raises
    ValueError when the body has no such vectors.
    """
    data = body.get("data")
    if not isinstance(data, list) or not data:
        raise ValueError("embeddings response has no 'data' list")
    items = sorted(
        (item for item in data if isinstance(item, Mapping)),
        key=lambda item: item.get("index", 0),
    )
    if len(items) != len(data):
        raise ValueError("embeddings response has an item that is not an object")
    vectors: list[list[float]] = []
    for item in items:
        embedding = item.get("embedding")
        if isinstance(embedding, str):
            raw = base64.b64decode(embedding)
            vectors.append(np.frombuffer(raw, dtype="<f4").astype(float).tolist())
        elif isinstance(embedding, list):
            vectors.append([float(value) for value in embedding])
        else:
            raise ValueError(
                f"embedding at index {item.get('index')} is {type(embedding).__name__},"
                " not a list of floats or base64"
            )
    return vectors
