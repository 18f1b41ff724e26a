"""Deterministic evaluators: text, pattern, JSON, length, latency and cost checks.

None of these kinds calls a model. Text is NFC-normalised before every
comparison, so a composed "é" equals "e" followed by U+0301, and
``ignore_case`` compares casefolded text, so "Straße" equals "STRASSE".
Scores are 1.0 or 0.0, except ``contains`` in mode ``all`` and
``not_contains`` with several values, which score the share of values found
or absent. Every kind passes only at 1.0 unless its threshold is set lower.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import referencing.exceptions

# NOTE: jsonschema ships no type information and types-jsonschema is not a
# dependency, so its names are typed as Any here.
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import (  # type: ignore[import-untyped]
    SchemaError,
    ValidationError,
    best_match,
)
from jsonschema.validators import validator_for  # type: ignore[import-untyped]

from keelway.evals.base import (
    Case,
    Evaluator,
    EvaluatorConfigError,
    JSONObject,
    Sample,
    Score,
    Services,
)
from keelway.evals.evaluators import register

# Characters of output or expected text quoted in a reason.
QUOTE_CHARS = 80
# Values listed in a reason before the rest are only counted.
LISTED_VALUES = 5
# Schema errors kept in a score's details, and errors collected at most.
DETAIL_ERRORS = 20
MAX_SCHEMA_ERRORS = 1000
# Characters of one schema error message kept, because a message may quote
# the whole instance.
MESSAGE_CHARS = 200
# Opening brackets tried as the start of a JSON span when extracting.
MAX_SPAN_STARTS = 100

WHITESPACE = re.compile(r"\s+")


def nfc(text: str) -> str:
    """Return ``text`` in Unicode normalisation form C."""
    return unicodedata.normalize("NFC", text)


def fold(text: str, ignore_case: bool) -> str:
    """Return ``text`` NFC-normalised and, with ``ignore_case``, casefolded."""
    text = nfc(text)
    if ignore_case:
        # Casefolding can decompose characters, so normalise again.
        text = nfc(text.casefold())
    return text


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """Return ``text`` as a Python string literal, cut to ``limit`` characters."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def quote_pattern(pattern: str, limit: int = QUOTE_CHARS) -> str:
    """Quote a regular expression as written, without doubled backslashes."""
    if len(pattern) <= limit:
        return f"'{pattern}'"
    return f"'{pattern[:limit]}...' ({len(pattern)} characters)"


def quote_at(text: str, index: int, limit: int = QUOTE_CHARS) -> str:
    """Quote ``text`` so that the character at ``index`` is in the shown part."""
    if len(text) <= limit or index < limit - 20:
        return quote(text, limit)
    start = max(0, index - 20)
    window = text[start : start + limit]
    end = "..." if start + limit < len(text) else ""
    return f"...{window!r}{end} ({len(text)} characters)"


def quote_list(values: Sequence[str]) -> str:
    """Return ``values`` quoted and comma-separated, listing at most a few."""
    listed = ", ".join(quote(value) for value in values[:LISTED_VALUES])
    rest = len(values) - LISTED_VALUES
    return f"{listed} and {rest} more" if rest > 0 else listed


def describe_output(output: str) -> str:
    """Return a short sentence that quotes ``output`` for a failure reason."""
    if not output:
        return "Output was empty."
    if not output.strip():
        return "Output was only whitespace."
    return f"Output was {quote(output)}."


def first_difference(left: str, right: str) -> int:
    """Return the index of the first character where the two texts differ."""
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return index
    return min(len(left), len(right))


# Checks of constructor settings. Each raises EvaluatorConfigError naming the
# evaluator and the setting.


