"""Checks on the shape of an answer: JSON Schema, links and refusals.

All three run on the model's answer only. ``json_schema`` and ``refusal``
need the whole answer, so they score 0 while it is still streaming.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import tldextract
from jsonschema.exceptions import (  # type: ignore[import-untyped]
    SchemaError,
    ValidationError,
)

from keelway.guardrails.base import Detection, Finding, ScanContext, ScannerConfigError
from keelway.guardrails.registry import no_more, take

# ---------------------------------------------------------------- json_schema


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _check_schema(schema: Any) -> type[Any]:
    validator: type[Any] = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator


class JsonSchemaScanner:
    """Flags a final answer that is not JSON or does not match its schema."""

    kind = "json_schema"
    spans = False

    def __init__(self, schema: dict[str, Any] | None) -> None:
        self.schema = schema
        self._validators: dict[str, Any] = {}

    def _validator(self, schema: dict[str, Any]) -> Any:
        # Requests of one client usually repeat the same schema, so compiled
        # validators are kept by the schema's canonical JSON text.
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            validator = _check_schema(schema)(schema)
            if len(self._validators) < 256:
                self._validators[key] = validator
        return validator

    def _schema_of(self, context: ScanContext) -> tuple[dict[str, Any] | None, bool]:
        """Return the request's schema, else the setting, and whether JSON is due."""
        response_format = (context.request or {}).get("response_format")
        if isinstance(response_format, dict):
            wrapper = response_format.get("json_schema")
            if isinstance(wrapper, dict) and isinstance(wrapper.get("schema"), dict):
                return wrapper["schema"], True
            if response_format.get("type") == "json_object":
                return self.schema, True
        return self.schema, self.schema is not None

    def scan(self, text: str, context: ScanContext) -> Detection:
        if not context.final:
            return Detection(reason="waits for the whole answer")
        schema, expects_json = self._schema_of(context)
        if not expects_json:
            return Detection(reason="no JSON Schema in the request or the settings")
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            return Detection(
                score=1.0,
                reason=(
                    f"the answer is not valid JSON: {error.msg} at line"
                    f" {error.lineno} column {error.colno}"
                ),
            )
        if schema is None:
            # json_object mode: any JSON object is a match.
            if isinstance(document, dict):
                return Detection(reason="the answer is a JSON object")
            return Detection(score=1.0, reason="$: the answer is not a JSON object")
        try:
            validator = self._validator(schema)
        except SchemaError as error:
            raise ValueError(
                f"the request's JSON Schema is invalid at"
                f" {_json_path(error.absolute_path)}: {error.validator!r}"
            ) from None
        errors = list(validator.iter_errors(document))
        if not errors:
            return Detection(reason="the answer matches the schema")
        worst = jsonschema.exceptions.best_match(errors)
        return Detection(
            score=1.0,
            reason=f"{_describe(worst)} ({len(errors)} violation(s) in all)",
            details={"violations": len(errors)},
        )


def _describe(error: ValidationError) -> str:
    """Return where and which keyword a value fails, without the value itself."""
    path = _json_path(error.absolute_path)
    keyword = error.validator
    if keyword == "required" and isinstance(error.instance, dict):
        missing = [
            name
            for name in error.validator_value
            if isinstance(name, str) and name not in error.instance
        ]
        if missing:
            return f"{path}: missing required property {missing[0]!r}"
    if keyword == "type":
        return f"{path}: expected type {error.validator_value!r}"
    return f"{path}: fails the {keyword!r} keyword"


def build_json_schema(settings: dict[str, Any]) -> JsonSchemaScanner:
    """Build the JSON Schema check; ``schema`` is used when a request has none."""
    schema = take(settings, "schema", None)
    no_more("json_schema", settings)
    if schema is not None:
        if not isinstance(schema, dict):
            raise ScannerConfigError("scanner 'json_schema': schema must be a mapping")
        try:
            _check_schema(schema)
        except SchemaError as error:
            raise ScannerConfigError(
                f"scanner 'json_schema': schema is not a valid JSON Schema at"
                f" {_json_path(error.absolute_path)}: {error.message}"
            ) from None
    return JsonSchemaScanner(schema)


