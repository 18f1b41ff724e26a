"""The secrets scanner: API keys, tokens, private keys, URL passwords and entropy.

Each finding spans the secret value itself in the original text (the key,
not the ``api_key=`` before it), so the engine can redact exactly that.

The rules are compact regular expressions over the whole text rather than
Yelp's detect-secrets. detect-secrets 1.5.0 scans line by line, reports a
secret's value and line number but no column, and took about 3.7 ms for one
short line with its default plugins (on a 2-core machine). Spans would have
to be found again in each line, and a 10 KB text would cost hundreds of
milliseconds.

Provider keys with a fixed prefix and length (``ghp_``, ``AKIA``, ``sk-ant-``
...) match on shape alone. Shapes that are only secret in context (an AWS
secret access key, a Twilio auth token) need a keyword before them. The
high-entropy rule catches the rest: base64 or hex tokens of at least
``min_length`` characters whose Shannon entropy passes ``entropy_threshold``,
except UUIDs, hex digests in a hash or commit context, inline data URIs and
tokens that read as words or identifiers.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from keelway.guardrails.base import Detection, Finding, ScanContext, ScannerConfigError
from keelway.guardrails.registry import no_more, take

DEFAULT_ENTROPY_THRESHOLD = 3.5
DEFAULT_MIN_LENGTH = 20
# Scores: a provider's own key format is near certain; a random-looking
# token may be a nonce, an id or a cache key.
SHAPE_SCORE = 1.0
CONTEXT_SCORE = 0.9
ENTROPY_SCORE = 0.7
# Bits per character below which a value with a key's shape is a placeholder.
MIN_VALUE_ENTROPY = 2.5


@dataclass(frozen=True, slots=True)
class SecretRule:
    """A pattern whose ``value`` group (or whole match) is the secret."""

    name: str
    kind: str
    pattern: re.Pattern[str]
    score: float = SHAPE_SCORE
    check: Callable[[str], bool] | None = None


def _rule(
    name: str,
    kind: str,
    pattern: str,
    score: float = SHAPE_SCORE,
    check: Callable[[str], bool] | None = None,
    flags: int = 0,
) -> SecretRule:
    return SecretRule(name, kind, re.compile(pattern, flags), score, check)


def _is_jwt(value: str) -> bool:
    header = value.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        data = json.loads(decoded)
    except (binascii.Error, ValueError):
        return False
    return isinstance(data, dict) and "alg" in data


_PLACEHOLDER = re.compile(
    r"^(?:x+|\*+|\.+|<[^>]*>|\$\{[^}]*\}|\$\w+|\{\{[^}]*\}\}|%\w+%|your[_-]?\w*|"
    r"changeme|password|passwd|pass|secret|example\w*|placeholder|redacted|"
    r"dummy|test|none|null|\.\.\.)$",
    re.IGNORECASE,
)


def _not_placeholder(value: str) -> bool:
    return _PLACEHOLDER.match(value) is None and len(set(value)) > 2


_KEYWORD_VALUE = r"""\s*(?:=|:|=>|:=)\s*["']?"""

RULES: tuple[SecretRule, ...] = (
    _rule(
        "private_key_block",
        "PRIVATE_KEY",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    ),
    _rule(
        "aws_access_key", "AWS_ACCESS_KEY", r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"
    ),
    _rule(
        "aws_secret_key",
        "AWS_SECRET_KEY",
        r"(?i:aws_?secret_?(?:access_?)?key|secret_?access_?key|SecretAccessKey)"
        r"[\"']?" + _KEYWORD_VALUE + r"(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])",
        CONTEXT_SCORE,
    ),
    _rule("gcp_api_key", "GCP_API_KEY", r"\bAIza[0-9A-Za-z_\-]{35}(?![\w-])"),
    _rule(
        "azure_storage_key",
        "AZURE_STORAGE_KEY",
        r"AccountKey=(?P<value>[A-Za-z0-9+/]{86}==)",
    ),
    _rule(
        "github_token",
        "GITHUB_TOKEN",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})\b",
    ),
    _rule("gitlab_token", "GITLAB_TOKEN", r"\bglpat-[A-Za-z0-9_\-]{20}(?![\w-])"),
    _rule("slack_token", "SLACK_TOKEN", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    _rule(
        "slack_webhook",
        "SLACK_WEBHOOK",
        r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{20,}",
    ),
    _rule(
        "stripe_key", "STRIPE_KEY", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{24,99}\b"
    ),
    _rule(
        "anthropic_key",
        "ANTHROPIC_API_KEY",
        r"\bsk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_\-]{80,}(?![\w-])",
    ),
    _rule(
        "openai_key",
        "OPENAI_API_KEY",
        r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}(?![\w-])"
        r"|\bsk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}\b|\bsk-[A-Za-z0-9]{48}\b",
    ),
    _rule("twilio_api_key", "TWILIO_API_KEY", r"\bSK[0-9a-f]{32}\b"),
    _rule(
        "twilio_auth_token",
        "TWILIO_AUTH_TOKEN",
        r"(?i:twilio\w*?_?auth_?token|auth_?token)[\"']?"
        + _KEYWORD_VALUE
        + r"(?P<value>[0-9a-f]{32})\b",
        CONTEXT_SCORE,
    ),
    _rule(
        "sendgrid_key",
        "SENDGRID_API_KEY",
        r"\bSG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}(?![\w-])",
    ),
    _rule("npm_token", "NPM_TOKEN", r"\bnpm_[A-Za-z0-9]{36}\b"),
    _rule("pypi_token", "PYPI_TOKEN", r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}"),
    _rule("huggingface_token", "HUGGINGFACE_TOKEN", r"\bhf_[A-Za-z0-9]{34}\b"),
    _rule(
        "google_oauth_token",
        "GOOGLE_OAUTH_TOKEN",
        r"\bya29\.[0-9A-Za-z_\-]{20,}(?![\w-])",
    ),
    _rule(
        "jwt",
        "JWT",
        r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*(?![\w-])",
        check=_is_jwt,
    ),
    _rule(
        "url_password",
        "URL_PASSWORD",
        r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]+:(?P<value>[^\s:/@]+)@[\w.\-\[]",
        check=_not_placeholder,
    ),
    _rule(
        "secret_assignment",
        "SECRET_ASSIGNMENT",
        r"(?i:(?<![a-z])(?:password|passwd|pwd|secret|api_?key|apikey|access_?token|"
        r"auth_?token|client_?secret|private_?key)(?![a-z]))[\"']?"
        + _KEYWORD_VALUE
        + r"(?P<value>[^\s\"',;]{8,})",
        CONTEXT_SCORE,
        check=lambda value: _not_placeholder(value) and _shannon(value) >= 2.5,
    ),
)
TYPES = tuple(dict.fromkeys(rule.kind for rule in RULES)) + ("HIGH_ENTROPY",)

