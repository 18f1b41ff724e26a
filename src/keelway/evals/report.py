"""Markdown reports of an eval run and of a gate decision, for CI job summaries.

Every text that comes from a model, a dataset or an evaluator goes through
:func:`table_cell`, which puts it on one line, cuts it to a maximum length
and escapes what would break a GitHub-flavoured Markdown table: pipes,
backslashes and HTML.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from keelway.evals.compare import ERRORED, FIXED, REGRESSED, Flip
from keelway.evals.gate import GateVerdict
from keelway.evals.results import CaseResult, EvaluatorSummary, RunSummary

# Maximum characters of a model output or reason shown in a table cell.
MAX_CELL_CHARS = 200

# Maximum rows in one table of cases, so a run with thousands of failures
# still gives a summary that CI pages can show.
MAX_ROWS = 50


def table_cell(text: str | None, limit: int = MAX_CELL_CHARS) -> str:
    """Return ``text`` as one escaped Markdown table cell of at most ``limit`` chars.

    The limit applies before escaping, and a cut text ends with "…".
    """
    if not text:
        return ""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    escaped = html.escape(flat, quote=False)
    return escaped.replace("\\", "\\\\").replace("|", "\\|")


def markdown_run(
    title: str,
    summary: RunSummary,
    results: Sequence[CaseResult],
    *,
    max_rows: int = MAX_ROWS,
) -> str:
    """Render a run as Markdown: its figures, evaluators, failed and errored cases.

    The failed and errored tables show at most ``max_rows`` rows each and
    state how many more there are.
    """
    lines = [f"# {table_cell(title)}", ""]
    lines.extend(_run_facts(summary))
    lines.extend(["", "## Evaluators", ""])
    lines.extend(_evaluator_table(summary))
    lines.extend(["", "## Failed cases", ""])
    lines.extend(_failed_table(results, max_rows))
    lines.extend(["", "## Errored cases", ""])
    lines.extend(_errored_table(results, max_rows))
    return "\n".join(lines) + "\n"


def markdown_gate(
    verdict: GateVerdict,
    candidate_label: str,
    baseline_label: str | None = None,
    *,
    max_rows: int = MAX_ROWS,
) -> str:
    """Render a gate decision as Markdown: verdict, reasons, deltas and flips."""
    outcome = "PASSED" if verdict.passed else "FAILED"
    lines = [f"## Eval gate: {outcome}", ""]
    candidate = table_cell(candidate_label)
    if verdict.comparison is None:
        lines.append(
            f"Candidate {candidate} without a baseline: only the absolute checks ran."
        )
    else:
        baseline = table_cell(baseline_label or "baseline")
        lines.append(f"Candidate {candidate} against baseline {baseline}.")

    if verdict.reasons:
        lines.extend(["", "### Reasons", ""])
        lines.extend(f"- {table_cell(reason, 1000)}" for reason in verdict.reasons)

    lines.extend(["", "### Checks", "", "| Check | Subject | Result | Detail |"])
    lines.append("| --- | --- | --- | --- |")
    for check in verdict.checks:
        result = "pass" if check.passed else "**FAIL**"
        lines.append(
            f"| {check.kind} | {table_cell(check.subject)} | {result} "
            f"| {table_cell(check.message, 1000)} |"
        )

    lines.extend(["", "### Evaluators", ""])
    if verdict.comparison is None:
        lines.extend(_evaluator_table(verdict.candidate))
        return "\n".join(lines) + "\n"

    lines.extend(_delta_table(verdict))
    comparison = verdict.comparison
    lines.extend(["", "### Flipped cases", ""])
    lines.extend(_flip_table(comparison.flips, max_rows))
    lines.extend(["", _case_flip_line(comparison.case_flips, max_rows)])
    for label, keys in (
        ("Only in the baseline", comparison.baseline_only),
        ("Only in the candidate", comparison.candidate_only),
    ):
        if keys:
            lines.extend(["", f"{label} ({len(keys)}): {_keys(keys, max_rows)}."])
    return "\n".join(lines) + "\n"


def _run_facts(summary: RunSummary) -> list[str]:
    latency = "n/a"
    if summary.latency_p50_ms is not None and summary.latency_p95_ms is not None:
        latency = (
            f"p50 {summary.latency_p50_ms:.0f} ms, p95 {summary.latency_p95_ms:.0f} ms"
        )
    return [
        f"- **Cases:** {summary.cases}, **trials:** {summary.trials}, "
        f"**results:** {summary.results}",
        f"- **Passed:** {summary.passed}, **failed:** {summary.failed}, "
        f"**errors:** {summary.errors} (pass rate {_percent(summary.pass_rate)}, "
        f"error rate {_percent(summary.error_rate)})",
        f"- **Cost:** ${summary.cost_usd:.4f}",
        f"- **Latency:** {latency}",
        f"- **Tokens:** {summary.input_tokens} in, {summary.output_tokens} out",
        f"- **Cached results:** {summary.cached}",
    ]


def _evaluator_table(summary: RunSummary) -> list[str]:
    if not summary.evaluators:
        return ["No evaluators."]
    lines = [
        "| Evaluator | Mean | Pass rate | Scored | Errors | Threshold |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for item in summary.evaluators.values():
        threshold = "n/a" if item.threshold is None else f"{item.threshold:.2f}"
        lines.append(
            f"| {table_cell(item.name)} | {_mean(item, summary.trials)} "
            f"| {_percent(item.pass_rate)} | {item.scored} | {item.errors} "
            f"| {threshold} |"
        )
    return lines


def _mean(item: EvaluatorSummary, trials: int) -> str:
    if item.mean is None:
        return "n/a"
    if trials > 1 and item.std is not None:
        return f"{item.mean:.3f} ± {item.std:.3f}"
    return f"{item.mean:.3f}"


def _failed_table(results: Sequence[CaseResult], max_rows: int) -> list[str]:
    rows: list[str] = []
    for result in results:
        if result.status == "error":
            continue
        for score in result.scores:
            if score.status != "ok" or score.passed:
                continue
            value = "n/a" if score.value is None else f"{score.value:.3f}"
            rows.append(
                f"| {_case_label(result)} | {result.trial} "
                f"| {table_cell(score.evaluator)} | {value} "
                f"| {table_cell(score.reason)} | {table_cell(result.output)} |"
            )
    if not rows:
        return ["No failed cases."]
    header = [
        "| Case | Trial | Evaluator | Score | Reason | Output |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    return header + _limit(rows, max_rows)


def _errored_table(results: Sequence[CaseResult], max_rows: int) -> list[str]:
    rows: list[str] = []
    for result in results:
        if result.status == "error":
            rows.append(
                f"| {_case_label(result)} | {result.trial} | model call "
                f"| {table_cell(result.error or 'no error message')} |"
            )
            continue
        for score in result.scores:
            if score.status == "error":
                rows.append(
                    f"| {_case_label(result)} | {result.trial} "
                    f"| {table_cell(score.evaluator)} | {table_cell(score.reason)} |"
                )
    if not rows:
        return ["No errored cases."]
    header = ["| Case | Trial | Source | Reason |", "| --- | --- | --- | --- |"]
    return header + _limit(rows, max_rows)


def _delta_table(verdict: GateVerdict) -> list[str]:
    assert verdict.comparison is not None
    lines = [
        "| Evaluator | Baseline mean | Candidate mean | Delta "
        "| Baseline pass rate | Candidate pass rate | Errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for delta in verdict.comparison.deltas.values():
        change = "n/a" if delta.delta is None else f"{delta.delta:+.3f}"
        lines.append(
            f"| {table_cell(delta.evaluator)} | {_number(delta.baseline_mean)} "
            f"| {_number(delta.candidate_mean)} | {change} "
            f"| {_percent(delta.baseline_pass_rate)} "
            f"| {_percent(delta.candidate_pass_rate)} "
            f"| {delta.baseline_errors} → {delta.candidate_errors} |"
        )
    return lines


def _flip_table(flips: Sequence[Flip], max_rows: int) -> list[str]:
    if not flips:
        return ["No case changed its verdict."]
    # Regressions come first because they are what a reviewer has to look at.
    order = {REGRESSED: 0, ERRORED: 1, FIXED: 2}
    ordered = sorted(flips, key=lambda flip: order[flip.kind])
    rows = [
        f"| {table_cell(flip.case_key)} | {table_cell(flip.evaluator or 'all')} "
        f"| {_verdict(flip.before)} → {_verdict(flip.after)} | {flip.kind} "
        f"| {table_cell(flip.after_reason)} |"
        for flip in ordered
    ]
    header = [
        "| Case | Evaluator | Change | Kind | Reason now |",
        "| --- | --- | --- | --- | --- |",
    ]
    return header + _limit(rows, max_rows)


def _case_flip_line(case_flips: Sequence[Flip], max_rows: int) -> str:
    parts = []
    for kind in (REGRESSED, FIXED, ERRORED):
        keys = [flip.case_key for flip in case_flips if flip.kind == kind]
        if keys:
            parts.append(f"{len(keys)} {kind} ({_keys(keys, max_rows)})")
        else:
            parts.append(f"0 {kind}")
    return "Cases over all evaluators: " + ", ".join(parts) + "."


def _keys(keys: Sequence[str], max_rows: int) -> str:
    shown = ", ".join(table_cell(key) for key in keys[:max_rows])
    if len(keys) > max_rows:
        return f"{shown} and {len(keys) - max_rows} more"
    return shown


def _limit(rows: list[str], max_rows: int) -> list[str]:
    if len(rows) <= max_rows:
        return rows
    hidden = len(rows) - max_rows
    return [*rows[:max_rows], "", f"{hidden} more rows not shown."]


def _case_label(result: CaseResult) -> str:
    label = table_cell(result.case_key)
    return f"{label} (must pass)" if result.must_pass else label


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return "error"
    return "pass" if passed else "fail"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