# ----------------------------------------------------------------------- urls

# A URL with a scheme, up to whitespace, a quote or an angle bracket. Closing
# punctuation at its end is trimmed afterwards.
SCHEME_URL = re.compile(r"(?<![\w.+-])([a-z][a-z0-9+.-]{1,15})://[^\s<>\"'`]+", re.I)
# A host name without a scheme: labels of letters, digits and hyphens (in any
# script, for internationalized names), an optional port and path.
BARE_DOMAIN = re.compile(
    r"(?<![\w@.:/-])(?:www\.)?(?:[\w-]{1,63}\.)+[\w-]{2,63}(?::\d{1,5})?(?:/[^\s<>\"'`]*)?(?![\w@])"
)
TRAILING = ".,;:!?)]}'\""
# Suffixes that are also file extensions people write in prose and code
# (``main.py``, ``notes.md``). A bare name ending in one is taken for a
# domain only when a path follows it.
FILE_SUFFIXES = frozenset(
    ["py", "md", "sh", "rs", "pl", "ps", "so", "gz", "js", "ts", "cs", "rb", "go"]
    + ["ml", "json", "yaml", "yml", "txt"]
)


@dataclass(frozen=True, slots=True)
class Link:
    """A URL or bare domain found in the text."""

    start: int
    end: int
    scheme: str | None
    host: str


def _idna(host: str) -> str | None:
    """Return ``host`` in ASCII (punycode) form, or None when it is invalid."""
    host = unicodedata.normalize("NFKC", host).rstrip(".").lower()
    if not host:
        return None
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _split_authority(url: str) -> tuple[str, str]:
    """Return the scheme and host of a URL, ignoring userinfo and port."""
    scheme, _, rest = url.partition("://")
    authority = re.split(r"[/?#\\]", rest, maxsplit=1)[0]
    # Userinfo ends at the last @, so https://example.com@evil.io is evil.io.
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    else:
        host = host.split(":", 1)[0]
    return scheme.lower(), host


def _mixed_script(host: str) -> bool:
    """Return whether one label of ``host`` mixes Latin letters with another script."""
    for label in host.split("."):
        scripts = set()
        for char in label:
            if not char.isalpha():
                continue
            name = unicodedata.name(char, "")
            scripts.add(name.split(" ", 1)[0])
        if len(scripts) > 1 and "LATIN" in scripts:
            return True
    return False


