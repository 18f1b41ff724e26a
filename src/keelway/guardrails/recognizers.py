"""Presidio recognizers for the PII scanner, tuned for prompts and answers.

Presidio's stock recognizers are the base: their regexes, checksums (Luhn,
IBAN check digits, SSN area rules) and phone validation stay in charge. The
subclasses here change what the stock ones get wrong for an LLM gateway:

* nothing reaches the network or needs a spaCy model (the email check uses a
  ``tldextract`` instance that reads only its bundled suffix snapshot);
* scores come from the shape of the match and from words near it, looked up
  in the raw text, because the scanner runs without a tokenizer or lemmas;
* digit runs that are only ambiguous (a bare 16-digit run, a bare 9-digit
  run, a 10-digit run without separators) need a context word to score
  above the scanner's default threshold;
* the entity types Presidio has no recognizer for here (dates of birth,
  street addresses) get one.

Every recognizer returns the final score of each match; the scanner only
filters, resolves overlaps and maps windows back to the original text.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence

import phonenumbers
import tldextract
from presidio_analyzer import (
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

# How far (in characters) recognizers look for context words around a match.
CONTEXT_BEFORE = 48
CONTEXT_AFTER = 24

# Presidio's LemmaContextAwareEnhancer adds 0.35 to a match with a context
# word and lifts it to at least 0.4. The floor here is 0.6 so that a context
# word alone carries a match over a policy's default threshold of 0.5.
CONTEXT_BOOST = 0.35
CONTEXT_FLOOR = 0.6

# Scores for matches whose shape alone is weak evidence. They sit below the
# scanner's default score_threshold (0.4), so such matches are reported only
# with a context word or when a policy lowers that threshold.
WEAK_SCORE = 0.3

# A label right before a number that marks the number as an identifier of
# something else (an order, a ticket, a part), checked against the text
# that ends where the match starts.
_ID_LABEL = re.compile(
    r"(?:\b(?:order|invoice|ticket|ref|reference|tracking|case|sku|part|model"
    r"|serial|build|isbn|po|confirmation|booking|shipment|account\s+id|user\s+id"
    r"|customer\s+id|transaction\s+id|request\s+id|id)\b\.?\s*(?:no\.?|number|num)?"
    r"\s*[#:=]?\s*#?|#)\s*$",
    re.IGNORECASE,
)


def _words(*words: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(words) + r")\b", re.IGNORECASE)


def near(
    text: str,
    start: int,
    end: int,
    words: re.Pattern[str],
    before: int = CONTEXT_BEFORE,
    after: int = CONTEXT_AFTER,
) -> bool:
    """Return whether ``words`` occurs within a few characters of a match."""
    if words.search(text, max(0, start - before), start):
        return True
    return words.search(text, end, min(len(text), end + after)) is not None


def labelled_as_id(text: str, start: int) -> bool:
    """Return whether the text right before ``start`` labels an identifier."""
    return _ID_LABEL.search(text, max(0, start - 28), start) is not None


def boost(score: float) -> float:
    """Return ``score`` raised for a context word next to the match."""
    return min(1.0, max(score + CONTEXT_BOOST, CONTEXT_FLOOR))


def _result(
    recognizer: EntityRecognizer, name: str, start: int, end: int, score: float
) -> RecognizerResult:
    return RecognizerResult(
        entity_type=recognizer.supported_entities[0],
        start=start,
        end=end,
        score=score,
        recognition_metadata={
            RecognizerResult.RECOGNIZER_NAME_KEY: name,
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: recognizer.id,
        },
    )


# --- email -----------------------------------------------------------------

# The module-level ``tldextract.extract`` that Presidio's EmailRecognizer
# calls downloads the public suffix list on first use and caches it on disk.
# This instance reads the snapshot bundled with tldextract and never fetches
# or writes anything.
OFFLINE_TLD = tldextract.TLDExtract(
    cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True
)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email regex, validated against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        # The stock check (a known public suffix after a domain label), asked
        # of the offline instance instead of the module-level one.
        domain = pattern_text.rpartition("@")[2]
        parts = OFFLINE_TLD(domain)
        return bool(parts.domain and parts.suffix)


# --- credit cards ------------------------------------------------------------

# (first digits as an inclusive range, allowed lengths) per card scheme. The
# ranges follow the schemes' published IIN tables: Visa 4; Mastercard 51-55
# and 2221-2720; Amex 34 and 37; Discover 6011, 644-649 and 65; JCB
# 3528-3589; Diners 300-305, 36, 38 and 39; UnionPay 62; Maestro's common
# prefixes; Mir 2200-2204.
CARD_RANGES: tuple[tuple[str, int, int, frozenset[int]], ...] = (
    ("visa", 4, 4, frozenset({13, 16, 19})),
    ("mastercard", 51, 55, frozenset({16})),
    ("mastercard", 2221, 2720, frozenset({16})),
    ("amex", 34, 34, frozenset({15})),
    ("amex", 37, 37, frozenset({15})),
    ("discover", 6011, 6011, frozenset(range(16, 20))),
    ("discover", 644, 649, frozenset(range(16, 20))),
    ("discover", 65, 65, frozenset(range(16, 20))),
    ("jcb", 3528, 3589, frozenset(range(16, 20))),
    ("diners", 300, 305, frozenset(range(14, 20))),
    ("diners", 36, 36, frozenset(range(14, 20))),
    ("diners", 38, 39, frozenset(range(14, 20))),
    ("unionpay", 62, 62, frozenset(range(16, 20))),
    ("maestro", 5018, 5018, frozenset(range(12, 20))),
    ("maestro", 5020, 5020, frozenset(range(12, 20))),
    ("maestro", 5038, 5038, frozenset(range(12, 20))),
    ("maestro", 5893, 5893, frozenset(range(12, 20))),
    ("maestro", 6304, 6304, frozenset(range(12, 20))),
    ("maestro", 6759, 6759, frozenset(range(12, 20))),
    ("maestro", 6761, 6763, frozenset(range(12, 20))),
    ("mir", 2200, 2204, frozenset(range(16, 20))),
)


def card_scheme(digits: str) -> str | None:
    """Return the card scheme whose prefix range and length fit ``digits``."""
    for scheme, low, high, lengths in CARD_RANGES:
        width = len(str(low))
        if len(digits) in lengths and low <= int(digits[:width]) <= high:
            return scheme
    return None


def luhn_valid(digits: str) -> bool:
    """Return whether a string of digits passes the Luhn checksum."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


