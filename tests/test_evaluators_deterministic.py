"""Deterministic evaluators: hand-checked outputs for each kind and its settings."""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any

import pytest

from keelway.evals.base import (
    Case,
    Evaluator,
    EvaluatorConfigError,
    Sample,
    Score,
    Services,
)
from keelway.evals.evaluators import build

CASE = Case("capital", expected="Paris")
NO_EXPECTED = Case("open-ended")
# "é" as one code point and as "e" followed by a combining acute accent.
COMPOSED = "caf\u00e9"
DECOMPOSED = "cafe\u0301"


def judge(
    spec: dict[str, Any] | str,
    output: Any,
    case: Case = CASE,
    **measurements: Any,
) -> Score:
    evaluator = build(spec)
    sample = Sample(case, output, **measurements)
    return asyncio.run(evaluator.evaluate(sample, Services()))


def config_error(spec: dict[str, Any]) -> str:
    with pytest.raises(EvaluatorConfigError) as raised:
        build(spec)
    return str(raised.value)


def test_unicode_fixture_forms_differ() -> None:
    assert COMPOSED != DECOMPOSED
    assert unicodedata.normalize("NFC", DECOMPOSED) == COMPOSED


# Building from specs.


def test_build_rejects_unknown_setting() -> None:
    message = config_error({"kind": "exact_match", "ignorecase": True})
    assert "exact_match" in message
    assert "ignorecase" in message


def test_build_rejects_unknown_kind() -> None:
    message = config_error({"kind": "exactly"})
    assert "exactly" in message


@pytest.mark.parametrize(
    "spec",
    [
        "exact_match",
        "contains",
        "json_valid",
        {"kind": "not_contains", "value": "x"},
        {"kind": "regex", "pattern": "x"},
        {"kind": "json_schema", "schema": {}},
        {"kind": "length", "max": 1},
        {"kind": "latency", "max_ms": 1},
        {"kind": "cost", "max_usd": 1},
    ],
)
def test_default_threshold_requires_full_score(spec: dict[str, Any] | str) -> None:
    evaluator = build(spec)
    assert evaluator.threshold == 1.0


def test_name_and_threshold_come_from_spec() -> None:
    score = judge(
        {"kind": "contains", "name": "mentions", "threshold": 0.5, "value": ["a", "z"]},
        "a",
    )
    assert score.evaluator == "mentions"
    assert score.value == 0.5
    assert score.passed is True


def test_threshold_out_of_range_rejected() -> None:
    message = config_error({"kind": "exact_match", "threshold": 2})
    assert "threshold" in message


def test_non_text_output_is_error() -> None:
    score = judge("exact_match", None)
    assert score.status == "error"
    assert score.value is None
    assert "not text" in score.reason


# exact_match


def test_exact_match_ignores_edges_and_runs() -> None:
    score = judge("exact_match", "  Paris \n")
    assert score.status == "ok"
    assert score.value == 1.0
    assert score.passed is True


def test_exact_match_normalizes_inner_whitespace() -> None:
    case = Case("k", expected="New York")
    assert judge("exact_match", "New \t\n York", case).value == 1.0
    spec = {"kind": "exact_match", "normalize_whitespace": False}
    assert judge(spec, "New \t\n York", case).value == 0.0


def test_exact_match_strip_off_keeps_edges() -> None:
    spec = {"kind": "exact_match", "strip": False, "normalize_whitespace": False}
    assert judge(spec, " Paris").value == 0.0
    assert judge(spec, "Paris").value == 1.0


def test_exact_match_case_sensitive_by_default() -> None:
    score = judge("exact_match", "paris")
    assert score.value == 0.0
    assert score.passed is False
    assert "'Paris'" in score.reason
    assert "'paris'" in score.reason
    assert "character 0" in score.reason


def test_exact_match_ignore_case_casefolds() -> None:
    case = Case("street", expected="Straße")
    spec = {"kind": "exact_match", "ignore_case": True}
    assert judge(spec, "STRASSE", case).value == 1.0
    assert judge("exact_match", "STRASSE", case).value == 0.0


def test_exact_match_composed_equals_decomposed() -> None:
    case = Case("k", expected=COMPOSED)
    assert judge("exact_match", DECOMPOSED, case).value == 1.0


def test_exact_match_empty_output() -> None:
    score = judge("exact_match", "")
    assert score.status == "ok"
    assert score.value == 0.0
    assert "expected 'Paris'" in score.reason
    assert "empty" in score.reason


def test_exact_match_whitespace_only_output() -> None:
    score = judge("exact_match", " \n\t ")
    assert score.value == 0.0
    assert "only whitespace" in score.reason


