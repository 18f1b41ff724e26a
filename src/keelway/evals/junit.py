"""JUnit XML reports of an eval run, for CI test reporters.

The output follows the Apache Ant JUnit report format, as the windyroad
``JUnit.xsd`` describes the ``junitreport`` aggregate. The root is
``<testsuites>`` with one ``<testsuite>`` per evaluator. Each suite carries
``package`` and ``id`` and contains a ``<properties>`` block, its test cases,
then ``<system-out>`` and ``<system-err>``. The Jenkins xunit ``junit-10.xsd``
accepts a superset of this format.

The Ant format has no ``<system-out>`` inside a ``<testcase>``, so model
outputs go to the suite's ``<system-out>``, one block per result, and into
the text of each ``<failure>`` and ``<error>``.
"""

from __future__ import annotations

import math
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from keelway.evals.results import CaseResult

# Maximum characters of a model output kept in the report, per result.
MAX_OUTPUT_CHARS = 1000

# Maximum characters of a failure or error message attribute.
MAX_MESSAGE_CHARS = 1000

# Characters XML 1.0 does not allow anywhere in a document: the C0 controls
# other than tab, newline and carriage return, lone surrogates, U+FFFE and
# U+FFFF (XML 1.0, section 2.2, production [2] Char).
_INVALID_XML_CHARS = re.compile(
    "[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def xml_text(text: str) -> str:
    """Return ``text`` with every character XML 1.0 forbids written as an escape.

    U+001B becomes the six characters ``\\x1b`` and U+FFFE becomes ``\\ufffe``,
    so the report shows where the model output had them.
    """
    return _INVALID_XML_CHARS.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def junit_xml(
    suite_name: str,
    results: Sequence[CaseResult],
    *,
    evaluators: Sequence[str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    timestamp: datetime | None = None,
    hostname: str | None = None,
) -> str:
    """Render ``results`` as a JUnit XML document, one test suite per evaluator.

    ``evaluators`` defaults to the evaluators that scored any result, in order
    of first appearance. A run without any evaluator gives one suite named
    ``suite_name`` whose cases fail only on a failed model call.
    ``thresholds`` adds each evaluator's threshold to its failure texts.
    ``timestamp`` defaults to now and is written in UTC without a zone, as
    the format requires. ``hostname`` defaults to this machine's name.

    Raises:
        ValueError: ``suite_name`` is empty.
    """
    if not suite_name.strip():
        raise ValueError("suite_name is empty. Pass the name of the eval run")
    if evaluators is None:
        evaluators = _scored_evaluators(results)
    context = _SuiteContext(
        timestamp=_format_timestamp(timestamp),
        hostname=xml_text(hostname or socket.gethostname() or "localhost"),
        thresholds=thresholds or {},
        with_trial=any(result.trial != 0 for result in results),
        cases=len({result.case_key for result in results}),
        trials=len({result.trial for result in results}),
    )

    root = ET.Element("testsuites")
    names: Sequence[str | None] = list(dict.fromkeys(evaluators)) or [None]
    for index, name in enumerate(names):
        root.append(_suite(suite_name, name, index, results, context))
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def write_junit(
    path: str | Path,
    suite_name: str,
    results: Sequence[CaseResult],
    *,
    evaluators: Sequence[str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    timestamp: datetime | None = None,
    hostname: str | None = None,
) -> Path:
    """Write the JUnit XML of ``results`` to ``path`` as UTF-8 and return the path."""
    document = junit_xml(
        suite_name,
        results,
        evaluators=evaluators,
        thresholds=thresholds,
        timestamp=timestamp,
        hostname=hostname,
    )
    target = Path(path)
    target.write_text(document, encoding="utf-8")
    return target


@dataclass(frozen=True, slots=True)
class _SuiteContext:
    """Settings shared by every suite of one document."""

    timestamp: str
    hostname: str
    thresholds: Mapping[str, float]
    with_trial: bool
    cases: int
    trials: int


def _scored_evaluators(results: Sequence[CaseResult]) -> list[str]:
    names: dict[str, None] = {}
    for result in results:
        for score in result.scores:
            names.setdefault(score.evaluator, None)
    return list(names)


def _format_timestamp(value: datetime | None) -> str:
    """Return ``value`` as ``YYYY-MM-DDTHH:MM:SS`` in UTC, the format's pattern.

    A naive ``value`` is taken to be UTC already.
    """
    if value is None:
        value = datetime.now(UTC)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="seconds")


def _seconds(latency_ms: float | None) -> float:
    if latency_ms is None or not math.isfinite(latency_ms) or latency_ms < 0:
        return 0.0
    return latency_ms / 1000.0


def _suite(
    suite_name: str,
    evaluator: str | None,
    index: int,
    results: Sequence[CaseResult],
    context: _SuiteContext,
) -> ET.Element:
    full_name = suite_name if evaluator is None else f"{suite_name}.{evaluator}"
    full_name = xml_text(full_name)
    suite = ET.Element("testsuite")

    properties = ET.SubElement(suite, "properties")
    values = {"cases": str(context.cases), "trials": str(context.trials)}
    if evaluator is not None:
        values["evaluator"] = xml_text(evaluator)
        threshold = context.thresholds.get(evaluator)
        if threshold is not None:
            values["threshold"] = f"{threshold:g}"
    for name, value in values.items():
        ET.SubElement(properties, "property", name=name, value=value)

    counts = {"failure": 0, "error": 0, "skipped": 0}
    total_seconds = 0.0
    outputs: list[str] = []
    for result in results:
        testcase = _testcase(full_name, evaluator, result, context)
        suite.append(testcase)
        for child in testcase:
            counts[child.tag] += 1
        total_seconds += _seconds(result.latency_ms)
        if result.output is not None:
            label = _testcase_name(result, context.with_trial)
            outputs.append(f"--- {label} ---\n{_truncate(result.output)}\n")

    ET.SubElement(suite, "system-out").text = xml_text("".join(outputs))
    ET.SubElement(suite, "system-err")

    suite.attrib.update(
        {
            "name": full_name,
            "package": xml_text(suite_name),
            "id": str(index),
            "timestamp": context.timestamp,
            "hostname": context.hostname,
            "tests": str(len(results)),
            "failures": str(counts["failure"]),
            "errors": str(counts["error"]),
            "skipped": str(counts["skipped"]),
            "time": f"{total_seconds:.3f}",
        }
    )
    return suite


def _testcase(
    classname: str,
    evaluator: str | None,
    result: CaseResult,
    context: _SuiteContext,
) -> ET.Element:
    testcase = ET.Element(
        "testcase",
        name=_testcase_name(result, context.with_trial),
        classname=classname,
        time=f"{_seconds(result.latency_ms):.3f}",
    )
    output = f"output: {_truncate(result.output)}" if result.output else "no output"

    if result.status == "error":
        message = result.error or "model call failed"
        _outcome(
            testcase, "error", "model_error", message, f"model call failed: {message}"
        )
        return testcase
    if evaluator is None:
        return testcase

    score = result.score(evaluator)
    if score is None:
        skipped = ET.SubElement(testcase, "skipped")
        skipped.set("message", xml_text(f"{evaluator} did not score this case"))
    elif score.status == "error":
        text = f"{evaluator} could not score this case: {score.reason}\n{output}"
        _outcome(testcase, "error", "evaluator_error", score.reason, text)
    elif not score.passed:
        threshold = context.thresholds.get(evaluator)
        value = "no value" if score.value is None else f"{score.value:.3f}"
        limit = "its threshold" if threshold is None else f"threshold {threshold:g}"
        text = f"{evaluator} scored {value}, below {limit}\n"
        text += f"reason: {score.reason}\n{output}"
        _outcome(testcase, "failure", "threshold", score.reason, text)
    return testcase


def _outcome(
    testcase: ET.Element, tag: str, kind: str, message: str, text: str
) -> None:
    element = ET.SubElement(testcase, tag, type=kind)
    element.set("message", xml_text(_truncate(message, MAX_MESSAGE_CHARS)))
    element.text = xml_text(text)


def _testcase_name(result: CaseResult, with_trial: bool) -> str:
    name = f"{result.case_key}[trial {result.trial}]" if with_trial else result.case_key
    return xml_text(name)


def _truncate(text: str | None, limit: int = MAX_OUTPUT_CHARS) -> str:
    if text is None:
        return ""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"