class UrlScanner:
    """Flags links whose scheme or domain the policy does not allow."""

    kind = "urls"
    spans = True

    def __init__(
        self,
        allowed: list[str],
        denied: list[str],
        schemes: list[str] | None,
        deny_mixed_scripts: bool,
    ) -> None:
        self.allowed = allowed
        self.denied = denied
        self.schemes = schemes
        self.deny_mixed_scripts = deny_mixed_scripts
        # The public suffix list shipped inside tldextract; an empty URL list
        # keeps it from fetching a newer one.
        self.suffixes = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    def links(self, text: str) -> list[Link]:
        """Return the URLs and bare domains in ``text``, in order."""
        found: list[Link] = []
        taken: list[tuple[int, int]] = []
        for match in SCHEME_URL.finditer(text):
            url = match.group().rstrip(TRAILING)
            scheme, host = _split_authority(url)
            start = match.start()
            found.append(Link(start, start + len(url), scheme, host))
            taken.append((start, start + len(url)))
        for match in BARE_DOMAIN.finditer(text):
            if any(start <= match.start() < end for start, end in taken):
                continue
            value = match.group().rstrip(TRAILING)
            host = re.split(r"[:/]", value, maxsplit=1)[0]
            if not self._is_domain(host, has_path="/" in value):
                continue
            found.append(Link(match.start(), match.start() + len(value), None, host))
        found.sort(key=lambda link: link.start)
        return found

    def _is_domain(self, host: str, has_path: bool) -> bool:
        ascii_host = _idna(host)
        if ascii_host is None:
            return False
        suffix = self.suffixes(ascii_host).suffix
        if not suffix or suffix == ascii_host:
            return False
        return has_path or suffix.rsplit(".", 1)[-1] not in FILE_SUFFIXES

    def _problem(self, link: Link) -> str | None:
        if self.schemes is not None and link.scheme not in (None, *self.schemes):
            return "scheme"
        if self.deny_mixed_scripts and _mixed_script(link.host):
            return "mixed_script_domain"
        host = _idna(link.host.strip("[]"))
        if host is None:
            return "invalid_host"
        if any(_within(host, domain) for domain in self.denied):
            return "denied_domain"
        if self.allowed and not any(_within(host, domain) for domain in self.allowed):
            return "domain_not_allowed"
        return None

    def scan(self, text: str, context: ScanContext) -> Detection:
        links = self.links(text)
        findings = []
        for link in links:
            problem = self._problem(link)
            if problem is not None:
                findings.append(Finding("URL", link.start, link.end, 1.0, problem))
        details = {"links": len(links), "disallowed": len(findings)}
        if not findings:
            return Detection(
                reason=f"{len(links)} link(s), all allowed", details=details
            )
        rules = ", ".join(sorted({finding.rule or "" for finding in findings}))
        return Detection(
            score=1.0,
            findings=findings,
            reason=f"{len(findings)} of {len(links)} link(s) disallowed: {rules}",
            details=details,
        )


def _within(host: str, domain: str) -> bool:
    """Return whether ``host`` is ``domain`` or one of its subdomains."""
    return host == domain or host.endswith("." + domain)