def test_exact_match_value_overrides_expected() -> None:
    spec = {"kind": "exact_match", "value": "Lyon"}
    assert judge(spec, "Lyon").value == 1.0
    assert judge(spec, "Paris").value == 0.0
    assert judge(spec, "Lyon", NO_EXPECTED).value == 1.0


def test_exact_match_missing_expected_is_error() -> None:
    score = judge("exact_match", "Paris", NO_EXPECTED)
    assert score.status == "error"
    assert score.value is None
    assert score.passed is None
    assert "open-ended" in score.reason


def test_exact_match_long_output_reason_is_short() -> None:
    expected = "word " * 1000
    output = expected[:3000] + "DIFFERENT" + expected[3009:]
    score = judge("exact_match", output, Case("k", expected=expected))
    assert score.value == 0.0
    assert "DIFFERENT" in score.reason
    assert len(score.reason) < 400
    assert score.details["first_difference"] == 3000


def test_exact_match_rejects_bad_settings() -> None:
    assert "ignore_case" in config_error({"kind": "exact_match", "ignore_case": "y"})
    assert "value" in config_error({"kind": "exact_match", "value": 3})


# contains


def test_contains_expected_by_default() -> None:
    score = judge("contains", "The capital is PARIS.")
    assert score.value == 1.0
    assert score.passed is True


def test_contains_case_sensitive_when_asked() -> None:
    spec = {"kind": "contains", "ignore_case": False}
    score = judge(spec, "The capital is PARIS.")
    assert score.value == 0.0
    assert "'Paris'" in score.reason


def test_contains_all_scores_share_found() -> None:
    spec = {"kind": "contains", "value": ["refund", "30 days", "receipt"]}
    score = judge(spec, "You get a refund within 30 days.")
    assert score.value == pytest.approx(2 / 3)
    assert score.passed is False
    assert "2 of 3" in score.reason
    assert "'receipt'" in score.reason
    assert score.details["missing"] == ["receipt"]


def test_contains_all_passes_lower_threshold() -> None:
    spec = {
        "kind": "contains",
        "value": ["refund", "30 days", "receipt"],
        "threshold": 0.6,
    }
    assert judge(spec, "You get a refund within 30 days.").passed is True


def test_contains_any_mode() -> None:
    spec = {"kind": "contains", "value": ["yes", "correct"], "mode": "any"}
    found = judge(spec, "That is correct.")
    assert found.value == 1.0
    assert "'correct'" in found.reason
    none = judge(spec, "No.")
    assert none.value == 0.0
    assert "none" in none.reason


def test_contains_single_value_string() -> None:
    spec = {"kind": "contains", "value": "Paris"}
    assert judge(spec, "paris!", NO_EXPECTED).value == 1.0


def test_contains_casefold_and_nfc() -> None:
    spec = {"kind": "contains", "value": ["Straße", COMPOSED]}
    assert judge(spec, f"STRASSE and {DECOMPOSED.upper()}").value == 1.0


def test_contains_empty_output() -> None:
    score = judge("contains", "")
    assert score.status == "ok"
    assert score.value == 0.0
    assert "empty" in score.reason


def test_contains_missing_or_empty_expected() -> None:
    missing = judge("contains", "Paris", NO_EXPECTED)
    assert missing.status == "error"
    empty = judge("contains", "Paris", Case("k", expected="  "))
    assert empty.status == "error"
    assert "empty expected" in empty.reason


def test_contains_rejects_bad_settings() -> None:
    assert "mode" in config_error({"kind": "contains", "value": "a", "mode": "some"})
    assert "value" in config_error({"kind": "contains", "value": []})
    assert "value" in config_error({"kind": "contains", "value": ["a", ""]})
    assert "value" in config_error({"kind": "contains", "value": 5})


# not_contains


def test_not_contains_absent() -> None:
    spec = {"kind": "not_contains", "value": ["password", "secret"]}
    score = judge(spec, "Here is the summary.")
    assert score.value == 1.0
    assert score.passed is True


def test_not_contains_share_absent() -> None:
    spec = {"kind": "not_contains", "value": ["password", "secret"]}
    score = judge(spec, "The PASSWORD is hunter2.")
    assert score.value == 0.5
    assert score.passed is False
    assert "'password'" in score.reason
    assert "character 4" in score.reason


def test_not_contains_empty_output_passes() -> None:
    spec = {"kind": "not_contains", "value": "secret"}
    assert judge(spec, "").value == 1.0


def test_not_contains_requires_value() -> None:
    message = config_error({"kind": "not_contains"})
    assert "not_contains" in message
    assert "value" in message


