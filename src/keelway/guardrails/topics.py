"""Topic policy by embedding similarity to allowed and denied topics.

Each topic is a short description ("billing questions about invoices and
refunds"). The text and the descriptions are embedded with the local MiniLM
model and compared by cosine similarity:

* a text is off-topic when some part of it is less similar than
  ``min_similarity`` to every allowed topic;
* a text is on a denied topic when some part of it is at least
  ``max_similarity`` similar to a denied topic.

Long texts are cut into overlapping word windows, embedded in one batch, so
a paragraph on a denied topic cannot hide in the middle of a long harmless
text.

The score crosses 0.5 exactly at the configured similarity, so the default
threshold of 0.5 applies the settings as written. It rises linearly to 1 at
similarity 1 for a denied topic (and at similarity 0 for the allowed ones).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from keelway.guardrails.base import Detection, ScanContext, ScannerConfigError
from keelway.guardrails.registry import no_more, take

WORD = re.compile(r"\S+")
# MiniLM reads at most 256 word pieces, so a window must stay well below that.
# Short windows keep a paragraph on a denied topic from being diluted by the
# text around it; half a window of overlap keeps a paragraph on a boundary
# whole in one of two windows. A single sentence inside a window of other
# text can still score below the setting.
WINDOW_WORDS = 64
WINDOW_STRIDE = 32
# About 4,000 words; the rest of a longer text is not scanned and counted in
# ``windows_skipped``.
MAX_WINDOWS = 128


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic description and the label its reasons use."""

    label: str
    description: str


def windows(text: str) -> list[str]:
    """Return the overlapping word windows of ``text`` (one for a short text)."""
    words = WORD.findall(text)
    if len(words) <= WINDOW_WORDS:
        return [" ".join(words)] if words else []
    starts = range(0, len(words) - WINDOW_WORDS + WINDOW_STRIDE, WINDOW_STRIDE)
    return [" ".join(words[start : start + WINDOW_WORDS]) for start in starts]


def _encode(texts: list[str]) -> np.ndarray:
    from keelway.providers.embeddings import local_encoder

    vectors: np.ndarray = local_encoder().encode(
        texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return vectors


def _ramp(similarity: float, boundary: float) -> float:
    """Map similarity to a score that is 0.5 at ``boundary`` and 1 at similarity 1."""
    similarity = min(max(similarity, 0.0), 1.0)
    if similarity >= boundary:
        return 0.5 + 0.5 * (similarity - boundary) / max(1.0 - boundary, 1e-9)
    return 0.5 * similarity / max(boundary, 1e-9)


class TopicScanner:
    """Flags text off the allowed topics or on a denied one."""

    kind = "topic"
    spans = False

    def __init__(
        self,
        allowed: list[Topic],
        denied: list[Topic],
        min_similarity: float,
        max_similarity: float,
    ) -> None:
        self.allowed = allowed
        self.denied = denied
        self.min_similarity = min_similarity
        self.max_similarity = max_similarity
        self._vectors: np.ndarray | None = None
        self._lock = threading.Lock()

    def _topic_vectors(self) -> np.ndarray:
        # Embedded on first use, so building a policy does not load the model.
        with self._lock:
            if self._vectors is None:
                topics = self.allowed + self.denied
                self._vectors = _encode([topic.description for topic in topics])
            return self._vectors

    def scan(self, text: str, context: ScanContext) -> Detection:
        parts = windows(text)
        if not parts:
            return Detection(reason="empty text")
        skipped = max(0, len(parts) - MAX_WINDOWS)
        parts = parts[:MAX_WINDOWS]
        topic_vectors = self._topic_vectors()
        # rows: windows, columns: allowed topics then denied topics
        similarity = _encode(parts) @ topic_vectors.T
        count = len(self.allowed)
        details: dict[str, Any] = {"windows": len(parts)}
        score = 0.0
        reason = "no topic settings"

        if self.allowed:
            per_window = similarity[:, :count].max(axis=1)
            window = int(per_window.argmin())
            best = float(per_window[window])
            topic = self.allowed[int(similarity[window, :count].argmax())]
            score = 1.0 - _ramp(best, self.min_similarity)
            details["allowed_similarity"] = round(best, 4)
            relation = "below" if best < self.min_similarity else "at or above"
            reason = (
                f"closest allowed topic {topic.label} at similarity {best:.2f},"
                f" {relation} min_similarity {self.min_similarity}"
            )
            if len(parts) > 1:
                reason += f" (window {window + 1} of {len(parts)})"

        if self.denied:
            denied = similarity[:, count:]
            flat = int(denied.argmax())
            window, column = divmod(flat, denied.shape[1])
            best = float(denied[window, column])
            topic = self.denied[column]
            details["denied_similarity"] = round(best, 4)
            denied_score = _ramp(best, self.max_similarity)
            if denied_score >= score:
                score = denied_score
                relation = "at or above" if best >= self.max_similarity else "below"
                reason = (
                    f"closest denied topic {topic.label} at similarity {best:.2f},"
                    f" {relation} max_similarity {self.max_similarity}"
                )
                if len(parts) > 1:
                    reason += f" (window {window + 1} of {len(parts)})"

        return Detection(
            score=round(score, 6),
            reason=reason,
            details=details,
            windows_skipped=skipped,
        )


def _topics(name: str, value: Any) -> list[Topic]:
    """Read a topic list: descriptions, or mappings with a label and description."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ScannerConfigError(f"scanner 'topic': {name} must be a list")
    topics = []
    for index, item in enumerate(value):
        if isinstance(item, str) and item.strip():
            topics.append(Topic(f"{name}[{index}]", item))
            continue
        if isinstance(item, dict) and set(item) <= {"label", "description"}:
            label = item.get("label")
            description = item.get("description")
            if (
                isinstance(label, str)
                and label.strip()
                and isinstance(description, str)
                and description.strip()
            ):
                topics.append(Topic(f"{name}[{index}] {label!r}", description))
                continue
        raise ScannerConfigError(
            f"scanner 'topic': {name}[{index}] must be a description or a mapping"
            " with a label and a description"
        )
    return topics


def _similarity(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScannerConfigError(f"scanner 'topic': {name} must be a number")
    if not 0 < value < 1:
        raise ScannerConfigError(
            f"scanner 'topic': {name} must be between 0 and 1, got {value}"
        )
    return float(value)


def build_topic(settings: dict[str, Any]) -> TopicScanner:
    """Build the topic policy from ``allowed``, ``denied`` and the two similarities.

    Defaults: ``min_similarity`` 0.3 and ``max_similarity`` 0.4, cosine
    similarities of all-MiniLM-L6-v2 embeddings between a question and a
    one-line description. They were picked on a handful of English support
    questions, so treat them as starting points and set them from a labelled
    set of your own traffic (``keelway guard eval``).
    """
    allowed = _topics("allowed", take(settings, "allowed", None))
    denied = _topics("denied", take(settings, "denied", None))
    min_similarity = _similarity(
        "min_similarity", take(settings, "min_similarity", 0.3)
    )
    max_similarity = _similarity(
        "max_similarity", take(settings, "max_similarity", 0.4)
    )
    no_more("topic", settings)
    if not allowed and not denied:
        raise ScannerConfigError("scanner 'topic' needs allowed or denied topics")
    return TopicScanner(allowed, denied, min_similarity, max_similarity)
