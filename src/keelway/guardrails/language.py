"""Language policy: allow or deny texts by the language they are written in.

Identification uses py3langid, a naive Bayes classifier over byte n-grams
with a 4.5 MB model inside the package (no download). It identifies about
130 languages, mostly by ISO 639-1 code (``en``, ``de``) and some by ISO 639-3
(``yue``, ``vec``); ``zxx`` means no linguistic content.

Long texts are judged in windows of about 600 characters, so a paragraph in
a denied language is found inside a long text in an allowed one. A single
sentence in another language is diluted by the rest of its window and can
go unnoticed. Texts
(and windows) shorter than ``min_chars`` are not judged, because a few words
are too little evidence.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from typing import Any

import numpy as np

from keelway.guardrails.base import Detection, ScanContext, ScannerConfigError
from keelway.guardrails.registry import no_more, take

WINDOW_CHARS = 600
# 50 windows are about 30,000 characters; the rest is counted as skipped.
MAX_WINDOWS = 50
NO_LANGUAGE = "zxx"

_identifier: Any = None
_identifier_lock = threading.Lock()


def identifier() -> Any:
    """Return the shared py3langid identifier, loading its model on first use."""
    global _identifier
    with _identifier_lock:
        if _identifier is None:
            from py3langid.langid import (  # type: ignore[import-untyped]
                MODEL_FILE,
                LanguageIdentifier,
            )

            # Raw scores: probabilities are computed here, over the candidate
            # languages only, so one identifier serves every scanner.
            _identifier = LanguageIdentifier.from_model_file(
                MODEL_FILE, norm_probs=False
            )
        return _identifier


def probabilities(text: str, candidates: frozenset[str] | None) -> dict[str, float]:
    """Return the probability of each language for ``text``, highest first.

    The raw log scores are divided by the square root of the text's length in
    UTF-8 bytes before the softmax, as py3langid 0.4 does for its own
    probabilities, so short texts get less confident results than long ones.
    """
    ranked = identifier().rank(text)
    if candidates is not None:
        ranked = [(code, score) for code, score in ranked if code in candidates]
    scores = np.array([score for _, score in ranked], dtype=np.float64)
    scale = math.sqrt(len(unicodedata.normalize("NFC", text).encode("utf-8")) or 1)
    scores = np.exp((scores - scores.max()) / scale)
    scores /= scores.sum()
    return {code: float(p) for (code, _), p in zip(ranked, scores, strict=True)}


def windows(text: str) -> list[str]:
    """Cut ``text`` at whitespace into pieces of at most about WINDOW_CHARS."""
    pieces: list[str] = []
    current = ""
    for word in re.findall(r"\S+\s*", text):
        if current and len(current) + len(word) > WINDOW_CHARS:
            pieces.append(current)
            current = ""
        current += word
    if current.strip():
        pieces.append(current)
    return pieces


class LanguageScanner:
    """Flags text in a language outside ``allowed`` or inside ``denied``."""

    kind = "language"
    spans = False

    def __init__(
        self,
        allowed: frozenset[str] | None,
        denied: frozenset[str] | None,
        candidates: frozenset[str] | None,
        min_chars: int,
    ) -> None:
        self.allowed = allowed
        self.denied = denied
        self.candidates = candidates
        self.min_chars = min_chars

    def _window_score(self, text: str) -> tuple[float, str, float]:
        """Return the score, the most likely language and its probability."""
        ranked = probabilities(text, self.candidates)
        top, top_probability = next(iter(ranked.items()))
        if top == NO_LANGUAGE:
            return 0.0, top, top_probability
        if self.allowed is not None:
            inside = sum(ranked.get(code, 0.0) for code in self.allowed)
            return 1.0 - inside, top, top_probability
        assert self.denied is not None
        inside = sum(ranked.get(code, 0.0) for code in self.denied)
        return inside, top, top_probability

    def scan(self, text: str, context: ScanContext) -> Detection:
        if len(text.strip()) < self.min_chars:
            return Detection(
                reason=f"shorter than {self.min_chars} characters; not judged"
            )
        pieces = [
            piece for piece in windows(text) if len(piece.strip()) >= self.min_chars
        ]
        skipped = max(0, len(pieces) - MAX_WINDOWS)
        pieces = pieces[:MAX_WINDOWS]
        best = (-1.0, NO_LANGUAGE, 0.0, 0)
        for index, piece in enumerate(pieces):
            score, top, probability = self._window_score(piece)
            if score > best[0]:
                best = (score, top, probability, index)
        score, top, probability, index = best
        score = max(score, 0.0)
        details: dict[str, Any] = {
            "language": top,
            "probability": round(probability, 4),
            "windows": len(pieces),
        }
        if top == NO_LANGUAGE:
            reason = "no language identified"
        else:
            rule = "allowed" if self.allowed is not None else "denied"
            codes = self.allowed if self.allowed is not None else self.denied
            relation = "in" if codes is not None and top in codes else "not in"
            reason = f"most likely {top} ({probability:.2f}), {relation} {rule}"
            if len(pieces) > 1:
                reason += f" (window {index + 1} of {len(pieces)})"
        return Detection(
            score=round(score, 6),
            reason=reason,
            details=details,
            windows_skipped=skipped,
        )


def _codes(name: str, value: Any, known: set[str]) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ScannerConfigError(
            f"scanner 'language': {name} must be a non-empty list of language codes"
        )
    codes = set()
    for item in value:
        code = item.strip().lower() if isinstance(item, str) else item
        if code not in known:
            raise ScannerConfigError(
                f"scanner 'language': {name} has unknown language code {item!r};"
                " use ISO 639-1 codes such as en, de, fr"
            )
        codes.add(code)
    return frozenset(codes)


def build_language(settings: dict[str, Any]) -> LanguageScanner:
    """Build the language policy from ``allowed`` or ``denied`` (ISO codes).

    ``candidates`` (optional) restricts identification to the listed
    languages, which avoids confusing closely related ones (Portuguese
    taken for Galician) when the traffic's languages are known. ``min_chars``
    (default 20) is the length under which a text is not judged.
    """
    allowed_value = take(settings, "allowed", None)
    denied_value = take(settings, "denied", None)
    candidates_value = take(settings, "candidates", None)
    min_chars = take(settings, "min_chars", 20)
    no_more("language", settings)
    if (allowed_value is None) == (denied_value is None):
        raise ScannerConfigError(
            "scanner 'language' needs exactly one of allowed or denied"
        )
    if isinstance(min_chars, bool) or not isinstance(min_chars, int) or min_chars < 1:
        raise ScannerConfigError(
            "scanner 'language': min_chars must be a positive integer,"
            f" got {min_chars!r}"
        )
    known = set(identifier().labels)
    allowed = _codes("allowed", allowed_value, known)
    denied = _codes("denied", denied_value, known)
    candidates = _codes("candidates", candidates_value, known)
    if candidates is not None:
        listed = allowed if allowed is not None else denied
        assert listed is not None
        missing = sorted(listed - candidates)
        if missing:
            raise ScannerConfigError(
                f"scanner 'language': candidates must include {', '.join(missing)}"
            )
        candidates = candidates | {NO_LANGUAGE}
    return LanguageScanner(allowed, denied, candidates, min_chars)
