"""Semantic evaluators: how close in meaning the output is to the expected output."""

from __future__ import annotations

import math
import unicodedata
from typing import ClassVar

import numpy as np

from keelway.evals.base import (
    Evaluator,
    JSONObject,
    Sample,
    Score,
    ServiceError,
    Services,
)
from keelway.evals.evaluators import register

# Characters of output quoted in a failure reason.
QUOTE_CHARS = 80


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """Return ``text`` as a Python string literal, cut to ``limit`` characters."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


@register
class SemanticSimilarity(Evaluator):
    """Score the cosine similarity of the output and case.expected embeddings.

    Both texts are embedded in one call through ``services.embed``. The
    score is the cosine clipped to [0, 1], so an output that points away
    from the expected one scores 0. ``details["cosine"]`` keeps the raw
    value. An empty output scores 0.0, while an empty expected output, a
    missing embedder or a failed embedding call gives an error score.

    NOTE: the default all-MiniLM-L6-v2 model reads at most 256 word pieces
    of each text, so only the start of a long output is compared.
    """

    kind = "semantic_similarity"
    requires: ClassVar[frozenset[str]] = frozenset({"expected"})
    default_threshold: ClassVar[float] = 0.7

    async def evaluate(self, sample: Sample, services: Services) -> Score:
        missing = self.missing(sample.case)
        if missing is not None:
            return self.error(missing)
        if not isinstance(sample.output, str):
            return self.error(
                f"output is {type(sample.output).__name__}, not text, so it"
                " cannot be judged"
            )
        expected = unicodedata.normalize("NFC", sample.case.expected or "").strip()
        if not expected:
            return self.error(
                f"case {sample.case.key!r} has an empty expected output, so there"
                " is nothing to compare with"
            )
        output = unicodedata.normalize("NFC", sample.output).strip()
        if not output:
            return self.ok(0.0, "empty output", {"cosine": None})
        if services.embed is None:
            return self.error(
                "no embedding service is configured, and semantic_similarity"
                " needs one to embed the output and the expected output"
            )

        try:
            vectors = await services.embed([output, expected])
        except ServiceError as error:
            return self.error(f"embedding call failed: {error}")
        try:
            cosine = self.cosine(vectors)
        except ValueError as error:
            return self.error(str(error))

        score = min(1.0, max(0.0, cosine))
        details: JSONObject = {"cosine": cosine}
        similarity = f"cosine similarity {cosine:.3f}"
        if score >= self.threshold:
            reason = (
                f"output is close in meaning to the expected output ({similarity},"
                f" threshold {self.threshold:g})"
            )
        else:
            reason = (
                f"expected output close in meaning to {quote(expected)} but"
                f" {similarity} is below the threshold {self.threshold:g}."
                f" Output was {quote(output)}."
            )
        return self.ok(score, reason, details)

    @staticmethod
    def cosine(vectors: object) -> float:
        """Compute the cosine of two embedding rows, raising ValueError on bad rows."""
        try:
            matrix = np.asarray(vectors, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"embedder returned no numeric matrix: {error}") from None
        if matrix.ndim != 2 or matrix.shape[0] != 2 or matrix.shape[1] == 0:
            raise ValueError(
                f"embedder returned an array of shape {matrix.shape}, expected"
                " 2 non-empty rows"
            )
        if not np.all(np.isfinite(matrix)):
            raise ValueError("embedder returned an embedding with NaN or infinity")
        norms = np.linalg.norm(matrix, axis=1)
        if np.any(norms == 0):
            raise ValueError("embedder returned an all-zero embedding")
        # The rows should be L2-normalised already. Dividing by the norms
        # keeps the cosine right for an embedder that does not normalise.
        cosine = float(matrix[0] @ matrix[1] / (norms[0] * norms[1]))
        if not math.isfinite(cosine):
            raise ValueError("embedding similarity is not a finite number")
        # Rounding can take the cosine of near-identical rows just past 1.
        return min(1.0, max(-1.0, cosine))