_CARD_CONTEXT = _words(
    r"card",
    r"cards",
    r"credit",
    r"debit",
    r"visa",
    r"master\s?card",
    r"amex",
    r"american\s+express",
    r"discover",
    r"jcb",
    r"diners",
    r"maestro",
    r"union\s?pay",
    r"cc",
    r"ccn",
    r"cc#",
    r"pan",
    r"cvv",
    r"cvc",
    r"exp",
    r"expiry",
    r"expires",
    r"payment",
    r"pay",
    r"paid",
    r"charge",
    r"charged",
    r"billing",
)


class CardRecognizer(CreditCardRecognizer):
    """Card numbers of every scheme and length from 12 to 19 digits.

    A match must pass Luhn and fit a scheme's prefix range and length. Digits
    written in groups with one consistent separator (``4111 1111 1111 1111``,
    ``3782-822463-10005``) are cards on their own. A bare run of digits is
    also what order ids, database keys and timestamps look like, so it
    scores 1.0 only with a card word (card, visa, cvv, payment ...) nearby,
    and :data:`WEAK_SCORE` without one.
    """

    PATTERNS = [
        # 4-4-4-4 style groups: 12 to 19 digits, one separator throughout.
        Pattern(
            "card grouped by four",
            r"(?<![\d.,-])\d{4}([ -])\d{4}\1\d{4}(?:\1\d{1,4})?(?:\1\d{1,3})?"
            r"(?![\d]|[.,-]\d)",
            0.3,
        ),
        # 4-6-4 (Diners) and 4-6-5 (Amex) groups.
        Pattern(
            "card grouped 4-6-5",
            r"(?<![\d.,-])\d{4}([ -])\d{6}\1\d{4,5}(?![\d]|[.,-]\d)",
            0.3,
        ),
        Pattern("card bare digits", r"(?<![\d.,-])\d{12,19}(?![\d]|[.,-]\d)", 0.3),
    ]

    def __init__(self) -> None:
        super().__init__(patterns=self.PATTERNS, context=[], name="CardRecognizer")

    def validate_result(self, pattern_text: str) -> bool:
        digits = pattern_text.replace(" ", "").replace("-", "")
        return card_scheme(digits) is not None and luhn_valid(digits)

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        for result in results:
            grouped = not text[result.start : result.end].isdigit()
            if not grouped and not near(
                text, result.start, result.end, _CARD_CONTEXT, before=64, after=32
            ):
                result.score = WEAK_SCORE
        return results


