"""Markdown reports of eval runs and gate decisions."""

from __future__ import annotations

import re

from keelway.evals.base import Score
from keelway.evals.gate import GatePolicy, decide
from keelway.evals.report import markdown_gate, markdown_run, table_cell
from keelway.evals.results import CaseResult, summarize

# A pipe that is not escaped with a backslash: a Markdown table column border.
BORDER = re.compile(r"(?<!\\)\|")


def scored(
    key: str, trial: int = 0, output: str | None = None, **values: float
) -> CaseResult:
    scores = [
        Score.ok(name, value, 0.5, f"{name} gave {value} on {key}")
        for name, value in values.items()
    ]
    return CaseResult(key, trial, "ok", output or f"output of {key}", scores=scores)


def table_rows(markdown: str, header: str) -> list[str]:
    """Return the body rows of the table whose header row starts with ``header``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_table_cell_escapes_and_truncates() -> None:
    assert table_cell("a | b") == "a \\| b"
    assert table_cell("C:\\path") == "C:\\\\path"
    assert table_cell("<script>x</script>") == "&lt;script&gt;x&lt;/script&gt;"
    assert table_cell("two\nlines") == "two lines"
    assert table_cell(None) == ""
    long = table_cell("x" * 500)
    assert len(long) == 200
    assert long.endswith("…")


def test_markdown_run_sections() -> None:
    results = [
        scored("capital", 0, contains=1.0, judge=0.9),
        scored("capital", 1, contains=1.0, judge=0.7),
        scored("refund", 0, contains=0.0, judge=0.8),
        scored("refund", 1, contains=1.0, judge=0.8),
        CaseResult("timeout", 0, "error", None, error="upstream timed out"),
        CaseResult(
            "no-expected",
            1,
            "ok",
            "Paris",
            scores=[Score.error("contains", "case has no expected output")],
        ),
    ]
    summary = summarize(results, ["contains", "judge"], {"contains": 0.5})

    markdown = markdown_run("Nightly QA", summary, results)

    assert markdown.startswith("# Nightly QA\n")
    assert "- **Cases:** 4, **trials:** 2, **results:** 6" in markdown
    [contains, judge] = table_rows(markdown, "| Evaluator |")
    # Trial means: contains (1 + 0) / 2 = 0.5 and (1 + 1) / 2 = 1, stdev 0.354.
    assert contains.startswith("| contains | 0.750 ± 0.354 | 75.0% | 4 | 1 | 0.50 |")
    assert judge.startswith("| judge | 0.800 ± ")

    [failed] = table_rows(markdown, "| Case | Trial | Evaluator |")
    assert failed == (
        "| refund | 0 | contains | 0.000 | contains gave 0.0 on refund "
        "| output of refund |"
    )
    errored = table_rows(markdown, "| Case | Trial | Source |")
    assert errored == [
        "| timeout | 0 | model call | upstream timed out |",
        "| no-expected | 1 | contains | case has no expected output |",
    ]


def test_markdown_run_single_trial() -> None:
    results = [scored("a", contains=1.0), scored("b", contains=0.5)]
    summary = summarize(results, ["contains"])

    markdown = markdown_run("Run", summary, results)

    [row] = table_rows(markdown, "| Evaluator |")
    assert row.startswith("| contains | 0.750 | 100.0% |")
    assert "No failed cases." in markdown
    assert "No errored cases." in markdown


def test_markdown_run_escapes_long_output() -> None:
    output = "| col | col |\n" + "y" * 400
    results = [scored("key|with|pipes", 0, output=output, contains=0.0)]
    summary = summarize(results, ["contains"])

    markdown = markdown_run("Run", summary, results)

    [row] = table_rows(markdown, "| Case | Trial | Evaluator |")
    assert "key\\|with\\|pipes" in row
    assert "\\| col \\| col \\|" in row
    # Six cells: seven unescaped borders, whatever the output contained.
    assert len(BORDER.findall(row)) == 7
    assert "y" * 200 not in row
    assert "…" in row


def test_markdown_run_limits_rows() -> None:
    results = [scored(f"case-{i}", contains=0.0) for i in range(5)]
    summary = summarize(results, ["contains"])

    markdown = markdown_run("Run", summary, results, max_rows=2)

    assert len(table_rows(markdown, "| Case | Trial | Evaluator |")) == 2
    assert "3 more rows not shown." in markdown


def test_markdown_gate_lists_flips_and_reasons() -> None:
    baseline = [
        scored("capital", contains=1.0, judge=0.9),
        scored("refund", contains=1.0, judge=0.9),
        scored("greeting", contains=0.0, judge=0.9),
        scored("retired", contains=1.0, judge=0.9),
    ]
    candidate = [
        scored("capital", contains=1.0, judge=0.9),
        scored("refund", contains=0.0, judge=0.9),
        scored("greeting", contains=1.0, judge=0.9),
        scored("added", contains=1.0, judge=0.9),
    ]
    policy = GatePolicy(tolerances={"contains": 0.05})
    verdict = decide(candidate, baseline, ["contains", "judge"], policy)

    markdown = markdown_gate(verdict, "prompt v7", "prompt v6")

    # Baseline (1 + 1 + 0 + 1) / 4, candidate (1 + 0 + 1 + 1) / 4: no drop,
    # so the gate passes and still lists the flips.
    assert markdown.startswith("## Eval gate: PASSED\n")
    assert "Candidate prompt v7 against baseline prompt v6." in markdown
    flips = table_rows(markdown, "| Case | Evaluator | Change |")
    assert flips == [
        "| refund | contains | pass → fail | regressed | contains gave 0.0 on refund |",
        "| greeting | contains | fail → pass | fixed | contains gave 1.0 on greeting |",
    ]
    assert "Cases over all evaluators: 1 regressed (refund), 1 fixed (greeting)" in (
        markdown
    )
    assert "Only in the baseline (1): retired." in markdown
    assert "Only in the candidate (1): added." in markdown
    deltas = table_rows(markdown, "| Evaluator | Baseline mean |")
    assert deltas[0] == "| contains | 0.750 | 0.750 | +0.000 | 75.0% | 75.0% | 0 → 0 |"


def test_markdown_gate_failed_reasons() -> None:
    baseline = [scored("capital", contains=0.82)]
    candidate = [scored("capital", contains=0.41)]
    verdict = decide(
        candidate, baseline, ["contains"], GatePolicy(default_tolerance=0.05)
    )

    markdown = markdown_gate(verdict, "candidate", "main")

    assert markdown.startswith("## Eval gate: FAILED\n")
    reasons = markdown.split("### Reasons\n\n", 1)[1].split("\n\n", 1)[0]
    assert reasons == (
        "- contains: mean fell from 0.82 to 0.41 (-0.41), "
        "more than the tolerance of 0.05"
    )
    assert "| tolerance | contains | **FAIL** |" in markdown


def test_markdown_gate_passed_without_baseline() -> None:
    candidate = [scored("capital", contains=1.0)]
    verdict = decide(candidate, None, ["contains"], GatePolicy())

    markdown = markdown_gate(verdict, "nightly", None)

    assert markdown.startswith("## Eval gate: PASSED\n")
    assert "Candidate nightly without a baseline: only the absolute checks ran." in (
        markdown
    )
    assert "### Reasons" not in markdown
    assert "### Flipped cases" not in markdown
    [row] = table_rows(markdown, "| Evaluator |")
    assert row.startswith("| contains | 1.000 | 100.0% | 1 | 0 |")


def test_markdown_gate_escapes_flip_reasons() -> None:
    baseline = [scored("a|b", contains=1.0)]
    candidate = [
        CaseResult(
            "a|b",
            0,
            "ok",
            "x",
            scores=[Score.ok("contains", 0.0, 0.5, "missing 'x | y'")],
        )
    ]
    verdict = decide(
        candidate, baseline, ["contains"], GatePolicy(default_tolerance=1.0)
    )

    markdown = markdown_gate(verdict, "candidate", "baseline")

    [row] = table_rows(markdown, "| Case | Evaluator | Change |")
    assert row == "| a\\|b | contains | pass → fail | regressed | missing 'x \\| y' |"
    assert len(BORDER.findall(row)) == 6