def check_flag(evaluator: str, setting: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise EvaluatorConfigError(
            f"{evaluator}: {setting} must be true or false, got {value!r}"
        )
    return value


def check_texts(evaluator: str, setting: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        items: list[object] = [value]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise EvaluatorConfigError(
            f"{evaluator}: {setting} must be a string or a list of strings,"
            f" got {type(value).__name__}"
        )
    if not items:
        raise EvaluatorConfigError(f"{evaluator}: {setting} must not be an empty list")
    for item in items:
        if not isinstance(item, str):
            raise EvaluatorConfigError(
                f"{evaluator}: every item of {setting} must be a string, got {item!r}"
            )
        if not item.strip():
            raise EvaluatorConfigError(
                f"{evaluator}: {setting} must not contain an empty string"
            )
    return tuple(str(item) for item in items)


def check_choice(
    evaluator: str, setting: str, value: object, choices: Sequence[str]
) -> str:
    if not isinstance(value, str) or value not in choices:
        options = " or ".join(repr(choice) for choice in choices)
        raise EvaluatorConfigError(
            f"{evaluator}: {setting} must be {options}, got {value!r}"
        )
    return value


def check_bound(evaluator: str, setting: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise EvaluatorConfigError(
            f"{evaluator}: {setting} must be a number of at least 0, got {value!r}"
        )
    return float(value)


def check_count(evaluator: str, setting: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EvaluatorConfigError(
            f"{evaluator}: {setting} must be a whole number of at least 0,"
            f" got {value!r}"
        )
    return value


class DeterministicEvaluator(Evaluator):
    """Base of the deterministic kinds: binary by default, so 1.0 must pass."""

    default_threshold: ClassVar[float] = 1.0

    def unjudgeable(self, sample: Sample) -> Score | None:
        """Return an error score when ``sample`` cannot be judged at all."""
        missing = self.missing(sample.case)
        if missing is not None:
            return self.error(missing)
        if not isinstance(sample.output, str):
            return self.error(
                f"output is {type(sample.output).__name__}, not text, so it"
                " cannot be judged"
            )
        return None

    def verdict(self, passed: bool, reason: str, details: JSONObject) -> Score:
        """Build a 1.0 or 0.0 score."""
        return self.ok(1.0 if passed else 0.0, reason, details)


class ReferenceEvaluator(DeterministicEvaluator):
    """A kind that compares with ``value`` when set, else with case.expected."""

    requires: ClassVar[frozenset[str]] = frozenset({"expected"})
    # True when the spec sets ``value``, so the case needs no expected text.
    has_value: bool = False

    def missing(self, case: Case) -> str | None:
        if self.has_value:
            return None
        return super().missing(case)


@register
class ExactMatch(ReferenceEvaluator):
    """Pass when the output equals the expected text.

    ``value`` replaces case.expected. With ``strip`` (the default) leading
    and trailing whitespace is ignored, with ``normalize_whitespace`` (the
    default) every whitespace run counts as one space, and ``ignore_case``
    compares casefolded text.
    """

    kind = "exact_match"

    def __init__(
        self,
        value: str | None = None,
        ignore_case: bool = False,
        strip: bool = True,
        normalize_whitespace: bool = True,
        name: str | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(name, threshold)
        if value is not None and not isinstance(value, str):
            raise EvaluatorConfigError(
                f"{self.name}: value must be a string, got {type(value).__name__}"
            )
        self.value = value
        self.has_value = value is not None
        self.ignore_case = check_flag(self.name, "ignore_case", ignore_case)
        self.strip = check_flag(self.name, "strip", strip)
        self.normalize_whitespace = check_flag(
            self.name, "normalize_whitespace", normalize_whitespace
        )

    def normalise(self, text: str) -> str:
        """Return ``text`` in the form that the comparison uses."""
        text = nfc(text)
        if self.strip:
            text = text.strip()
        if self.normalize_whitespace:
            text = WHITESPACE.sub(" ", text)
        return fold(text, self.ignore_case)

    async def evaluate(self, sample: Sample, services: Services) -> Score:
        problem = self.unjudgeable(sample)
        if problem is not None:
            return problem
        raw_expected = self.value if self.value is not None else sample.case.expected
        assert raw_expected is not None  # unjudgeable() checked the case
        expected = self.normalise(raw_expected)
        output = self.normalise(sample.output)
        if output == expected:
            return self.verdict(True, "output equals the expected text", {})

        index = first_difference(output, expected)
        if not output:
            found = "only whitespace" if sample.output else "empty"
            reason = f"expected {quote(expected)} but output was {found}"
        else:
            reason = (
                f"expected {quote_at(expected, index)} but output was"
                f" {quote_at(output, index)} (first difference at character"
                f" {index})"
            )
        return self.verdict(False, reason, {"first_difference": index})


@register
class Contains(ReferenceEvaluator):
    """Score the share of ``value`` strings that occur in the output.

    Without ``value`` the case's expected text must occur. In mode ``all``
    (the default) the score is the share of values found. In mode ``any``
    it is 1.0 when at least one occurs. ``ignore_case`` defaults to true.
    """

    kind = "contains"

    def __init__(
        self,
        value: str | list[str] | None = None,
        ignore_case: bool = True,
        mode: str = "all",
        name: str | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(name, threshold)
        self.values = None if value is None else check_texts(self.name, "value", value)
        self.has_value = value is not None
        self.ignore_case = check_flag(self.name, "ignore_case", ignore_case)
        self.mode = check_choice(self.name, "mode", mode, ("all", "any"))

    async def evaluate(self, sample: Sample, services: Services) -> Score:
        problem = self.unjudgeable(sample)
        if problem is not None:
            return problem
        if self.values is not None:
            values = self.values
        else:
            expected = sample.case.expected or ""
            if not expected.strip():
                return self.error(
                    f"case {sample.case.key!r} has an empty expected output, so"
                    " there is nothing to look for"
                )
            values = (expected,)

        output = fold(sample.output, self.ignore_case)
        found = [value for value in values if fold(value, self.ignore_case) in output]
        absent = [value for value in values if value not in found]
        details: JSONObject = {"found": found, "missing": absent, "mode": self.mode}
        if self.mode == "any":
            return self.verdict(
                bool(found), self.any_reason(found, values, sample), details
            )
        return self.ok(
            len(found) / len(values), self.all_reason(found, absent, sample), details
        )

    @staticmethod
    def any_reason(found: list[str], values: Sequence[str], sample: Sample) -> str:
        if found:
            return f"output contains {quote(found[0])}, one of the accepted values"
        return (
            f"expected output to contain any of {quote_list(values)} but it"
            f" contains none. {describe_output(sample.output)}"
        )

    @staticmethod
    def all_reason(found: list[str], absent: list[str], sample: Sample) -> str:
        total = len(found) + len(absent)
        if not absent:
            if total == 1:
                return f"output contains {quote(found[0])}"
            return f"output contains all {total} expected values"
        if total == 1:
            return (
                f"expected output to contain {quote(absent[0])} but it does not."
                f" {describe_output(sample.output)}"
            )
        return (
            f"output contains {len(found)} of {total} expected values but lacks"
            f" {quote_list(absent)}. {describe_output(sample.output)}"
        )


@register
class NotContains(DeterministicEvaluator):
    """Score the share of forbidden ``value`` strings absent from the output.

    ``value`` is required. ``ignore_case`` defaults to true.
    """

    kind = "not_contains"

    def __init__(
        self,
        value: str | list[str] | None = None,
        ignore_case: bool = True,
        name: str | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(name, threshold)
        if value is None:
            raise EvaluatorConfigError(
                f"{self.name}: value is required (a string or a list of strings"
                " that must not occur)"
            )
        self.values = check_texts(self.name, "value", value)
        self.ignore_case = check_flag(self.name, "ignore_case", ignore_case)

    async def evaluate(self, sample: Sample, services: Services) -> Score:
        problem = self.unjudgeable(sample)
        if problem is not None:
            return problem
        output = fold(sample.output, self.ignore_case)
        positions = {
            value: output.find(fold(value, self.ignore_case)) for value in self.values
        }
        present = [value for value, index in positions.items() if index >= 0]
        details: JSONObject = {"present": present}
        score = 1.0 - len(present) / len(self.values)
        if not present:
            if len(self.values) == 1:
                reason = f"output does not contain {quote(self.values[0])}"
            else:
                reason = (
                    f"output contains none of the {len(self.values)} forbidden values"
                )
            return self.ok(score, reason, details)

        first = present[0]
        reason = (
            f"expected no forbidden value but output contains {quote_list(present)},"
            f" the first at character {positions[first]}"
        )
        if len(self.values) > 1:
            reason += f" ({len(present)} of {len(self.values)} forbidden values)"
        return self.ok(score, reason, details)


REGEX_FLAGS = {
    "IGNORECASE": re.IGNORECASE,
    "MULTILINE": re.MULTILINE,
    "DOTALL": re.DOTALL,
}


@register
class Regex(DeterministicEvaluator):
    """Pass when ``pattern`` matches the output, or with ``negate`` when it does not.

    ``pattern`` is a Python regular expression, matched anywhere in the
    output unless ``full_match`` is set. ``flags`` lists flag names from
    IGNORECASE, MULTILINE and DOTALL. Pattern and output are NFC-normalised.
    """

    kind = "regex"

    def __init__(
        self,
        pattern: str | None = None,
        flags: list[str] | None = None,
        full_match: bool = False,
        negate: bool = False,
        name: str | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(name, threshold)
        if not isinstance(pattern, str) or not pattern:
            raise EvaluatorConfigError(
                f"{self.name}: pattern is required and must be a non-empty string,"
                f" got {pattern!r}"
            )
        self.pattern = pattern
        self.flags = self.check_flags(flags or [])
        self.full_match = check_flag(self.name, "full_match", full_match)
        self.negate = check_flag(self.name, "negate", negate)
        combined = 0
        for flag in self.flags:
            combined |= REGEX_FLAGS[flag]
        try:
            self.regex = re.compile(nfc(pattern), combined)
        except re.error as error:
            raise EvaluatorConfigError(
                f"{self.name}: pattern {quote_pattern(pattern)} is not a valid regular"
                f" expression: {error}"
            ) from None

    def check_flags(self, flags: object) -> tuple[str, ...]:
        known = ", ".join(REGEX_FLAGS)
        if not isinstance(flags, list | tuple):
            raise EvaluatorConfigError(
                f"{self.name}: flags must be a list of flag names ({known}),"
                f" got {flags!r}"
            )
        names = []
        for flag in flags:
            if not isinstance(flag, str) or flag.upper() not in REGEX_FLAGS:
                raise EvaluatorConfigError(
                    f"{self.name}: unknown regex flag {flag!r}, expected one of {known}"
                )
            names.append(flag.upper())
        return tuple(names)

    async def evaluate(self, sample: Sample, services: Services) -> Score:
        problem = self.unjudgeable(sample)
        if problem is not None:
            return problem
        output = nfc(sample.output)
        # NOTE: Python's re has no time limit, so a pattern prone to
        # catastrophic backtracking can stall on a long output.
        if self.full_match:
            match = self.regex.fullmatch(output)
        else:
            match = self.regex.search(output)
        pattern = quote_pattern(self.pattern)
        details: JSONObject = {"matched": match is not None}
        if match is not None:
            details["match"] = match.group(0)[:QUOTE_CHARS]
            details["position"] = match.start()

        if self.negate:
            if match is None:
                return self.verdict(True, f"output has no match for {pattern}", details)
            reason = (
                f"expected no match for {pattern} but found {quote(match.group(0))}"
                f" at character {match.start()}"
            )
            return self.verdict(False, reason, details)

        if match is not None:
            if self.full_match:
                reason = f"the whole output matches {pattern}"
            else:
                reason = (
                    f"output matches {pattern} with {quote(match.group(0))} at"
                    f" character {match.start()}"
                )
            return self.verdict(True, reason, details)
        scope = "the whole output to match" if self.full_match else "output to match"
        reason = (
            f"expected {scope} {pattern} but it does not. {describe_output(output)}"
        )
        return self.verdict(False, reason, details)


# JSON parsing shared by json_valid and json_schema.


class NonStandardConstant(Exception):
    """NaN, Infinity or -Infinity, which Python's json accepts but RFC 8259 does not."""

    def __init__(self, constant: str) -> None:
        super().__init__(constant)
        self.constant = constant


def reject_constant(constant: str) -> Any:
    raise NonStandardConstant(constant)


DECODER = json.JSONDecoder(parse_constant=reject_constant)
# A JSON string, or one of the literals RFC 8259 does not allow, outside strings.
STRING_OR_CONSTANT = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)', re.DOTALL)
JSON_FENCE = re.compile(
    r"```[ \t]*json[ \t]*\r?\n?(.*?)(?:```|\Z)", re.IGNORECASE | re.DOTALL
)
SPAN_START = re.compile(r"[\[{]")


def constant_position(document: str, start: int) -> int:
    """Return where the first NaN or Infinity literal outside a string starts.

    The decoder only reports the literal, not its position. The text before
    the literal parsed as JSON, so every string there is well formed and the
    first literal outside a string is the one the decoder met.
    """
    for match in STRING_OR_CONSTANT.finditer(document, start):
        if match.group(1):
            return match.start(1)
    return start


def decode(document: str, start: int = 0, whole: bool = True) -> tuple[Any, int]:
    """Parse strict RFC 8259 JSON at ``start`` and return the value and its end.

    With ``whole`` the document must hold one JSON value and nothing but
    whitespace around it. Raises json.JSONDecodeError, also for NaN,
    Infinity and nesting too deep to parse.
    """
    try:
        if whole:
            return DECODER.decode(document), len(document)
        return DECODER.raw_decode(document, start)
    except NonStandardConstant as error:
        position = constant_position(document, start)
        raise json.JSONDecodeError(
            f"{error.constant} is not allowed (RFC 8259 has no NaN or Infinity)",
            document,
            position,
        ) from None
    except RecursionError:
        raise json.JSONDecodeError(
            "nesting is too deep to parse", document, start
        ) from None


def json_type(value: Any) -> str:
    """Return the JSON name of a parsed value's type."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


@dataclass(frozen=True, slots=True)
class ParsedJSON:
    """A JSON value read from an output, and which part of the output held it."""

    value: Any
    source: str


class JSONParseFailure(Exception):
    """An output without valid JSON, with a reason and details for its score."""

    def __init__(self, reason: str, details: JSONObject) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


def parse_failure(error: json.JSONDecodeError, where: str) -> JSONParseFailure:
    document, position = error.doc, error.pos
    near = document[max(0, position - 10) : position + 30]
    reason = (
        f"{where} is not valid JSON: {error.msg} at line {error.lineno}, column"
        f" {error.colno} (character {position})"
    )
    if document.strip():
        reason += f" near {quote(near)}"
    else:
        reason += ". " + describe_output(document)
    details: JSONObject = {
        "error": error.msg,
        "line": error.lineno,
        "column": error.colno,
        "position": position,
    }
    return JSONParseFailure(reason, details)


def load_json(output: str, extract: bool) -> ParsedJSON:
    """Read the JSON value of ``output``, raising JSONParseFailure if there is none.

    Without ``extract`` the whole output must be one JSON value. With it,
    the content of the first ```json fenced block is read, or, without a
    block, the first ``{...}`` or ``[...]`` span that parses.
    """
    if not extract:
        try:
            value, _ = decode(output)
        except json.JSONDecodeError as error:
            raise parse_failure(error, "output") from None
        return ParsedJSON(value, "output")

    fence = JSON_FENCE.search(output)
    if fence is not None:
        block, offset = fence.group(1), fence.start(1)
        try:
            value, _ = decode(block)
        except json.JSONDecodeError as error:
            # Report the position within the whole output.
            moved = json.JSONDecodeError(error.msg, output, offset + error.pos)
            raise parse_failure(moved, "the ```json block of the output") from None
        return ParsedJSON(value, "the ```json block of the output")

    first_error: json.JSONDecodeError | None = None
    for tried, start in enumerate(SPAN_START.finditer(output)):
        if tried == MAX_SPAN_STARTS:
            break
        try:
            value, _ = decode(output, start.start(), whole=False)
        except json.JSONDecodeError as error:
            first_error = first_error or error
            continue
        return ParsedJSON(
            value, f"the JSON span at character {start.start()} of the output"
        )
    if first_error is None:
        raise JSONParseFailure(
            "output contains no ```json block and no JSON object or array. "
            + describe_output(output),
            {"error": "no JSON found"},
        )
    raise parse_failure(first_error, "the first JSON object or array in the output")


@register
class JSONValid(DeterministicEvaluator):
    """Pass when the output is valid JSON by RFC 8259 (no NaN or Infinity).

    With ``extract`` the JSON may sit in a ```json fenced block or be the
    first ``{...}`` or ``[...]`` span in surrounding text.
    """

    kind = "json_valid"

    def __init__(
        self,
        extract: bool = False,
        name: str | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(name, threshold)
        self.extract = check_flag(self.name, "extract", extract)

    async def evaluate(self, sample: Sample, services: Services) -> Score:
        problem = self.unjudgeable(sample)
        if problem is not None:
            return problem
        try:
            parsed = load_json(sample.output, self.extract)
        except JSONParseFailure as failure:
            return self.verdict(False, failure.reason, failure.details)
        reason = f"{parsed.source} is valid JSON ({json_type(parsed.value)})"
        return self.verdict(True, reason, {"type": json_type(parsed.value)})


def json_path(parts: Iterable[str | int]) -> str:
    """Return a JSONPath such as ``$.items[2].price`` for an instance path."""
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            path += f".{part}"
        else:
            path += f"[{json.dumps(part, ensure_ascii=False)}]"
    return path


def short_message(error: ValidationError) -> str:
    message = str(error.message)
    if len(message) > MESSAGE_CHARS:
        return message[:MESSAGE_CHARS] + "..."
    return message


@register
class JSONSchema(DeterministicEvaluator):
    """Pass when the output is valid JSON that validates against ``schema``.

    ``schema`` is a JSON Schema object, checked at construction. Its
    ``$schema`` picks the draft, Draft 2020-12 when absent. ``format`` is an
    annotation only, as the drafts specify by default. ``extract`` works as
    for json_valid.
    """

    kind = "json_schema"

    def __init__(
        self,
        schema: JSONObject | None = None,
        extract: bool = False,
        name: str | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(name, threshold)
        if not isinstance(schema, dict):
            raise EvaluatorConfigError(
                f"{self.name}: schema is required and must be a JSON Schema object,"
                f" got {type(schema).__name__}"
            )
        self.extract = check_flag(self.name, "extract", extract)
        self.validator = self.build_validator(schema)

    def build_validator(self, schema: JSONObject) -> Any:
        declared = schema.get("$schema")
        if declared is None:
            cls = Draft202012Validator
        else:
            if not isinstance(declared, str):
                raise EvaluatorConfigError(
                    f"{self.name}: schema.$schema must be a URI string,"
                    f" got {declared!r}"
                )
            found = validator_for(schema, default=None)
            if found is None:
                raise EvaluatorConfigError(
                    f"{self.name}: schema.$schema {declared!r} is not a JSON Schema"
                    " draft that jsonschema knows"
                )
            cls = found
        try:
            cls.check_schema(schema)
        except SchemaError as error:
            where = json_path(error.absolute_path).replace("$", "schema", 1)
            message = short_message(error)
            raise EvaluatorConfigError(
                f"{self.name}: {where} is not a valid JSON Schema: {message}"
            ) from None
        return cls(schema)

    async def evaluate(self, sample: Sample, services: Services) -> Score:
        problem = self.unjudgeable(sample)
        if problem is not None:
            return problem
        try:
            parsed = load_json(sample.output, self.extract)
        except JSONParseFailure as failure:
            return self.verdict(False, failure.reason, failure.details)

        errors: list[ValidationError] = []
        try:
            for error in self.validator.iter_errors(parsed.value):
                errors.append(error)
                if len(errors) == MAX_SCHEMA_ERRORS:
                    break
        except referencing.exceptions.Unresolvable as error:
            return self.error(f"the schema has a $ref that cannot be resolved: {error}")
        except RecursionError:
            return self.error("the JSON or the schema nests too deeply to validate")

        if not errors:
            return self.verdict(True, f"{parsed.source} matches the schema", {})
        main = best_match(errors)
        assert main is not None  # errors is not empty
        capped = len(errors) == MAX_SCHEMA_ERRORS
        reason = (
            f"{parsed.source} does not match the schema at"
            f" {json_path(main.absolute_path)}: {short_message(main)}"
        )
        if len(errors) > 1:
            counted = f"at least {len(errors)}" if capped else str(len(errors))
            reason += f" ({counted} errors in all)"
        details: JSONObject = {
            # Validation stops collecting at MAX_SCHEMA_ERRORS errors.
            "error_count": len(errors),
            "error_count_capped": capped,
            "errors": [
                {
                    "path": json_path(error.absolute_path),
                    "message": short_message(error),
                    "keyword": error.validator,
                }
                for error in errors[:DETAIL_ERRORS]
            ],
        }
        return self.verdict(False, reason, details)


@register
class Length(DeterministicEvaluator):
    """Pass when the output's length lies within ``min`` and ``max``.

    ``unit`` is ``chars`` (Unicode code points after NFC, the default) or
    ``words`` (runs of non-whitespace). Leading and trailing whitespace is
    not counted. Both bounds are inclusive and at least one is required.
    """

    kind = "length"

    def __init__(
        self,
        min: int | None = None,  # noqa: A002 - the setting's name in specs
        max: int | None = None,  # noqa: A002
        unit: str = "chars",
        name: str | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(name, threshold)
        if min is None and max is None:
            raise EvaluatorConfigError(f"{self.name}: set min, max or both")
        self.min = None if min is None else check_count(self.name, "min", min)
        self.max = None if max is None else check_count(self.name, "max", max)
        if self.min is not None and self.max is not None and self.min > self.max:
            raise EvaluatorConfigError(
                f"{self.name}: min {self.min} is greater than max {self.max}"
            )
        self.unit = check_choice(self.name, "unit", unit, ("chars", "words"))

    def measure(self, output: str) -> int:
        text = nfc(output).strip()
        if self.unit == "words":
            # NOTE: scripts written without spaces (Chinese, Japanese, Thai)
            # count as one word per whitespace-separated run.
            return len(text.split())
        return len(text)

    async def evaluate(self, sample: Sample, services: Services) -> Score:
        problem = self.unjudgeable(sample)
        if problem is not None:
            return problem
        length = self.measure(sample.output)
        unit = "character" if self.unit == "chars" else "word"
        details: JSONObject = {"length": length, "unit": self.unit}
        found = f"output has {length} {unit}{'' if length == 1 else 's'}"
        if self.min is not None and length < self.min:
            return self.verdict(
                False, f"{found}, fewer than the minimum of {self.min}", details
            )
        if self.max is not None and length > self.max:
            return self.verdict(
                False, f"{found}, more than the maximum of {self.max}", details
            )
        if self.min is not None and self.max is not None:
            bounds = f"within {self.min} to {self.max}"
        elif self.min is not None:
            bounds = f"at least the minimum of {self.min}"
        else:
            bounds = f"at most the maximum of {self.max}"
        return self.verdict(True, f"{found}, {bounds}", details)


def measured(value: object) -> float | None:
    """Return a finite, non-negative measurement as a float, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return float(value)


@register
class Latency(DeterministicEvaluator):
    """Pass when the model call took at most ``max_ms`` milliseconds."""

    kind = "latency"

    def __init__(
        self,
        max_ms: float | None = None,
        name: str | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(name, threshold)
        if max_ms is None:
            raise EvaluatorConfigError(f"{self.name}: max_ms is required")
        self.max_ms = check_bound(self.name, "max_ms", max_ms)

    async def evaluate(self, sample: Sample, services: Services) -> Score:
        problem = self.unjudgeable(sample)
        if problem is not None:
            return problem
        latency = measured(sample.latency_ms)
        if latency is None:
            return self.error(
                f"sample has no valid latency (got {sample.latency_ms!r}), so the"
                " limit cannot be checked"
            )
        details: JSONObject = {"latency_ms": latency, "max_ms": self.max_ms}
        if latency <= self.max_ms:
            reason = (
                f"latency {latency:.1f} ms is within the maximum of {self.max_ms:g} ms"
            )
            return self.verdict(True, reason, details)
        reason = f"latency {latency:.1f} ms is over the maximum of {self.max_ms:g} ms"
        return self.verdict(False, reason, details)


@register
class Cost(DeterministicEvaluator):
    """Pass when the model call cost at most ``max_usd`` US dollars."""

    kind = "cost"

    def __init__(
        self,
        max_usd: float | None = None,
        name: str | None = None,
        threshold: float | None = None,
    ) -> None:
        super().__init__(name, threshold)
        if max_usd is None:
            raise EvaluatorConfigError(f"{self.name}: max_usd is required")
        self.max_usd = check_bound(self.name, "max_usd", max_usd)

    async def evaluate(self, sample: Sample, services: Services) -> Score:
        problem = self.unjudgeable(sample)
        if problem is not None:
            return problem
        cost = measured(sample.cost_usd)
        if cost is None:
            return self.error(
                f"sample has no valid cost (got {sample.cost_usd!r}), so the limit"
                " cannot be checked. The model may have no price in the pricing table."
            )
        details: JSONObject = {"cost_usd": cost, "max_usd": self.max_usd}
        if cost <= self.max_usd:
            reason = f"cost ${cost:.6g} is within the maximum of ${self.max_usd:.6g}"
            return self.verdict(True, reason, details)
        reason = f"cost ${cost:.6g} is over the maximum of ${self.max_usd:.6g}"
        return self.verdict(False, reason, details)