def _domains(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ScannerConfigError(f"scanner 'urls': {name} must be a list of domains")
    domains = []
    for item in value:
        cleaned = item.strip().lower().removeprefix("*.").lstrip(".")
        if "/" in cleaned or "@" in cleaned or " " in cleaned:
            raise ScannerConfigError(
                f"scanner 'urls': {name} entry {item!r} is not a domain;"
                " write only the host name"
            )
        if _is_ip(cleaned):
            domains.append(cleaned)
            continue
        ascii_domain = _idna(cleaned)
        if ascii_domain is None or "." not in ascii_domain.strip("."):
            raise ScannerConfigError(
                f"scanner 'urls': {name} entry {item!r} is not a valid domain"
            )
        domains.append(ascii_domain)
    return domains


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def build_urls(settings: dict[str, Any]) -> UrlScanner:
    """Build the link check from ``allowed_domains``, ``denied_domains``, ``schemes``.

    A domain covers its subdomains. Denied domains win over allowed ones.
    ``deny_mixed_scripts`` (default true) also flags host names with a label
    that mixes Latin letters with another script, the usual shape of a
    homograph (a Cyrillic ``а`` in ``exаmple.com``).
    """
    allowed = _domains("allowed_domains", take(settings, "allowed_domains", None))
    denied = _domains("denied_domains", take(settings, "denied_domains", None))
    schemes = take(settings, "schemes", None)
    deny_mixed_scripts = take(settings, "deny_mixed_scripts", True)
    no_more("urls", settings)
    if schemes is not None:
        if not isinstance(schemes, list) or not all(
            isinstance(item, str) and re.fullmatch(r"[a-zA-Z][a-zA-Z0-9+.-]*", item)
            for item in schemes
        ):
            raise ScannerConfigError(
                "scanner 'urls': schemes must be a list of URL schemes such as https"
            )
        schemes = [scheme.lower() for scheme in schemes]
    if not isinstance(deny_mixed_scripts, bool):
        raise ScannerConfigError(
            "scanner 'urls': deny_mixed_scripts must be true or false"
        )
    if not allowed and not denied and schemes is None and not deny_mixed_scripts:
        raise ScannerConfigError(
            "scanner 'urls' needs allowed_domains, denied_domains or schemes"
        )
    return UrlScanner(allowed, denied, schemes, deny_mixed_scripts)


# -------------------------------------------------------------------- refusal

# Refusal openings by language. Each rule matches the phrase, not the whole
# sentence, so the finding's span stays short.
CANNOT = r"(?:can(?:no|')t|cannot|won't|will not|am unable to|'m unable to)"
REFUSAL_PHRASES: dict[str, list[str]] = {
    "en": [
        rf"\bI(?:'m| am) (?:sorry|afraid),? (?:but )?I (?:{CANNOT}|am not able to)\b",
        rf"\bI {CANNOT} (?:help|assist|comply|provide|do that|fulfil+|support|share"
        r"|answer)\b",
        r"\bI(?:'m| am) (?:unable|not able) to (?:help|assist|comply|provide|fulfil+"
        r"|share|answer)\b",
        r"\b(?:as an AI(?: language model)?|as a language model),? I"
        r" (?:can(?:no|')t|cannot|don't|do not|am not able)\b",
        r"\bI must (?:decline|refuse)\b",
        r"\bI(?:'m| am) not (?:allowed|permitted) to\b",
    ],
    "de": [
        r"\b(?:es tut mir leid|leider),? (?:aber )?(?:ich kann|kann ich)"
        r" (?:dir |ihnen |dabei |damit |hierbei )*nicht\b",
        r"\bich kann (?:dir |ihnen )?(?:dabei |damit |hierbei |bei dieser anfrage )?"
        r"nicht (?:helfen|behilflich sein)\b",
        r"\bich darf (?:dir |ihnen )?(?:dabei |damit )?nicht\b",
    ],
    "fr": [
        r"\b(?:je suis )?désolée?,? (?:mais )?je ne"
        r" (?:peux|suis pas en mesure de|vais pas)\b",
        r"\bje ne (?:peux|pourrai) pas (?:vous |t')?(?:aider|répondre|fournir)\b",
        r"\bje ne suis pas en mesure de\b",
    ],
    "es": [
        r"\blo siento,? (?:pero )?no (?:puedo|podré)\b",
        r"\bno (?:puedo|podré) (?:ayudar|asistir|proporcionar|responder)\b",
        r"\bno estoy en condiciones de\b",
    ],
    "it": [
        r"\bmi dispiace,? (?:ma )?non (?:posso|sono in grado)\b",
        r"\bnon (?:posso|sono in grado di) (?:aiutar|assister|fornir|risponder)\w*",
    ],
    "pt": [
        r"\b(?:desculpe|lamento|sinto muito),? (?:mas )?não"
        r" (?:posso|consigo|sou capaz)\b",
        r"\bnão (?:posso|consigo) (?:ajudar|auxiliar|fornecer|responder)\b",
    ],
    "nl": [
        r"\bhet spijt me,? (?:maar )?(?:ik kan|dat kan ik) (?:je |u )?"
        r"(?:hier|daar|daarmee|hiermee)?\s?niet\b",
        r"\bik kan (?:je |u )?(?:hier|daar)?(?:mee)? ?niet (?:helpen|mee helpen)\b",
    ],
}
DEFAULT_EXAMPLES = [
    "I'm sorry, but I can't help with that request.",
    "I cannot assist with this because it goes against my guidelines.",
    "I won't be able to provide that information.",
    "Unfortunately I am not able to do what you asked.",
    "That is something I must decline to help with.",
]
# A refusal is stated in the opening of an answer; later matches are weaker
# evidence (a partial refusal, or an answer that quotes one).
OPENING_CHARS = 300
OPENING_SCORE = 0.9
LATER_SCORE = 0.6


class RefusalScanner:
    """Flags a final answer in which the model declines the request."""

    kind = "refusal"
    spans = False

    def __init__(
        self,
        languages: list[str],
        similarity: bool,
        examples: list[str],
        min_similarity: float,
    ) -> None:
        body = "|".join(
            f"(?:{pattern})" for code in languages for pattern in REFUSAL_PHRASES[code]
        )
        self.phrases = re.compile(body, re.IGNORECASE)
        self.similarity = similarity
        self.examples = examples
        self.min_similarity = min_similarity
        self._example_vectors: Any = None
        self._lock = threading.Lock()

    def scan(self, text: str, context: ScanContext) -> Detection:
        if not context.final:
            return Detection(reason="waits for the whole answer")
        # Curly apostrophes are common in model output; the rules use ASCII.
        plain = text.replace("\u2019", "'")
        findings = [
            Finding(
                "REFUSAL",
                match.start(),
                match.end(),
                OPENING_SCORE if match.start() < OPENING_CHARS else LATER_SCORE,
                "phrase",
            )
            for match in self.phrases.finditer(plain)
        ]
        score = max((finding.score for finding in findings), default=0.0)
        reason = (
            f"refusal phrase at offset {findings[0].start}"
            if findings
            else "no refusal phrase"
        )
        details: dict[str, Any] = {"phrases": len(findings)}
        if self.similarity and text.strip():
            similarity = self._similarity(text[:OPENING_CHARS])
            details["similarity"] = round(similarity, 4)
            if similarity >= self.min_similarity and similarity > score:
                score = similarity
                reason = (
                    f"the opening is {similarity:.2f} similar to refusal examples"
                    f" (min_similarity {self.min_similarity})"
                )
        return Detection(score=score, findings=findings, reason=reason, details=details)

    def _similarity(self, opening: str) -> float:
        from keelway.providers.embeddings import local_encoder

        encoder = local_encoder()
        with self._lock:
            if self._example_vectors is None:
                self._example_vectors = encoder.encode(
                    self.examples,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
        vector = encoder.encode(
            [opening],
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )[0]
        return float(max(0.0, (self._example_vectors @ vector).max()))


def build_refusal(settings: dict[str, Any]) -> RefusalScanner:
    """Build the refusal check.

    ``languages`` lists the phrase rules to use (default: all of en, de, fr,
    es, it, pt, nl). With ``similarity`` true (default false) the answer's
    opening is also compared with ``examples`` by the local MiniLM model.
    ``min_similarity`` (default 0.6) is the cosine similarity at which that
    comparison counts, and the score is then the similarity.
    """
    languages = take(settings, "languages", sorted(REFUSAL_PHRASES))
    similarity = take(settings, "similarity", False)
    examples = take(settings, "examples", DEFAULT_EXAMPLES)
    min_similarity = take(settings, "min_similarity", 0.6)
    no_more("refusal", settings)
    if not isinstance(languages, list) or not languages:
        raise ScannerConfigError("scanner 'refusal': languages must be a list of codes")
    unknown = [code for code in languages if code not in REFUSAL_PHRASES]
    if unknown:
        known = ", ".join(sorted(REFUSAL_PHRASES))
        raise ScannerConfigError(
            f"scanner 'refusal': no phrase rules for {unknown[0]!r}; known: {known}"
        )
    if not isinstance(similarity, bool):
        raise ScannerConfigError("scanner 'refusal': similarity must be true or false")
    if (
        not isinstance(examples, list)
        or not examples
        or not all(isinstance(item, str) and item.strip() for item in examples)
    ):
        raise ScannerConfigError(
            "scanner 'refusal': examples must be a list of non-empty strings"
        )
    if isinstance(min_similarity, bool) or not isinstance(min_similarity, int | float):
        raise ScannerConfigError("scanner 'refusal': min_similarity must be a number")
    if not 0 < min_similarity <= 1:
        raise ScannerConfigError(
            f"scanner 'refusal': min_similarity must be in (0, 1], got {min_similarity}"
        )
    return RefusalScanner(languages, similarity, examples, float(min_similarity))
