"""The PII scanner: emails, phones, cards, IBANs, SSNs, IPs, birth dates, addresses.

Detection runs on Microsoft Presidio's ``AnalyzerEngine`` with the pattern
and checksum recognizers of :mod:`keelway.guardrails.recognizers`. Nothing
is downloaded: the engine's NLP engine is a blank spaCy English pipeline
(no trained model, so there is no PERSON or LOCATION detection), and the
email recognizer reads tldextract's bundled suffix list.

The scan path skips what the recognizers do not need. The blank pipeline is
never run on the text: the engine gets empty NLP artifacts, because every
recognizer scores its own context from the raw text. Recognizers whose
entity cannot occur in the text (no ``@`` means no email, no digit means no
number) are not asked at all. Engines are built once per set of phone
regions and shared, because building one takes far longer than a scan.

Findings carry offsets into the original text and never overlap: when two
recognizers claim the same characters, the higher score wins, then the
longer span, then the type that comes first in :data:`TYPE_PRIORITY`.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import phonenumbers
import spacy
from presidio_analyzer import (
    AnalyzerEngine,
    ContextAwareEnhancer,
    EntityRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import IbanRecognizer

from keelway.guardrails import recognizers
from keelway.guardrails.base import (
    Detection,
    Finding,
    ScanContext,
    ScannerConfigError,
)
from keelway.guardrails.registry import no_more, take

SUPPORTED_ENTITIES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "DATE_OF_BIRTH",
    "STREET_ADDRESS",
)
DEFAULT_ENTITIES = SUPPORTED_ENTITIES
DEFAULT_COUNTRIES = (
    "US",
    "GB",
    "DE",
    "FR",
    "IN",
    "BR",
    "JP",
    "AU",
    "ES",
    "IT",
    "NL",
    "CA",
    "MX",
    "CN",
)
# Presidio results scoring below this are dropped. The recognizers give
# ambiguous shapes without context (a bare 16-digit run, a 10-digit run
# without separators) a score of 0.3, so the default leaves them out.
DEFAULT_SCORE_THRESHOLD = 0.4
DEFAULT_WINDOW = 4096
# Characters each window shares with its neighbours on either side. An
# entity no longer than this, with the context words before it, is always
# seen whole by the window that owns its first character.
WINDOW_MARGIN = 256
MIN_WINDOW = 4 * WINDOW_MARGIN
MAX_WINDOW = 1 << 20

# Tie-break between findings of equal score and length on the same
# characters: the more specific, checksum-validated types come first.
TYPE_PRIORITY = {
    "CREDIT_CARD": 0,
    "IBAN_CODE": 1,
    "US_SSN": 2,
    "EMAIL_ADDRESS": 3,
    "IP_ADDRESS": 4,
    "PHONE_NUMBER": 5,
    "DATE_OF_BIRTH": 6,
    "STREET_ADDRESS": 7,
}

_DIGIT = re.compile(r"\d")
_IBAN_START = re.compile(r"[A-Z]{2}\d{2}")
_IP_HINT = re.compile(r"\d\.\d|[0-9A-Fa-f]:|::")


class BlankSpacyNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy NLP engine around ``spacy.blank("en")``.

    The stock engine loads (and downloads if missing) ``en_core_web_lg``.
    A blank pipeline only tokenizes, which is all Presidio needs to build
    artifacts, and it ships with spaCy.
    """

    def __init__(self) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}])

    def load(self) -> None:
        # The parent declares ``nlp`` as None until loaded.
        self.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]

    def get_supported_entities(self) -> list[str]:
        # A blank pipeline has no named-entity recognizer.
        return []


class RecognizerContextOnly(ContextAwareEnhancer):
    """A context enhancer that leaves scores to the recognizers.

    Presidio's default enhancer compares lemmas around each match with the
    recognizers' context words. There are no lemmas here, and the
    recognizers in :mod:`keelway.guardrails.recognizers` already score
    their own context, so this enhancer returns results unchanged.
    """

    def __init__(self) -> None:
        super().__init__(
            context_similarity_factor=0.0,
            min_score_with_context_similarity=0.0,
            context_prefix_count=0,
            context_suffix_count=0,
        )

    def enhance_using_context(
        self,
        text: str,
        raw_results: list[RecognizerResult],
        nlp_artifacts: NlpArtifacts,
        recognizers: list[EntityRecognizer],
        context: list[str] | None = None,
    ) -> list[RecognizerResult]:
        return raw_results


