"""JUnit XML reports of eval runs, validated against the Ant JUnit schema."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import xmlschema

from keelway.evals.base import Score
from keelway.evals.junit import junit_xml, write_junit, xml_text
from keelway.evals.results import CaseResult

SCHEMA = xmlschema.XMLSchema(str(Path(__file__).parent / "fixtures" / "junit.xsd"))
TIMESTAMP = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def mixed_run() -> list[CaseResult]:
    """Return one passing, one failing and two errored results."""
    return [
        CaseResult(
            "capital",
            0,
            "ok",
            "Paris is the capital of France.",
            latency_ms=250.0,
            scores=[
                Score.ok("contains", 1.0, 0.5, "output contains 'Paris'"),
                Score.ok("judge", 0.9, 0.7, "answer is correct"),
            ],
        ),
        CaseResult(
            "refund",
            0,
            "ok",
            "We do not offer refunds.",
            latency_ms=500.0,
            must_pass=True,
            scores=[
                Score.ok("contains", 0.0, 0.5, "output lacks '30 days'"),
                Score.ok("judge", 0.2, 0.7, "contradicts the refund policy"),
            ],
        ),
        CaseResult("timeout", 0, "error", None, error="upstream timed out after 30 s"),
        CaseResult(
            "no-expected",
            0,
            "ok",
            "Bonjour",
            latency_ms=125.0,
            scores=[
                Score.error("contains", "case has no expected output"),
                Score.ok("judge", 0.8, 0.7, "polite greeting"),
            ],
        ),
    ]


def suites(document: str) -> dict[str, ET.Element]:
    root = ET.fromstring(document)
    return {suite.get("name", ""): suite for suite in root.findall("testsuite")}


def find_case(suite: ET.Element, name: str) -> ET.Element:
    [element] = [case for case in suite.findall("testcase") if case.get("name") == name]
    return element


def test_junit_mixed_run_validates() -> None:
    document = junit_xml("qa", mixed_run(), timestamp=TIMESTAMP, hostname="ci-1")

    SCHEMA.validate(document)
    root = ET.fromstring(document)
    assert root.tag == "testsuites"
    assert [suite.get("name") for suite in root.findall("testsuite")] == [
        "qa.contains",
        "qa.judge",
    ]


def test_junit_suite_attributes() -> None:
    document = junit_xml("qa", mixed_run(), timestamp=TIMESTAMP, hostname="ci-1")
    contains = suites(document)["qa.contains"]

    assert contains.get("tests") == "4"
    # refund failed, while timeout (model call) and no-expected (score) errored.
    assert contains.get("failures") == "1"
    assert contains.get("errors") == "2"
    assert contains.get("skipped") == "0"
    # 0.250 + 0.500 + 0 + 0.125 seconds.
    assert contains.get("time") == "0.875"
    assert contains.get("timestamp") == "2025-03-04T05:06:07"
    assert contains.get("hostname") == "ci-1"
    assert contains.get("package") == "qa"
    assert contains.get("id") == "0"

    judge = suites(document)["qa.judge"]
    assert judge.get("failures") == "1"
    assert judge.get("errors") == "1"
    assert judge.get("id") == "1"


def test_junit_failure_carries_reason() -> None:
    document = junit_xml(
        "qa",
        mixed_run(),
        thresholds={"contains": 0.5},
        timestamp=TIMESTAMP,
        hostname="ci-1",
    )
    refund = find_case(suites(document)["qa.contains"], "refund")

    [failure] = list(refund)
    assert failure.tag == "failure"
    assert failure.get("type") == "threshold"
    assert failure.get("message") == "output lacks '30 days'"
    assert failure.text is not None
    assert "contains scored 0.000, below threshold 0.5" in failure.text
    assert "output: We do not offer refunds." in failure.text
    assert refund.get("classname") == "qa.contains"
    assert refund.get("time") == "0.500"


def test_junit_errors_and_passes() -> None:
    document = junit_xml("qa", mixed_run(), timestamp=TIMESTAMP, hostname="ci-1")
    contains = suites(document)["qa.contains"]

    [model_error] = list(find_case(contains, "timeout"))
    assert model_error.tag == "error"
    assert model_error.get("type") == "model_error"
    assert model_error.get("message") == "upstream timed out after 30 s"

    [score_error] = list(find_case(contains, "no-expected"))
    assert score_error.tag == "error"
    assert score_error.get("type") == "evaluator_error"
    assert score_error.get("message") == "case has no expected output"

    assert list(find_case(contains, "capital")) == []


def test_junit_outputs_in_system_out() -> None:
    document = junit_xml("qa", mixed_run(), timestamp=TIMESTAMP, hostname="ci-1")
    contains = suites(document)["qa.contains"]

    system_out = contains.find("system-out")
    assert system_out is not None
    assert system_out.text is not None
    assert "--- capital ---\nParis is the capital of France.\n" in system_out.text
    assert "--- timeout ---" not in system_out.text
    properties = {
        item.get("name"): item.get("value") for item in contains.iter("property")
    }
    assert properties == {"cases": "4", "trials": "1", "evaluator": "contains"}


def test_junit_control_characters_validate() -> None:
    output = "colour \x1b[31mred\x1b[0m, bell \x07, nul \x00, end \ufffe <&>]]>"
    results = [
        CaseResult(
            "ctrl\x01key",
            0,
            "ok",
            output,
            scores=[Score.ok("contains", 0.0, 0.5, "reason with \x0b tab")],
        )
    ]

    document = junit_xml("qa", results, timestamp=TIMESTAMP, hostname="ci-1")

    SCHEMA.validate(document)
    case = find_case(suites(document)["qa.contains"], "ctrl\\x01key")
    [failure] = list(case)
    assert failure.get("message") == "reason with \\x0b tab"
    assert failure.text is not None
    assert "colour \\x1b[31mred\\x1b[0m, bell \\x07, nul \\x00" in failure.text
    assert "end \\ufffe <&>]]>" in failure.text


def test_xml_text_keeps_allowed_characters() -> None:
    text = "tab\tnewline\ncr\r emoji \U0001f600 accent é"

    assert xml_text(text) == text
    assert xml_text("\ud800") == "\\ud800"


def test_junit_trials_in_names() -> None:
    results = [
        CaseResult(
            "capital",
            trial,
            "ok",
            "Paris",
            scores=[Score.ok("contains", 1.0, 0.5, "found")],
        )
        for trial in (0, 1)
    ]

    document = junit_xml("qa", results, timestamp=TIMESTAMP, hostname="ci-1")

    SCHEMA.validate(document)
    names = [case.get("name") for case in ET.fromstring(document).iter("testcase")]
    assert names == ["capital[trial 0]", "capital[trial 1]"]


def test_junit_missing_score_is_skipped() -> None:
    results = [
        CaseResult(
            "capital",
            0,
            "ok",
            "Paris",
            scores=[Score.ok("contains", 1.0, 0.5, "found")],
        )
    ]

    document = junit_xml(
        "qa",
        results,
        evaluators=["contains", "judge"],
        timestamp=TIMESTAMP,
        hostname="ci-1",
    )

    SCHEMA.validate(document)
    judge = suites(document)["qa.judge"]
    assert judge.get("skipped") == "1"
    [skipped] = list(find_case(judge, "capital"))
    assert skipped.tag == "skipped"


def test_junit_without_evaluators() -> None:
    results = [CaseResult("timeout", 0, "error", None, error="upstream timed out")]

    document = junit_xml("qa", results, timestamp=TIMESTAMP, hostname="ci-1")

    SCHEMA.validate(document)
    [suite] = ET.fromstring(document).findall("testsuite")
    assert suite.get("name") == "qa"
    assert suite.get("errors") == "1"


def test_junit_timestamp_in_utc() -> None:
    local = datetime(2025, 3, 4, 7, 6, 7, 999, tzinfo=timezone(timedelta(hours=2)))

    document = junit_xml("qa", mixed_run(), timestamp=local, hostname="ci-1")

    assert suites(document)["qa.contains"].get("timestamp") == "2025-03-04T05:06:07"


def test_junit_defaults_validate() -> None:
    document = junit_xml("qa", mixed_run())

    SCHEMA.validate(document)


def test_junit_rejects_empty_suite_name() -> None:
    with pytest.raises(ValueError, match="suite_name is empty"):
        junit_xml(" ", mixed_run())


def test_write_junit(tmp_path: Path) -> None:
    path = write_junit(
        tmp_path / "report.xml",
        "qa",
        mixed_run(),
        timestamp=TIMESTAMP,
        hostname="ci-1",
    )

    assert path == tmp_path / "report.xml"
    SCHEMA.validate(str(path))
    assert path.read_text(encoding="utf-8").startswith(
        '<?xml version="1.0" encoding="UTF-8"?>'
    )


def test_schema_rejects_invalid_documents() -> None:
    valid = junit_xml("qa", mixed_run(), timestamp=TIMESTAMP, hostname="ci-1")
    no_hostname = valid.replace(' hostname="ci-1"', "", 1)
    zoned = valid.replace("2025-03-04T05:06:07", "2025-03-04T05:06:07Z", 1)
    two_outcomes = valid.replace(
        '<error type="model_error"',
        '<failure type="threshold" /><error type="model_error"',
        1,
    )

    assert SCHEMA.is_valid(valid)
    assert not SCHEMA.is_valid(no_hostname)
    assert not SCHEMA.is_valid(zoned)
    assert not SCHEMA.is_valid(two_outcomes)