# regex


def test_regex_search_and_reason() -> None:
    spec = {"kind": "regex", "pattern": r"\d{3}-\d{4}"}
    found = judge(spec, "Call 555-1234 today")
    assert found.value == 1.0
    assert "'555-1234'" in found.reason
    missing = judge(spec, "Call us today")
    assert missing.value == 0.0
    assert "Call us today" in missing.reason
    assert r"'\d{3}-\d{4}'" in missing.reason


def test_regex_full_match() -> None:
    spec = {"kind": "regex", "pattern": r"\d+", "full_match": True}
    assert judge(spec, "42").value == 1.0
    assert judge(spec, "42 apples").value == 0.0


def test_regex_negate() -> None:
    spec = {"kind": "regex", "pattern": r"(?i)as an ai", "negate": True}
    assert judge(spec, "Paris.").value == 1.0
    matched = judge(spec, "As an AI, I cannot.")
    assert matched.value == 0.0
    assert "'As an AI'" in matched.reason


def test_regex_flags() -> None:
    ignore = {"kind": "regex", "pattern": "paris", "flags": ["IGNORECASE"]}
    assert judge(ignore, "PARIS").value == 1.0
    multiline = {"kind": "regex", "pattern": "^b$", "flags": ["MULTILINE"]}
    assert judge(multiline, "a\nb\nc").value == 1.0
    dotall = {"kind": "regex", "pattern": "a.b", "flags": ["DOTALL"]}
    assert judge(dotall, "a\nb").value == 1.0
    plain = {"kind": "regex", "pattern": "a.b"}
    assert judge(plain, "a\nb").value == 0.0


def test_regex_matches_across_unicode_forms() -> None:
    spec = {"kind": "regex", "pattern": f"^{COMPOSED}$"}
    assert judge(spec, DECOMPOSED).value == 1.0


def test_regex_empty_output() -> None:
    spec = {"kind": "regex", "pattern": r"\w+"}
    score = judge(spec, "")
    assert score.status == "ok"
    assert score.value == 0.0
    assert "empty" in score.reason


def test_regex_invalid_pattern_rejected() -> None:
    message = config_error({"kind": "regex", "pattern": "([a-z"})
    assert "regex" in message
    assert "pattern" in message


def test_regex_bad_flags_rejected() -> None:
    assert "VERBOSE" in config_error(
        {"kind": "regex", "pattern": "a", "flags": ["VERBOSE"]}
    )
    assert "flags" in config_error({"kind": "regex", "pattern": "a", "flags": "I"})
    assert "pattern" in config_error({"kind": "regex"})


# json_valid


def test_json_valid_object_and_array() -> None:
    assert judge("json_valid", '{"a": [1, 2.5, null, true]}').value == 1.0
    assert judge("json_valid", " [1, 2] \n").value == 1.0
    assert judge("json_valid", '"NaN"').value == 1.0


def test_json_valid_rejects_prose() -> None:
    score = judge("json_valid", "Sure! Here it is.")
    assert score.status == "ok"
    assert score.value == 0.0
    assert "not valid JSON" in score.reason
    assert "line 1, column 1" in score.reason
    assert score.details["position"] == 0


def test_json_valid_trailing_text() -> None:
    score = judge("json_valid", '{"a": 1} trailing')
    assert score.value == 0.0
    assert "Extra data" in score.reason
    assert "character 9" in score.reason
    assert score.details["column"] == 10


def test_json_valid_rejects_nan_and_infinity() -> None:
    nan = judge("json_valid", '{"a": [1, NaN]}')
    assert nan.value == 0.0
    assert "NaN" in nan.reason
    assert nan.details["position"] == 10
    infinity = judge("json_valid", '{"s": "NaN", "b": -Infinity}')
    assert infinity.value == 0.0
    assert "-Infinity" in infinity.reason
    assert infinity.details["position"] == 18


def test_json_valid_empty_and_whitespace() -> None:
    empty = judge("json_valid", "")
    assert empty.status == "ok"
    assert empty.value == 0.0
    assert "empty" in empty.reason
    blank = judge("json_valid", "  \n")
    assert blank.value == 0.0
    assert "only whitespace" in blank.reason


def test_json_valid_deep_nesting_fails_cleanly() -> None:
    score = judge("json_valid", "[" * 100_000 + "]" * 100_000)
    assert score.status == "ok"
    assert score.value == 0.0


def test_json_valid_extract_fenced_block() -> None:
    output = 'Here you go:\n```json\n{"a": 1}\n```\nAnything else?'
    assert judge("json_valid", output).value == 0.0
    score = judge({"kind": "json_valid", "extract": True}, output)
    assert score.value == 1.0
    assert "```json block" in score.reason