def build_analyzer(countries: tuple[str, ...]) -> AnalyzerEngine:
    """Build an AnalyzerEngine with the scanner's recognizers and no model."""
    registry = RecognizerRegistry(
        recognizers=[
            recognizers.OfflineEmailRecognizer(),
            recognizers.RegionalPhoneRecognizer(countries),
            recognizers.CardRecognizer(),
            IbanRecognizer(context=[]),
            recognizers.ContextSsnRecognizer(),
            recognizers.ContextIpRecognizer(),
            recognizers.BirthDateRecognizer(),
            recognizers.StreetAddressRecognizer(),
        ],
        supported_languages=["en"],
    )
    return AnalyzerEngine(
        registry=registry,
        nlp_engine=BlankSpacyNlpEngine(),
        supported_languages=["en"],
        context_aware_enhancer=RecognizerContextOnly(),
    )


_ANALYZERS: dict[tuple[str, ...], AnalyzerEngine] = {}
_ANALYZERS_LOCK = threading.Lock()


def shared_analyzer(countries: tuple[str, ...]) -> AnalyzerEngine:
    """Return the analyzer for ``countries``, building it on first use.

    Recognizers keep no per-call state, so scanners of every policy and
    every worker thread can share one engine.
    """
    with _ANALYZERS_LOCK:
        analyzer = _ANALYZERS.get(countries)
        if analyzer is None:
            analyzer = build_analyzer(countries)
            _ANALYZERS[countries] = analyzer
        return analyzer


