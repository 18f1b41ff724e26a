"""Detection of an answer that repeats the system prompt.

Two signals, the stronger one wins:

* the canary, a random token the engine puts into the system prompt, found
  in the answer (score 1). The search ignores case, compatibility forms,
  whitespace and invisible format characters (zero-width spaces and joiners,
  soft hyphens), which a model may insert when a prompt asks it to "spell
  out" its instructions;
* word n-gram overlap: the share of the system prompt's word n-grams that
  also occur in the answer. Verbatim copying scores near 1, a paraphrase
  scores little.

It runs on partial answers while they stream, so a leak can be cut before
the rest of it is sent.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

from keelway.guardrails.base import Detection, Finding, ScanContext, ScannerConfigError
from keelway.guardrails.lists import normalize_nfkc
from keelway.guardrails.registry import no_more, take

WORD = re.compile(r"\w+")
# Prompts shorter than this many words are not compared by overlap: a few
# common words are no evidence of a leak.
MIN_PROMPT_WORDS = 3


def _skeleton(text: str) -> tuple[str, list[int], list[int]]:
    """Return ``text`` without whitespace and format characters, casefolded.

    The two lists give, per skeleton character, the original offsets of the
    character it came from, so a match maps back to a span.
    """
    normalized = normalize_nfkc(text)
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for index, char in enumerate(normalized.text):
        if char.isspace() or unicodedata.category(char) == "Cf":
            continue
        folded = char.casefold()
        chars.append(folded)
        starts.extend([normalized.starts[index]] * len(folded))
        ends.extend([normalized.ends[index]] * len(folded))
    return "".join(chars), starts, ends


def _words(text: str) -> list[tuple[str, int, int]]:
    normalized = normalize_nfkc(text)
    return [
        (match.group().casefold(), *normalized.span(match.start(), match.end()))
        for match in WORD.finditer(normalized.text)
    ]


@functools.lru_cache(maxsize=256)
def _prompt_ngrams(prompt: str, size: int) -> frozenset[tuple[str, ...]]:
    # Cached because a streamed answer is scanned many times against one prompt.
    words = [word for word, _, _ in _words(prompt)]
    return frozenset(
        tuple(words[index : index + size]) for index in range(len(words) - size + 1)
    )


class SystemPromptLeakScanner:
    """Flags answers that contain the canary or much of the system prompt."""

    kind = "system_prompt_leak"
    spans = True

    def __init__(self, ngram: int, min_overlap: float) -> None:
        self.ngram = ngram
        self.min_overlap = min_overlap

    def scan(self, text: str, context: ScanContext) -> Detection:
        findings = self._canary(text, context.canary)
        overlap, overlap_findings, size = self._overlap(text, context.system_prompt)
        details: dict[str, Any] = {"canary_found": bool(findings)}
        if overlap is not None:
            details["overlap"] = round(overlap, 4)
            details["ngram"] = size
        if findings:
            return Detection(
                score=1.0,
                findings=findings + overlap_findings,
                reason="the system prompt's canary token appears in the answer",
                details=details,
            )
        if overlap is None:
            return Detection(
                reason="no canary found; no system prompt to compare", details=details
            )
        share = f"{overlap:.0%} of the system prompt's {size}-word sequences"
        if overlap < self.min_overlap:
            return Detection(
                reason=f"{share} appear in the answer, below min_overlap",
                details=details,
            )
        return Detection(
            score=overlap,
            findings=overlap_findings,
            reason=f"{share} appear in the answer",
            details=details,
        )

    def _canary(self, text: str, canary: str | None) -> list[Finding]:
        if not canary:
            return []
        needle, _, _ = _skeleton(canary)
        if not needle:
            return []
        haystack, starts, ends = _skeleton(text)
        findings: list[Finding] = []
        position = haystack.find(needle)
        while position != -1:
            end = position + len(needle)
            findings.append(
                Finding("CANARY", starts[position], ends[end - 1], 1.0, "canary")
            )
            position = haystack.find(needle, end)
        return findings

    def _overlap(
        self, text: str, prompt: str | None
    ) -> tuple[float | None, list[Finding], int]:
        if not prompt:
            return None, [], self.ngram
        prompt_words = len(WORD.findall(prompt))
        if prompt_words < MIN_PROMPT_WORDS:
            return None, [], self.ngram
        # A prompt shorter than n words counts as one n-gram of its length.
        size = min(self.ngram, prompt_words)
        expected = _prompt_ngrams(prompt, size)
        words = _words(text)
        seen: set[tuple[str, ...]] = set()
        spans: list[list[int]] = []
        for index in range(len(words) - size + 1):
            gram = tuple(word for word, _, _ in words[index : index + size])
            if gram not in expected:
                continue
            seen.add(gram)
            start, end = words[index][1], words[index + size - 1][2]
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        share = len(seen) / len(expected)
        findings = [
            Finding("SYSTEM_PROMPT_TEXT", start, end, share, "ngram_overlap")
            for start, end in spans
        ]
        return share, findings, size


def build_system_prompt_leak(settings: dict[str, Any]) -> SystemPromptLeakScanner:
    """Build the leak scanner from ``ngram`` (words, default 8) and ``min_overlap``.

    ``min_overlap`` (default 0.2) is the share of the prompt's n-grams below
    which the overlap scores 0, so a few shared stock phrases do not count.
    """
    ngram = take(settings, "ngram", 8)
    min_overlap = take(settings, "min_overlap", 0.2)
    no_more("system_prompt_leak", settings)
    if not isinstance(ngram, int) or isinstance(ngram, bool) or not 2 <= ngram <= 64:
        raise ScannerConfigError(
            f"scanner 'system_prompt_leak': ngram must be an integer from 2 to 64,"
            f" got {ngram!r}"
        )
    if isinstance(min_overlap, bool) or not isinstance(min_overlap, int | float):
        raise ScannerConfigError(
            "scanner 'system_prompt_leak': min_overlap must be a number"
        )
    if not 0 <= min_overlap <= 1:
        raise ScannerConfigError(
            f"scanner 'system_prompt_leak': min_overlap must be between 0 and 1,"
            f" got {min_overlap}"
        )
    return SystemPromptLeakScanner(ngram, float(min_overlap))
