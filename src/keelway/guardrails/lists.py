"""Deny lists (substrings and regular expressions) and a prompt length limit.

Deny lists match the NFKC form of the text, so fullwidth letters, ligatures
and other compatibility characters cannot slip a listed word past them.
Findings carry offsets in the original text, mapped back from the
normalized one.

Regular expressions run on the third-party ``regex`` module, whose match
functions take a ``timeout``. A pattern with catastrophic backtracking
then fails the scan with :class:`TimeoutError` after ``timeout_ms``
instead of holding a worker thread. The engine treats that like any other
scanner failure and applies the scanner's ``on_error``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import regex  # type: ignore[import-untyped]

from keelway.guardrails.base import Detection, Finding, ScanContext, ScannerConfigError
from keelway.guardrails.registry import no_more, take
from keelway.tracing.estimate import TOKENIZER, count_text

DEFAULT_TIMEOUT_MS = 100


@dataclass(frozen=True, slots=True)
class NormalizedText:
    """The NFKC form of a text and where each of its characters came from."""

    text: str
    # starts[i] and ends[i] delimit the original characters that produced
    # normalized character i (one original character may expand to several).
    starts: list[int]
    ends: list[int]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Return the original offsets of the non-empty normalized span."""
        return self.starts[start], self.ends[end - 1]


def normalize_nfkc(text: str) -> NormalizedText:
    """Return the NFKC form of ``text`` with a map back to original offsets.

    Each run of a base character and the combining marks after it is
    normalized on its own, so every normalized character can be traced to
    the run it came from.
    """
    if text.isascii():
        offsets = list(range(len(text) + 1))
        return NormalizedText(text, offsets[:-1], offsets[1:])
    parts: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    run_start = 0
    for index in range(1, len(text) + 1):
        if index < len(text) and unicodedata.combining(text[index]):
            continue
        normalized = unicodedata.normalize("NFKC", text[run_start:index])
        parts.append(normalized)
        starts.extend([run_start] * len(normalized))
        ends.extend([index] * len(normalized))
        run_start = index
    # NOTE: Hangul conjoining jamo compose across base characters, so for them
    # the per-run form can differ from normalizing the whole text at once.
    return NormalizedText("".join(parts), starts, ends)


class DenyListScanner:
    """Flags listed substrings and regular expressions."""

    kind = "deny"
    spans = True

    def __init__(
        self,
        substrings: list[str],
        patterns: list[tuple[int, regex.Pattern[str]]],
        ignore_case: bool,
        word_boundary: bool,
        entity: str,
        timeout_ms: int,
    ) -> None:
        self.entity = entity
        self.timeout = timeout_ms / 1000
        self.patterns = patterns
        self.ignore_case = ignore_case
        # Lookup from a matched substring to its index in the setting.
        self.substring_index: dict[str, int] = {}
        for index, value in enumerate(substrings):
            self.substring_index.setdefault(self._key(value), index)
        self.substrings: regex.Pattern[str] | None = None
        if substrings:
            # Longer entries first, so an entry wins over its own prefix.
            ordered = sorted(set(substrings), key=len, reverse=True)
            body = "|".join(regex.escape(value) for value in ordered)
            if word_boundary:
                body = rf"(?<!\w)(?:{body})(?!\w)"
            flags = regex.IGNORECASE if ignore_case else 0
            self.substrings = regex.compile(body, flags)

    def _key(self, value: str) -> str:
        return value.casefold() if self.ignore_case else value

    def scan(self, text: str, context: ScanContext) -> Detection:
        normalized = normalize_nfkc(text)
        findings: list[Finding] = []
        if self.substrings is not None:
            for match in self._matches(self.substrings, normalized.text, "substrings"):
                index = self.substring_index.get(self._key(match.group()))
                rule = f"substrings[{index}]" if index is not None else "substrings"
                start, end = normalized.span(match.start(), match.end())
                findings.append(Finding(self.entity, start, end, 1.0, rule))
        for index, pattern in self.patterns:
            name = f"regexes[{index}]"
            for match in self._matches(pattern, normalized.text, name):
                if match.end() == match.start():
                    continue
                start, end = normalized.span(match.start(), match.end())
                findings.append(Finding(self.entity, start, end, 1.0, name))
        if not findings:
            return Detection(reason="no listed term found")
        findings.sort(key=lambda finding: (finding.start, finding.end))
        rules = sorted({finding.rule or "" for finding in findings})
        return Detection(
            score=1.0,
            findings=findings,
            reason=f"{len(findings)} match(es) of {', '.join(rules)}",
        )

    def _matches(
        self, pattern: regex.Pattern[str], text: str, name: str
    ) -> list[regex.Match[str]]:
        try:
            return list(pattern.finditer(text, timeout=self.timeout))
        except TimeoutError:
            raise TimeoutError(
                f"deny list {name} timed out after {round(self.timeout * 1000)} ms"
            ) from None