def test_json_valid_extract_first_span() -> None:
    spec = {"kind": "json_valid", "extract": True}
    score = judge(spec, 'I think [my answer] is {"a": [1]} and that is all.')
    assert score.value == 1.0
    assert "character 23" in score.reason


def test_json_valid_extract_reports_positions() -> None:
    spec = {"kind": "json_valid", "extract": True}
    broken = judge(spec, 'Result:\n```json\n{"a": NaN}\n```')
    assert broken.value == 0.0
    assert broken.details["line"] == 3
    assert broken.details["column"] == 7
    nothing = judge(spec, "no structured data here")
    assert nothing.value == 0.0
    assert "no JSON object or array" in nothing.reason


# json_schema

ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["price"],
                "properties": {"price": {"type": "number"}},
            },
        },
        "unit price": {"type": "number"},
    },
}


def test_json_schema_valid_order() -> None:
    spec = {"kind": "json_schema", "schema": ORDER_SCHEMA}
    score = judge(spec, '{"items": [{"price": 1}, {"price": 2.5}]}')
    assert score.value == 1.0
    assert score.passed is True


def test_json_schema_nested_failure_path() -> None:
    spec = {"kind": "json_schema", "schema": ORDER_SCHEMA}
    score = judge(spec, '{"items": [{"price": 1}, {"price": 2}, {"price": "9"}]}')
    assert score.value == 0.0
    assert "$.items[2].price" in score.reason
    assert "is not of type 'number'" in score.reason
    assert score.details["errors"][0]["path"] == "$.items[2].price"
    assert score.details["error_count"] == 1


def test_json_schema_lists_every_error() -> None:
    schema = {**ORDER_SCHEMA, "required": ["items", "customer"]}
    spec = {"kind": "json_schema", "schema": schema}
    score = judge(spec, '{"items": [{"price": 1}, {"price": "x"}]}')
    assert score.value == 0.0
    # jsonschema's best_match ranks the error at the top level first.
    assert "at $: 'customer' is a required property" in score.reason
    assert "2 errors" in score.reason
    paths = [error["path"] for error in score.details["errors"]]
    assert paths == ["$", "$.items[1].price"]


def test_json_schema_quotes_odd_keys() -> None:
    spec = {"kind": "json_schema", "schema": ORDER_SCHEMA}
    score = judge(spec, '{"items": [], "unit price": "free"}')
    assert '$["unit price"]' in score.reason


def test_json_schema_caps_error_details() -> None:
    spec = {"kind": "json_schema", "schema": ORDER_SCHEMA}
    output = '{"items": [' + ", ".join(['{"price": "x"}'] * 50) + "]}"
    score = judge(spec, output)
    assert score.value == 0.0
    assert score.details["error_count"] == 50
    assert len(score.details["errors"]) == 20
    assert "50 errors" in score.reason


def test_json_schema_non_json_output() -> None:
    spec = {"kind": "json_schema", "schema": ORDER_SCHEMA}
    prose = judge(spec, "The order has two items.")
    assert prose.status == "ok"
    assert prose.value == 0.0
    assert "not valid JSON" in prose.reason
    nan = judge(spec, '{"items": [{"price": NaN}]}')
    assert nan.value == 0.0
    assert "NaN" in nan.reason


def test_json_schema_extract() -> None:
    spec = {"kind": "json_schema", "schema": ORDER_SCHEMA, "extract": True}
    score = judge(spec, '```json\n{"items": []}\n```')
    assert score.value == 1.0


def test_json_schema_honours_declared_draft() -> None:
    # Draft 4 reads exclusiveMaximum as a boolean, which 2020-12 rejects.
    schema = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "maximum": 5,
        "exclusiveMaximum": True,
    }
    spec = {"kind": "json_schema", "schema": schema}
    assert judge(spec, "5").value == 0.0
    assert judge(spec, "4").value == 1.0
    undeclared = {key: value for key, value in schema.items() if key != "$schema"}
    message = config_error({"kind": "json_schema", "schema": undeclared})
    assert "exclusiveMaximum" in message


def test_json_schema_unresolvable_ref_is_error() -> None:
    spec = {"kind": "json_schema", "schema": {"$ref": "urn:example:missing"}}
    score = judge(spec, "{}")
    assert score.status == "error"
    assert score.value is None
    assert "$ref" in score.reason