_CANDIDATE = re.compile(r"(?<![A-Za-z0-9+/=_\-])[A-Za-z0-9+/=_\-]{16,}")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_HASH_CONTEXT = re.compile(
    r"\b(?:sha-?\d*|md5|hash(?:es)?|digest|checksum|commit(?:ted)?|revision|rev|"
    r"git|integrity|etag|fingerprint|blob|tree|merge|cherry-pick|hashed)\b",
    re.IGNORECASE,
)
# Names, dates and versions: lower-case words or numbers joined by - _ or .
_WORDS_AND_NUMBERS = re.compile(r"(?:[a-z]+|\d+)(?:[_\-.](?:[a-z]+|\d+))+")
_DATA_URI = re.compile(r"data:[\w/+.\-]+;base64,[A-Za-z0-9+/=]*")


def _shannon(value: str) -> float:
    counts = Counter(value)
    length = len(value)
    return -sum(n / length * math.log2(n / length) for n in counts.values())


class SecretsScanner:
    """Finds credentials and other secrets, with their exact spans."""

    kind = "secrets"
    spans = True

    def __init__(
        self,
        *,
        types: tuple[str, ...] = TYPES,
        entropy_threshold: float = DEFAULT_ENTROPY_THRESHOLD,
        min_length: int = DEFAULT_MIN_LENGTH,
        allow: frozenset[str] = frozenset(),
    ) -> None:
        self.types = frozenset(types)
        self.rules = tuple(rule for rule in RULES if rule.kind in self.types)
        self.entropy_threshold = entropy_threshold
        self.min_length = min_length
        self.allow = allow

    def scan(self, text: str, context: ScanContext) -> Detection:
        """Return the secrets in ``text`` as non-overlapping findings."""
        findings: list[Finding] = []
        occupied: list[tuple[int, int]] = []
        for finding in self._rule_findings(text):
            if not _overlaps(occupied, finding.start, finding.end):
                findings.append(finding)
                occupied.append((finding.start, finding.end))
        if "HIGH_ENTROPY" in self.types:
            for finding in self._entropy_findings(text):
                if not _overlaps(occupied, finding.start, finding.end):
                    findings.append(finding)
                    occupied.append((finding.start, finding.end))
        if not findings:
            return Detection()
        findings.sort(key=lambda finding: finding.start)
        counts = Counter(finding.kind for finding in findings)
        reason = ", ".join(f"{count} {kind}" for kind, count in counts.items())
        return Detection(
            score=max(finding.score for finding in findings),
            findings=findings,
            reason=f"found {reason}",
        )

    def _rule_findings(self, text: str) -> Iterator[Finding]:
        for rule in self.rules:
            for match in rule.pattern.finditer(text):
                group = "value" if "value" in rule.pattern.groupindex else 0
                start, end = match.span(group)
                value = match.group(group)
                if value in self.allow:
                    continue
                if rule.check is not None and not rule.check(value):
                    continue
                if _shannon(value) < MIN_VALUE_ENTROPY:
                    # "ghp_xxxx..." and "AKIAAAAA..." have a key's shape but
                    # are placeholders in documentation.
                    continue
                yield Finding(rule.kind, start, end, rule.score, rule.name)

    def _entropy_findings(self, text: str) -> Iterator[Finding]:
        data_uris = [match.span() for match in _DATA_URI.finditer(text)]
        for match in _CANDIDATE.finditer(text):
            for start, token in self._split_candidate(match.start(), match.group()):
                end = start + len(token)
                if len(token) < self.min_length or token in self.allow:
                    continue
                if _overlaps(data_uris, start, end):
                    continue
                if self._is_secret_like(text, start, token):
                    yield Finding("HIGH_ENTROPY", start, end, ENTROPY_SCORE, "entropy")

    @staticmethod
    def _split_candidate(start: int, token: str) -> Iterator[tuple[int, str]]:
        """Yield the parts of a token worth scoring, with their offsets.

        Trailing padding is kept, but a path such as ``/api/v1/users/abc`` is
        scored segment by segment, because base64 only rarely has several
        slashes around short word-like parts.
        """
        if token.count("/") >= 2:
            offset = start
            for part in token.split("/"):
                yield offset, part
                offset += len(part) + 1
            return
        yield start, token

    def _is_secret_like(self, text: str, start: int, token: str) -> bool:
        core = token.rstrip("=")
        if _UUID.match(core):
            return False
        if _HEX.match(core):
            if len(core) in (32, 40, 64, 128) and _HASH_CONTEXT.search(
                text[max(0, start - 60) : start]
            ):
                return False
            return _shannon(core) >= self.entropy_threshold * 0.75
        has_digit = any(char.isdigit() for char in core)
        has_upper = any(char.isupper() for char in core)
        has_lower = any(char.islower() for char in core)
        # Identifiers and words (snake_case, kebab-case, camelCase) have few
        # digits; random tokens of this length almost always have some.
        if not has_digit or not (has_upper or has_lower):
            return False
        if sum(char.isdigit() for char in core) < 2 and not (has_upper and has_lower):
            return False
        if _WORDS_AND_NUMBERS.fullmatch(core):
            return False
        return _shannon(core) >= self.entropy_threshold