# --- phone numbers ---------------------------------------------------------

# Stretches of text that could hold a phone number: digits with the
# separators phone numbers are written with, optionally after "+" or "(".
# Whitespace continues a stretch only when one space or tab comes before a
# digit, so numbers in columns or after " / " stay separate stretches. A
# stretch has at least 7 digits, the fewest of any number reported here.
_PHONE_STRETCH = re.compile(r"[+(]*\d(?:(?:[().\-\u00a0]|[ \t](?=[\d(+]))*\d){6,}\)?")
# Stretches shaped like a date, a dotted version, a decimal number or an
# IPv4 address. The matcher of phonenumbers rejects most of these too, but only
# after trying every region and every inner group of digits.
_NOT_PHONE = re.compile(
    r"\d{1,4}([./-])\d{1,2}\1\d{1,4}|\d{1,3}(?:\.\d{1,3}){2,}|\d{4}-\d{2}-\d{2}.*"
    r"|\d+\.\d+"
)
# E.164 numbers have at most 15 digits. A number written without a country
# code needs 8 digits: shorter national numbers (a 7-digit local number
# without its area code) match too much else to be worth reporting.
_PHONE_MIN_DIGITS = 8
_PHONE_MIN_DIGITS_INTERNATIONAL = 7
_PHONE_MAX_DIGITS = 15

# NOTE: context words are matched as plain words, so "call stack" boosts a
# nearby bare digit run just as "call me" does.
_PHONE_CONTEXT = _words(
    r"phone",
    r"phones",
    r"telephone",
    r"tel",
    r"ph",
    r"call",
    r"called",
    r"calling",
    r"mobile",
    r"mob",
    r"cell",
    r"cellphone",
    r"fax",
    r"whatsapp",
    r"sms",
    r"contact",
    r"reach",
    r"dial",
    r"ring",
    r"hotline",
    r"landline",
)
_VERSION_LABEL = re.compile(
    r"(?:\b(?:version|ver|release|build|firmware|kernel|rev|revision|v)\.?\s*[:=]?\s*)$",
    re.IGNORECASE,
)