def test_json_schema_rejects_invalid_schemas() -> None:
    message = config_error({"kind": "json_schema", "schema": {"type": "nonsense"}})
    assert "json_schema" in message
    assert "schema.type" in message
    assert "schema" in config_error({"kind": "json_schema"})
    assert "schema" in config_error({"kind": "json_schema", "schema": "object"})
    unknown = {"$schema": "https://example.com/my-draft"}
    assert "my-draft" in config_error({"kind": "json_schema", "schema": unknown})


# length


def test_length_chars() -> None:
    spec = {"kind": "length", "min": 3, "max": 5}
    within = judge(spec, "Paris")
    assert within.value == 1.0
    assert "5 characters" in within.reason
    short = judge(spec, "Hi")
    assert short.value == 0.0
    assert "minimum of 3" in short.reason
    long = judge(spec, "Bordeaux")
    assert long.value == 0.0
    assert "8 characters" in long.reason
    assert "maximum of 5" in long.reason


def test_length_counts_composed_characters() -> None:
    spec = {"kind": "length", "max": 4}
    score = judge(spec, DECOMPOSED)
    assert score.value == 1.0
    assert score.details["length"] == 4


def test_length_words_with_unicode() -> None:
    spec = {"kind": "length", "min": 3, "max": 3, "unit": "words"}
    score = judge(spec, "naïve\u00a0café  résumé\n")
    assert score.value == 1.0
    assert "3 words" in score.reason
    assert judge(spec, "Straße und Weg und").value == 0.0


def test_length_empty_and_whitespace() -> None:
    spec = {"kind": "length", "min": 1}
    empty = judge(spec, "")
    assert empty.value == 0.0
    assert "0 characters" in empty.reason
    assert judge(spec, "   \n").details["length"] == 0


def test_length_rejects_bad_settings() -> None:
    assert "min" in config_error({"kind": "length"})
    assert "greater than max" in config_error({"kind": "length", "min": 5, "max": 2})
    assert "unit" in config_error({"kind": "length", "max": 5, "unit": "tokens"})
    assert "max" in config_error({"kind": "length", "max": -1})
    assert "min" in config_error({"kind": "length", "min": 1.5})


# latency and cost


def test_latency_within_and_over() -> None:
    spec = {"kind": "latency", "max_ms": 1000}
    within = judge(spec, "ok", latency_ms=999.5)
    assert within.value == 1.0
    over = judge(spec, "ok", latency_ms=1500)
    assert over.value == 0.0
    assert "1500.0 ms" in over.reason
    assert "1000 ms" in over.reason


def test_latency_missing_is_error() -> None:
    spec = {"kind": "latency", "max_ms": 1000}
    missing = judge(spec, "ok")
    assert missing.status == "error"
    assert missing.value is None
    assert "latency" in missing.reason
    assert judge(spec, "ok", latency_ms=float("nan")).status == "error"


def test_cost_within_and_over() -> None:
    spec = {"kind": "cost", "max_usd": 0.01}
    assert judge(spec, "ok", cost_usd=0.0).value == 1.0
    assert judge(spec, "ok", cost_usd=0.01).value == 1.0
    over = judge(spec, "ok", cost_usd=0.02)
    assert over.value == 0.0
    assert "$0.02" in over.reason


def test_cost_missing_is_error() -> None:
    score = judge({"kind": "cost", "max_usd": 0.01}, "ok")
    assert score.status == "error"
    assert score.value is None
    assert "cost" in score.reason


def test_latency_and_cost_require_limits() -> None:
    assert "max_ms" in config_error({"kind": "latency"})
    assert "max_ms" in config_error({"kind": "latency", "max_ms": "fast"})
    assert "max_usd" in config_error({"kind": "cost"})
    assert "max_usd" in config_error({"kind": "cost", "max_usd": float("inf")})


def test_every_kind_handles_empty_output() -> None:
    specs: list[dict[str, Any]] = [
        {"kind": "exact_match"},
        {"kind": "contains"},
        {"kind": "not_contains", "value": "x"},
        {"kind": "regex", "pattern": "x"},
        {"kind": "json_valid"},
        {"kind": "json_schema", "schema": ORDER_SCHEMA},
        {"kind": "length", "max": 3},
    ]
    for spec in specs:
        score = judge(spec, "")
        assert score.status == "ok", spec
        assert score.value in (0.0, 1.0), spec
        assert score.reason, spec


def test_evaluator_reused_across_samples() -> None:
    evaluator: Evaluator = build({"kind": "regex", "pattern": "a+"})
    samples = [Sample(CASE, text) for text in ("a", "b", "aa")]

    async def run_all() -> list[Score]:
        return [await evaluator.evaluate(sample, Services()) for sample in samples]

    values = [score.value for score in asyncio.run(run_all())]
    assert values == [1.0, 0.0, 1.0]