def _overlaps(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(
        start < occupied_end and occupied_start < end
        for occupied_start, occupied_end in spans
    )


def build_secrets(settings: dict[str, Any]) -> SecretsScanner:
    """Build the secrets scanner from its policy settings.

    Settings: ``types`` (a subset of :data:`TYPES`, all by default),
    ``entropy_threshold`` (bits per character for base64-like tokens; hex
    tokens need three quarters of it), ``min_length`` (characters a token
    needs before its entropy counts) and ``allow`` (values never reported).
    """
    types = take(settings, "types", list(TYPES))
    entropy_threshold = take(settings, "entropy_threshold", DEFAULT_ENTROPY_THRESHOLD)
    min_length = take(settings, "min_length", DEFAULT_MIN_LENGTH)
    allow = take(settings, "allow", [])
    no_more("secrets", settings)
    if (
        not isinstance(types, list)
        or not types
        or not all(isinstance(t, str) for t in types)
    ):
        raise ScannerConfigError(
            f"secrets: types must be a non-empty list, got {types!r}"
        )
    unknown = sorted(set(types) - set(TYPES))
    if unknown:
        raise ScannerConfigError(
            f"secrets: unknown type(s) {', '.join(unknown)}; known types:"
            f" {', '.join(TYPES)}"
        )
    if (
        not isinstance(entropy_threshold, int | float)
        or isinstance(entropy_threshold, bool)
        or not 0 < entropy_threshold <= 6
    ):
        raise ScannerConfigError(
            "secrets: entropy_threshold must be a number of bits per character"
            f" above 0 and at most 6, got {entropy_threshold!r}"
        )
    if (
        not isinstance(min_length, int)
        or isinstance(min_length, bool)
        or min_length < 8
    ):
        raise ScannerConfigError(
            f"secrets: min_length must be an integer of at least 8, got {min_length!r}"
        )
    if not isinstance(allow, list) or not all(
        isinstance(value, str) for value in allow
    ):
        raise ScannerConfigError(
            f"secrets: allow must be a list of strings, got {allow!r}"
        )
    return SecretsScanner(
        types=tuple(types),
        entropy_threshold=float(entropy_threshold),
        min_length=min_length,
        allow=frozenset(allow),
    )