def _string_list(kind: str, name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(item, str) and item for item in value
    ):
        raise ScannerConfigError(
            f"scanner {kind!r}: {name} must be a list of non-empty strings"
        )
    return value


def build_deny(settings: dict[str, Any]) -> DenyListScanner:
    """Build a deny list from ``substrings`` and ``regexes``.

    Other settings: ``ignore_case`` (default true), ``word_boundary`` (default
    true: a substring matches only where no letter or digit touches it, so
    ``ass`` does not match inside ``class``; regexes set their own
    boundaries), ``entity`` (the findings' type, default ``DENIED_TERM``) and
    ``timeout_ms`` (per regex and scan, default 100).
    """
    substrings = _string_list("deny", "substrings", take(settings, "substrings", None))
    sources = _string_list("deny", "regexes", take(settings, "regexes", None))
    ignore_case = take(settings, "ignore_case", True)
    word_boundary = take(settings, "word_boundary", True)
    entity = take(settings, "entity", "DENIED_TERM")
    timeout_ms = take(settings, "timeout_ms", DEFAULT_TIMEOUT_MS)
    no_more("deny", settings)
    for name, flag in (("ignore_case", ignore_case), ("word_boundary", word_boundary)):
        if not isinstance(flag, bool):
            raise ScannerConfigError(f"scanner 'deny': {name} must be true or false")
    if not isinstance(entity, str) or not entity:
        raise ScannerConfigError("scanner 'deny': entity must be a non-empty string")
    if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool):
        raise ScannerConfigError("scanner 'deny': timeout_ms must be an integer")
    if not 1 <= timeout_ms <= 10_000:
        raise ScannerConfigError(
            f"scanner 'deny': timeout_ms must be between 1 and 10000, got {timeout_ms}"
        )
    if not substrings and not sources:
        raise ScannerConfigError(
            "scanner 'deny' needs at least one entry in substrings or regexes"
        )
    flags = regex.IGNORECASE if ignore_case else 0
    patterns: list[tuple[int, regex.Pattern[str]]] = []
    for index, source in enumerate(sources):
        try:
            # Patterns match the NFKC text, so they are normalized the same way.
            compiled = regex.compile(unicodedata.normalize("NFKC", source), flags)
        except regex.error as error:
            raise ScannerConfigError(
                f"scanner 'deny': regexes[{index}] {source!r} is not a valid"
                f" regular expression: {error}"
            ) from None
        patterns.append((index, compiled))
    normalized = [unicodedata.normalize("NFKC", value) for value in substrings]
    return DenyListScanner(
        normalized, patterns, ignore_case, word_boundary, entity, timeout_ms
    )


class MaxTokensScanner:
    """Flags a text whose estimated token count is above a limit."""

    kind = "max_tokens"
    spans = False

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def scan(self, text: str, context: ScanContext) -> Detection:
        count = count_text(text)
        details = {"tokens": count, "limit": self.limit, "tokenizer": TOKENIZER}
        over = count > self.limit
        relation = "above" if over else "within"
        return Detection(
            score=1.0 if over else 0.0,
            reason=(
                f"about {count} tokens (estimated at 4 characters per token),"
                f" {relation} the limit of {self.limit}"
            ),
            details=details,
        )


def build_max_tokens(settings: dict[str, Any]) -> MaxTokensScanner:
    """Build the length limit from its ``limit`` setting (tokens, required).

    Counts use the gateway's own estimate of four characters per token, the
    same one traces use when a provider reports no usage, since no tokenizer
    package is installed and the upstream model's tokenizer is unknown here.
    """
    limit = take(settings, "limit", None)
    no_more("max_tokens", settings)
    if limit is None:
        raise ScannerConfigError("scanner 'max_tokens' needs a limit (tokens)")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ScannerConfigError(
            f"scanner 'max_tokens': limit must be a positive integer, got {limit!r}"
        )
    return MaxTokensScanner(limit)