class RegionalPhoneRecognizer(PhoneRecognizer):
    """Phone numbers of a list of regions, validated by ``phonenumbers``.

    The stock recognizer runs ``PhoneNumberMatcher`` over the whole text once
    per region, which costs tens of milliseconds on a 1 KB prompt. This one
    finds the stretches of digits and phone separators first, drops those
    shaped like dates, IPs or versions and those glued to letters (hex
    hashes, UUIDs), and checks with ``phonenumbers`` whether the stretch is a valid
    number of one of the regions, stopping at the first that accepts it. A
    number written with ``+`` carries its country code and is parsed once.
    Only a stretch that is not a valid number as a whole but has separators
    (a year or a room number written before a phone number) goes through
    ``PhoneNumberMatcher`` to find the number inside it.

    Scores: 0.6 for a number written with ``+`` or separators, and
    :data:`WEAK_SCORE` for a bare run of digits, which is as likely an id.
    A phone word nearby (phone, call, mobile ...) boosts either.
    """

    def __init__(self, regions: Sequence[str]) -> None:
        super().__init__(
            context=[],
            supported_regions=tuple(regions),
            leniency=phonenumbers.Leniency.VALID,
            name="RegionalPhoneRecognizer",
        )

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
    ) -> list[RecognizerResult]:
        spans: list[tuple[int, int]] = []
        for stretch in _PHONE_STRETCH.finditer(text):
            start, end = _balance_parentheses(text, *stretch.span())
            raw = text[start:end]
            digits = sum(char.isdigit() for char in raw)
            # "00" numbers are left to the regions: 00 is the international
            # prefix of most but not all of them (the US uses 011).
            international = raw.lstrip("(").startswith("+")
            fewest = (
                _PHONE_MIN_DIGITS_INTERNATIONAL if international else _PHONE_MIN_DIGITS
            )
            if not fewest <= digits <= _PHONE_MAX_DIGITS:
                continue
            if _glued(text, start, end) or _NOT_PHONE.fullmatch(raw):
                continue
            if self._valid_number(raw, international):
                spans.append((start, end))
            elif digits >= 10 and not raw.isdigit():
                spans.extend(self._numbers_inside(text, start, end))
        return [self._score(text, start, end) for start, end in _outermost(spans)]

    def _valid_number(self, raw: str, international: bool) -> bool:
        regions = (
            self.supported_regions[:1] if international else self.supported_regions
        )
        for region in regions:
            try:
                number = phonenumbers.parse(raw, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return True
        return False

    def _numbers_inside(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        # The matcher looks at the characters around a number to reject one
        # glued to letters, so it gets two characters either side.
        lo = max(0, start - 2)
        chunk = text[lo : min(len(text), end + 2)]
        found = []
        for region in self.supported_regions:
            for match in phonenumbers.PhoneNumberMatcher(
                chunk, region, leniency=phonenumbers.Leniency.VALID
            ):
                found.append((lo + match.start, lo + match.end))
        return found

    def _score(self, text: str, start: int, end: int) -> RecognizerResult:
        value = text[start:end]
        formatted = not value.isdigit()
        score = 0.6 if formatted else WEAK_SCORE
        if near(text, start, end, _PHONE_CONTEXT):
            score = boost(score)
        elif labelled_as_id(text, start) or _VERSION_LABEL.search(
            text, max(0, start - 24), start
        ):
            score = min(score, WEAK_SCORE)
        return _result(self, "RegionalPhoneRecognizer", start, end, score)


def _balance_parentheses(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop a leading "(" or trailing ")" that has no partner in the span."""
    value = text[start:end]
    if value.endswith(")") and value.count(")") > value.count("("):
        end -= 1
    value = text[start:end]
    if value.startswith("(") and value.count("(") > value.count(")"):
        start += 1
    return start, end


def _glued(text: str, start: int, end: int) -> bool:
    """Return whether a stretch is part of a longer word (a hash, a UUID)."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return before.isalnum() or before in "_-" or after.isalnum() or after == "_"


def _outermost(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Return the spans not contained in another span, without duplicates."""
    kept: list[tuple[int, int]] = []
    for start, end in sorted(set(spans), key=lambda span: (span[0], -span[1])):
        if kept and start >= kept[-1][0] and end <= kept[-1][1]:
            continue
        kept.append((start, end))
    return kept


# --- IP addresses ------------------------------------------------------------

_IP_CONTEXT = _words(
    r"ip", r"ips", r"ipv4", r"ipv6", r"address", r"host", r"server", r"client"
)


# Cheap tests for whether an IPv4 or IPv6 address can occur in a text at
# all. Presidio's IPv6 patterns are long alternations that cost more than
# all other recognizers together on a prompt without any address.
_IPV4_HINT = re.compile(r"\d\.\d{1,3}\.\d")
_IPV6_HINT = re.compile(
    r"[0-9A-Fa-f]::|::[0-9A-Fa-f]|(?:[0-9A-Fa-f]{1,4}:){3}[0-9A-Fa-f]"
)


class ContextIpRecognizer(IpRecognizer):
    """Presidio's IPv4 and IPv6 patterns, minus version numbers and OIDs.

    A dotted quad right after a version word (``version 1.2.3.4``,
    ``build 10.0.0.1``) is a version, and one that is part of a longer dotted
    run (``1.3.6.1.4.1``) is an OID or a version. Neither is reported. An
    IP word nearby boosts the score from Presidio's 0.6. The IPv4 and IPv6
    patterns run only when the text has a dotted or colon-separated group.
    """

    def __init__(self) -> None:
        super().__init__(context=[], name="ContextIpRecognizer")
        # IPv4_mapped and IPv4_embedded are IPv6 forms (::ffff:1.2.3.4).
        v4 = [p for p in IpRecognizer.PATTERNS if p.name == "IPv4"]
        v6 = [p for p in IpRecognizer.PATTERNS if p.name != "IPv4"]
        self._v4 = IpRecognizer(patterns=v4, context=[], name="ContextIpRecognizer")
        self._v6 = IpRecognizer(patterns=v6, context=[], name="ContextIpRecognizer")

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        found = []
        if _IPV4_HINT.search(text):
            found += self._v4.analyze(text, entities, nlp_artifacts, regex_flags)
        if _IPV6_HINT.search(text):
            found += self._v6.analyze(text, entities, nlp_artifacts, regex_flags)
        kept = []
        for result in EntityRecognizer.remove_duplicates(found):
            start, end = result.start, result.end
            if ":" not in text[start:end]:
                if _dotted_run_continues(text, start, end):
                    continue
                if _VERSION_LABEL.search(text, max(0, start - 24), start):
                    continue
            if near(text, start, end, _IP_CONTEXT):
                result.score = boost(result.score)
            # The engine matches results to recognizers by id, and these
            # came from the inner recognizers.
            result.recognition_metadata[RecognizerResult.RECOGNIZER_IDENTIFIER_KEY] = (
                self.id
            )
            kept.append(result)
        return kept


def _dotted_run_continues(text: str, start: int, end: int) -> bool:
    before = text[max(0, start - 2) : start]
    after = text[end : end + 2]
    return (
        len(before) == 2
        and before[1] == "."
        and before[0].isdigit()
        or len(after) == 2
        and after[0] == "."
        and after[1].isdigit()
    )


# --- US social security numbers --------------------------------------------

_SSN_CONTEXT = _words(
    r"ssn",
    r"ssns",
    r"ss#",
    r"social\s+security",
    r"social\s+sec",
    r"soc\s+sec",
    r"ssa",
    r"taxpayer",
    r"tin",
    r"itin",
)


class ContextSsnRecognizer(UsSsnRecognizer):
    """US SSNs that pass Presidio's validity rules and have no 9xx area.

    Presidio rejects areas 000 and 666, group 00, serial 0000, one repeated
    digit and published sample numbers. ``219-09-9999`` style (one
    separator, used twice) scores 0.5 on its own. A bare 9-digit run scores
    0.05 and needs an SSN word nearby. Without an SSN word, a number
    labelled as an order, ticket or part number is not reported.
    """

    PATTERNS = [
        Pattern(
            "SSN grouped",
            r"(?<![\d.-])\d{3}([- .])\d{2}\1\d{4}(?![\d]|[.-]\d)",
            0.5,
        ),
        Pattern("SSN bare", r"(?<![\d.-])\d{9}(?![\d]|[.-]\d)", 0.05),
    ]

    def __init__(self) -> None:
        super().__init__(
            patterns=self.PATTERNS, context=[], name="ContextSsnRecognizer"
        )

    def invalidate_result(self, pattern_text: str) -> bool:
        digits = "".join(char for char in pattern_text if char.isdigit())
        # Area numbers 900-999 are never issued (they are ITINs).
        return super().invalidate_result(pattern_text) or digits[0] == "9"

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        kept = []
        for result in super().analyze(text, entities, nlp_artifacts, regex_flags):
            if near(text, result.start, result.end, _SSN_CONTEXT):
                result.score = boost(result.score)
            elif labelled_as_id(text, result.start):
                continue
            kept.append(result)
        return kept


# --- dates of birth ----------------------------------------------------------

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_MONTH = "(?P<month_name>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY_SUFFIX = r"(?:st|nd|rd|th)?"

_BIRTH_CONTEXT = re.compile(
    r"\b(?:born|birth|birthday|birthdate|dob|d\.o\.b|b-day|bday|date\s+of\s+birth"
    r"|geboren)\b",
    re.IGNORECASE,
)


class BirthDateRecognizer(PatternRecognizer):
    """Dates written next to a birth word: born, DOB, date of birth ...

    The recognizer matches numeric dates (``03/14/1985``, ``14.03.1985``,
    ``1985-03-14``) and dates with a month name (``March 14, 1985``,
    ``14 Mar 1985``, ``14-MAR-1985``). It checks that they are real calendar
    dates no later than today. A date is reported only when a birth word
    comes right after it, or before it with no other date, year or
    semicolon in between. Any other date (a deadline, a log timestamp) is
    not personal data on its own.
    """

    PATTERNS = [
        Pattern(
            "date iso",
            r"(?<![\d./-])(?P<year>(?:19|20)\d{2})([-/.])(?P<month>\d{1,2})\2(?P<day>\d{1,2})"
            r"(?![\d]|[./-]\d|T\d)",
            0.85,
        ),
        Pattern(
            "date numeric",
            r"(?<![\d./-])(?P<first>\d{1,2})([-/.])(?P<second>\d{1,2})\2"
            r"(?P<year>(?:19|20)?\d{2})(?![\d]|[./-]\d)",
            0.85,
        ),
        Pattern(
            "date month name first",
            r"\b"
            + _MONTH
            + r"\s+(?P<day>\d{1,2})"
            + _DAY_SUFFIX
            + r",?\s+(?P<year>(?:19|20)\d{2})\b",
            0.85,
        ),
        Pattern(
            "date day first",
            r"\b(?P<day>\d{1,2})"
            + _DAY_SUFFIX
            + r"(?:\s+of)?[\s-]+"
            + _MONTH
            + r",?[\s-]+(?P<year>(?:19|20)\d{2})\b",
            0.85,
        ),
    ]

    def __init__(self) -> None:
        super().__init__(
            supported_entity="DATE_OF_BIRTH",
            patterns=self.PATTERNS,
            context=[],
            name="BirthDateRecognizer",
        )
        # analyze below runs its own stdlib matches because it reads their
        # named groups, which Presidio's pattern loop does not expose.
        self._compiled = [
            (pattern, re.compile(pattern.regex, re.IGNORECASE))
            for pattern in self.PATTERNS
        ]

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        # Only dates next to a birth word are reported, so a text without
        # one has nothing to find.
        if not _BIRTH_CONTEXT.search(text):
            return []
        matches = []
        for pattern, compiled in self._compiled:
            for match in compiled.finditer(text):
                if _calendar_date(match) is not None:
                    matches.append((match.start(), match.end(), pattern.score))
        matches = sorted(set(matches))
        results = []
        previous_end = 0
        for start, end, score in matches:
            if start < previous_end:
                continue
            lo = max(previous_end, start - CONTEXT_BEFORE)
            after = _BIRTH_CONTEXT.match(
                re.sub(r"^[\s(),:-]+", "", text[end : end + 16])
            )
            if _birth_word_before(text, lo, start) or after:
                results.append(_result(self, "BirthDateRecognizer", start, end, score))
            previous_end = end
        return results


def _birth_word_before(text: str, lo: int, start: int) -> bool:
    """Return whether a birth word in ``text[lo:start]`` refers to the date.

    In "born in 1985, joined on 2010-05-01" the birth word belongs to the
    year, so a year or a semicolon between the word and the date breaks the
    link.
    """
    words = list(_BIRTH_CONTEXT.finditer(text, lo, start))
    if not words:
        return False
    gap = text[words[-1].end() : start]
    return ";" not in gap and _YEAR.search(gap) is None


_YEAR = re.compile(r"\b(?:1[89]|20)\d{2}\b")


def _calendar_date(match: re.Match[str]) -> datetime.date | None:
    groups = match.groupdict()
    year = int(groups["year"])
    if year < 100:
        # Two-digit years of birth: 00-29 are 2000s, the rest 1900s.
        year += 2000 if year < 30 else 1900
    if groups.get("month_name"):
        months = [_MONTHS[groups["month_name"].lower()]]
        days = [int(groups["day"])]
    elif groups.get("month"):
        months = [int(groups["month"])]
        days = [int(groups["day"])]
    else:
        # 03/04/1985 is March 4 in the US and 3 April elsewhere, so the date
        # is accepted if either reading is a real date.
        first, second = int(groups["first"]), int(groups["second"])
        months, days = [first, second], [second, first]
    today = datetime.date.today()
    for month, day in zip(months, days, strict=True):
        try:
            date = datetime.date(year, month, day)
        except ValueError:
            continue
        if datetime.date(1900, 1, 1) <= date <= today:
            return date
    return None


# --- street addresses ----------------------------------------------------------

_STREET_TYPES = (
    "Street|St|Avenue|Ave|Av|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct"
    "|Place|Pl|Way|Terrace|Ter|Parkway|Pkwy|Circle|Cir|Highway|Hwy|Square|Sq"
    "|Close|Crescent|Cres|Gardens|Grove|Mews|Row|Walk|Trail|Trl|Plaza|Alley"
    "|Loop|Pike|Broadway|Embankment|Hill"
)
# One word of a street name: a capitalised word (O'Farrell, St., N) or an
# ordinal (5th). Words are separated by spaces or tabs, never a line break.
_STREET_WORD = r"(?:[A-Z][a-zA-Z'’]*\.?|\d{1,3}(?:st|nd|rd|th))"
_UNIT = (
    r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|Bldg|Building)"
    r"\.?\s*#?\s*[A-Z0-9][A-Za-z0-9-]*|,?\s+#\s?\d+[A-Za-z]?)?"
)
_CITY = r"[A-Z][a-zA-Z'’.-]+(?:\s+[A-Z][a-zA-Z'’.-]+){0,3}"
_US_STATE_ZIP = r"[A-Z]{2}(?:\s+\d{5}(?:-\d{4})?)?"
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"
_ADDRESS = (
    r"(?<![\w#/-])(?P<number>\d{1,6}[A-Z]?(?:-\d{1,4})?)[ \t]+"
    r"(?:" + _STREET_WORD + r"[ \t]+){0,4}?"
    r"(?:(?:" + _STREET_WORD + r")[ \t]+(?i:" + _STREET_TYPES + r")\b\.?"
    r"(?:[ \t]+(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\b\.?)?"
    r"|(?i:Broadway))"
    + _UNIT
    + r"(?P<tail>,\s*"
    + _CITY
    + r"(?:,\s*|\s+)(?:"
    + _US_STATE_ZIP
    + r"|"
    + _UK_POSTCODE
    + r")\b|,\s*"
    + _UK_POSTCODE
    + r"\b)?"
)

# A house number and capitalised words with no street type ("30 St Mary
# Axe"), which only a postcode (UK) or a state and ZIP code (US) after the
# city makes an address.
_ADDRESS_BY_POSTCODE = (
    r"(?<![\w#/-])\d{1,6}[A-Z]?[ \t]+(?:"
    + _STREET_WORD
    + r"[ \t]+){0,4}"
    + _STREET_WORD
    + r",\s*"
    + _CITY
    + r"(?:,\s*|\s+)(?:[A-Z]{2}\s+\d{5}(?:-\d{4})?|"
    + _UK_POSTCODE
    + r")\b"
)
_ADDRESS_CONTEXT = _words(
    r"address",
    r"addr",
    r"live",
    r"lives",
    r"lived",
    r"living",
    r"reside",
    r"resides",
    r"ship",
    r"shipping",
    r"deliver",
    r"delivery",
    r"mail",
    r"located",
    r"office",
    r"home",
    r"moved",
)


class StreetAddressRecognizer(PatternRecognizer):
    """US and UK street addresses: house number, street name, street type.

    The span runs from the house number through the street type (Street,
    Ave, Rd ...), an optional unit (Apt 4B, Suite 200, #12) and an optional
    ``, City, ST 12345`` or ``, City POSTCODE`` tail. Street names must be
    capitalised, so running text such as "3 dogs on the road" is not an
    address. Scores: 0.6 for number and street alone, 0.85 with a city,
    state or postcode tail, boosted by address words (lives at, ship to).
    """

    PATTERNS = [Pattern("street address", _ADDRESS, 0.6)]

    def __init__(self) -> None:
        super().__init__(
            supported_entity="STREET_ADDRESS",
            patterns=self.PATTERNS,
            context=[],
            name="StreetAddressRecognizer",
            # Case matters: street names are capitalised.
            global_regex_flags=re.MULTILINE,
        )
        self._compiled = re.compile(_ADDRESS, re.MULTILINE)
        self._by_postcode = re.compile(_ADDRESS_BY_POSTCODE, re.MULTILINE)

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        results = []
        for match in self._compiled.finditer(text):
            start, end = match.span()
            score = 0.85 if match.group("tail") else 0.6
            if near(text, start, end, _ADDRESS_CONTEXT):
                score = boost(score)
            results.append(_result(self, "StreetAddressRecognizer", start, end, score))
        for match in self._by_postcode.finditer(text):
            start, end = match.span()
            if any(r.start <= start < r.end for r in results):
                continue
            score = 0.8
            if near(text, start, end, _ADDRESS_CONTEXT):
                score = boost(score)
            results.append(_result(self, "StreetAddressRecognizer", start, end, score))
        return results