class PIIScanner:
    """Find personal data spans with Presidio's pattern recognizers."""

    kind = "pii"
    spans = True

    def __init__(
        self,
        entities: tuple[str, ...] = DEFAULT_ENTITIES,
        countries: tuple[str, ...] = DEFAULT_COUNTRIES,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        allow: tuple[str, ...] = (),
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.entities = entities
        self.countries = countries
        self.score_threshold = score_threshold
        self.allow = allow
        self.window = window
        self.analyzer = shared_analyzer(countries)
        # The artifacts of an empty text, passed with every scan so that the
        # engine does not tokenize the text. No recognizer here reads tokens.
        self._artifacts = self.analyzer.nlp_engine.process_text("", "en")

    def scan(self, text: str, context: ScanContext) -> Detection:
        """Return the PII spans in ``text`` with offsets into ``text``."""
        findings = self.find(text)
        if not findings:
            return Detection(score=0.0, findings=[], reason="no PII found")
        counts = Counter(finding.kind for finding in findings)
        reason = "found " + ", ".join(f"{n} {kind}" for kind, n in counts.items())
        return Detection(
            score=max(finding.score for finding in findings),
            findings=findings,
            reason=reason,
            details={"counts": dict(counts)},
        )

    def find(self, text: str) -> list[Finding]:
        """Return sorted, non-overlapping findings for ``text``."""
        candidates: list[RecognizerResult] = []
        for chunk_start, chunk_end, own_start, own_end in windows(
            len(text), self.window
        ):
            chunk = text[chunk_start:chunk_end]
            for result in self._analyze(chunk):
                start = chunk_start + result.start
                if own_start <= start < own_end:
                    result.start = start
                    result.end = chunk_start + result.end
                    candidates.append(result)
        return resolve_overlaps(candidates)

    def _analyze(self, text: str) -> list[RecognizerResult]:
        entities = self._entities_for(text)
        if not entities:
            return []
        return self.analyzer.analyze(
            text=text,
            language="en",
            entities=entities,
            nlp_artifacts=self._artifacts,
            score_threshold=self.score_threshold,
            allow_list=list(self.allow) or None,
        )

    def _entities_for(self, text: str) -> list[str]:
        """Return the configured entities that could occur in ``text``."""
        has_digit = _DIGIT.search(text) is not None
        wanted = []
        for entity in self.entities:
            if entity == "EMAIL_ADDRESS":
                possible = "@" in text
            elif entity == "IBAN_CODE":
                possible = _IBAN_START.search(text) is not None
            elif entity == "IP_ADDRESS":
                possible = _IP_HINT.search(text) is not None
            else:
                possible = has_digit
            if possible:
                wanted.append(entity)
        return wanted


def windows(length: int, window: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(chunk_start, chunk_end, own_start, own_end)`` for a long text.

    The owned ranges split the text with no gap or overlap. Each chunk is
    its owned range plus :data:`WINDOW_MARGIN` characters either side, so a
    finding is kept only by the window that owns its first character.
    """
    if length <= window:
        yield 0, length, 0, length
        return
    step = window - 2 * WINDOW_MARGIN
    own_start = 0
    while own_start < length:
        own_end = min(length, own_start + step)
        chunk_start = max(0, own_start - WINDOW_MARGIN)
        chunk_end = min(length, own_end + WINDOW_MARGIN)
        yield chunk_start, chunk_end, own_start, own_end
        own_start = own_end


def resolve_overlaps(results: list[RecognizerResult]) -> list[Finding]:
    """Keep the best of overlapping results and return them as findings.

    Results are taken by score (highest first), then length (longest
    first), then :data:`TYPE_PRIORITY`; one that overlaps a result already
    kept is dropped. The kept results are returned sorted by offset.
    """
    ranked = sorted(
        results,
        key=lambda r: (
            -r.score,
            -(r.end - r.start),
            TYPE_PRIORITY.get(r.entity_type, len(TYPE_PRIORITY)),
            r.start,
        ),
    )
    starts: list[int] = []
    kept: list[RecognizerResult] = []
    for result in ranked:
        index = bisect.bisect_left(starts, result.start)
        if index > 0 and kept[index - 1].end > result.start:
            continue
        if index < len(kept) and kept[index].start < result.end:
            continue
        starts.insert(index, result.start)
        kept.insert(index, result)
    return [
        Finding(
            kind=result.entity_type,
            start=result.start,
            end=result.end,
            score=round(result.score, 4),
            rule=(result.recognition_metadata or {}).get(
                RecognizerResult.RECOGNIZER_NAME_KEY
            ),
        )
        for result in kept
    ]


def build_pii(settings: dict[str, Any]) -> PIIScanner:
    """Build a PII scanner from its policy settings.

    Settings:

    - ``entities``: the types to report.
    - ``countries``: ISO 3166 regions whose national phone formats are
      recognized. Numbers written with ``+`` are recognized for every
      country.
    - ``score_threshold``: the minimum recognizer score, 0-1.
    - ``allow``: exact values that are never reported.
    - ``window``: characters per scan window of a long text.
    """
    entities = _string_list(
        take(settings, "entities", list(DEFAULT_ENTITIES)), "entities"
    )
    unknown = [entity for entity in entities if entity not in SUPPORTED_ENTITIES]
    if unknown or not entities:
        supported = ", ".join(SUPPORTED_ENTITIES)
        raise ScannerConfigError(
            f"pii: entities must be a non-empty list of {supported};"
            f" invalid: {', '.join(unknown) or 'empty list'}"
        )
    countries = [
        country.upper()
        for country in _string_list(
            take(settings, "countries", list(DEFAULT_COUNTRIES)), "countries"
        )
    ]
    invalid = [c for c in countries if c not in phonenumbers.SUPPORTED_REGIONS]
    if invalid or not countries:
        raise ScannerConfigError(
            "pii: countries must be a non-empty list of ISO 3166 two-letter"
            f" region codes; invalid: {', '.join(invalid) or 'empty list'}"
        )
    threshold = take(settings, "score_threshold", DEFAULT_SCORE_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ScannerConfigError(
            f"pii: score_threshold must be a number, not {threshold!r}"
        )
    if not 0 <= threshold <= 1:
        raise ScannerConfigError(
            f"pii: score_threshold must be between 0 and 1, not {threshold!r}"
        )
    allow = _string_list(take(settings, "allow", []), "allow")
    window = take(settings, "window", DEFAULT_WINDOW)
    if isinstance(window, bool) or not isinstance(window, int):
        raise ScannerConfigError(
            f"pii: window must be an integer number of characters, not {window!r}"
        )
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise ScannerConfigError(
            f"pii: window must be between {MIN_WINDOW} and {MAX_WINDOW}"
            f" characters, not {window}"
        )
    no_more("pii", settings)
    return PIIScanner(
        entities=tuple(dict.fromkeys(entities)),
        countries=tuple(dict.fromkeys(countries)),
        score_threshold=float(threshold),
        allow=tuple(allow),
        window=window,
    )


def _string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(item, str) for item in value
    ):
        raise ScannerConfigError(
            f"pii: {name} must be a list of strings, not {value!r}"
        )
    return list(value)
