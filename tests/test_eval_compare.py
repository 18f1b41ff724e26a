"""Comparison of a candidate eval run with a baseline: deltas and flips."""

from __future__ import annotations

import pytest

from keelway.evals.base import Score
from keelway.evals.compare import Flip, compare
from keelway.evals.results import CaseResult

EVALUATORS = ("contains", "judge")
THRESHOLDS = {"contains": 0.5, "judge": 0.7}


def scored(key: str, trial: int = 0, **values: float) -> CaseResult:
    """Return a result whose evaluators scored ``values``, with the test thresholds."""
    scores = [
        Score.ok(name, value, THRESHOLDS[name], f"{name} gave {value} on {key}")
        for name, value in values.items()
    ]
    return CaseResult(key, trial, "ok", f"output of {key}", scores=scores)


def call_failed(key: str, trial: int = 0) -> CaseResult:
    return CaseResult(key, trial, "error", None, error="upstream timed out")


def baseline_run() -> list[CaseResult]:
    return [
        scored("capital", contains=1.0, judge=0.9),
        scored("refund", contains=1.0, judge=0.8),
        scored("greeting", contains=0.0, judge=0.6),
        scored("timeout", contains=1.0, judge=0.9),
        scored("old-only", contains=1.0, judge=0.9),
    ]


def candidate_run() -> list[CaseResult]:
    return [
        scored("capital", contains=1.0, judge=0.9),
        scored("refund", contains=0.0, judge=0.4),
        scored("greeting", contains=1.0, judge=0.6),
        call_failed("timeout"),
        scored("new-only", contains=1.0, judge=0.9),
    ]


def flip_index(flips: list[Flip]) -> dict[tuple[str, str | None], Flip]:
    return {(flip.case_key, flip.evaluator): flip for flip in flips}


def test_compare_means_and_deltas() -> None:
    comparison = compare(baseline_run(), candidate_run(), EVALUATORS)

    contains = comparison.deltas["contains"]
    # Baseline (1 + 1 + 0 + 1 + 1) / 5, candidate (1 + 0 + 1 + 1) / 4: the
    # failed model call has no score and stays out of the mean.
    assert contains.baseline_mean == pytest.approx(0.8)
    assert contains.candidate_mean == pytest.approx(0.75)
    assert contains.delta == pytest.approx(-0.05)
    assert contains.baseline_pass_rate == pytest.approx(0.8)
    assert contains.candidate_pass_rate == pytest.approx(0.75)

    judge = comparison.deltas["judge"]
    # Baseline (0.9 + 0.8 + 0.6 + 0.9 + 0.9) / 5, candidate (0.9 + 0.4 + 0.6 + 0.9) / 4.
    assert judge.baseline_mean == pytest.approx(0.82)
    assert judge.candidate_mean == pytest.approx(0.7)
    assert judge.delta == pytest.approx(-0.12)
    assert judge.baseline_pass_rate == pytest.approx(0.8)
    assert judge.candidate_pass_rate == pytest.approx(0.5)
    assert judge.baseline_errors == 0
    assert judge.candidate_errors == 0

    assert comparison.candidate.errors == 1
    assert comparison.baseline.errors == 0


def test_compare_evaluator_flips() -> None:
    comparison = compare(baseline_run(), candidate_run(), EVALUATORS)
    flips = flip_index(comparison.flips)

    assert set(flips) == {
        ("refund", "contains"),
        ("refund", "judge"),
        ("greeting", "contains"),
        ("timeout", "contains"),
        ("timeout", "judge"),
    }

    refund = flips[("refund", "contains")]
    assert refund.kind == "regressed"
    assert refund.before is True
    assert refund.after is False
    assert refund.before_reason == "contains gave 1.0 on refund"
    assert refund.after_reason == "contains gave 0.0 on refund"

    assert flips[("refund", "judge")].kind == "regressed"

    greeting = flips[("greeting", "contains")]
    assert greeting.kind == "fixed"
    assert greeting.before is False
    assert greeting.after is True

    timeout = flips[("timeout", "judge")]
    assert timeout.kind == "errored"
    assert timeout.before is True
    assert timeout.after is None
    assert timeout.after_reason == "model call failed: upstream timed out"

    assert [flip.case_key for flip in comparison.regressions()] == ["refund", "refund"]
    assert [flip.case_key for flip in comparison.fixes()] == ["greeting"]
    assert len(comparison.errored()) == 2


def test_compare_flip_order_follows_baseline() -> None:
    comparison = compare(baseline_run(), candidate_run(), EVALUATORS)

    assert [(flip.case_key, flip.evaluator) for flip in comparison.flips] == [
        ("refund", "contains"),
        ("refund", "judge"),
        ("greeting", "contains"),
        ("timeout", "contains"),
        ("timeout", "judge"),
    ]


def test_compare_case_level_flips() -> None:
    comparison = compare(baseline_run(), candidate_run(), EVALUATORS)
    flips = flip_index(comparison.case_flips)

    # greeting failed judge in both runs, so its case verdict did not change.
    assert set(flips) == {("refund", None), ("timeout", None)}

    refund = flips[("refund", None)]
    assert refund.kind == "regressed"
    assert refund.before_reason == "passed every evaluator"
    assert refund.after_reason == "contains: contains gave 0.0 on refund"

    timeout = flips[("timeout", None)]
    assert timeout.kind == "errored"
    assert timeout.after is None


def test_compare_cases_in_one_run() -> None:
    comparison = compare(baseline_run(), candidate_run(), EVALUATORS)

    assert comparison.baseline_only == ["old-only"]
    assert comparison.candidate_only == ["new-only"]
    assert comparison.common_cases == 4
    flipped = {flip.case_key for flip in comparison.flips + comparison.case_flips}
    assert "old-only" not in flipped
    assert "new-only" not in flipped


def test_compare_identical_runs() -> None:
    comparison = compare(baseline_run(), baseline_run(), EVALUATORS)

    assert comparison.flips == []
    assert comparison.case_flips == []
    assert comparison.deltas["judge"].delta == pytest.approx(0.0)


def test_compare_trials_majority() -> None:
    baseline = [
        # Passes in 2 of 3 trials: passed.
        scored("flaky", 0, contains=1.0),
        scored("flaky", 1, contains=1.0),
        scored("flaky", 2, contains=0.0),
        # Passes in 1 of 3 trials: failed.
        scored("steady", 0, contains=1.0),
        scored("steady", 1, contains=0.0),
        scored("steady", 2, contains=0.0),
        # Passes in 1 of 2 trials: a tie counts as failed.
        scored("tie", 0, contains=1.0),
        scored("tie", 1, contains=0.0),
    ]
    candidate = [
        scored("flaky", 0, contains=1.0),
        scored("flaky", 1, contains=0.0),
        scored("flaky", 2, contains=0.0),
        scored("steady", 0, contains=1.0),
        scored("steady", 1, contains=1.0),
        scored("steady", 2, contains=0.0),
        scored("tie", 0, contains=0.0),
        scored("tie", 1, contains=0.0),
    ]
    flips = flip_index(compare(baseline, candidate, ["contains"]).flips)

    assert flips[("flaky", "contains")].kind == "regressed"
    assert flips[("steady", "contains")].kind == "fixed"
    assert ("tie", "contains") not in flips


def test_compare_trials_with_errors() -> None:
    baseline = [
        scored("minority", 0, contains=0.0),
        scored("minority", 1, contains=0.0),
        scored("minority", 2, contains=0.0),
        scored("half", 0, contains=0.0),
        scored("half", 1, contains=0.0),
    ]
    candidate = [
        # One error in three trials: the two judged trials decide, and pass.
        scored("minority", 0, contains=1.0),
        call_failed("minority", 1),
        scored("minority", 2, contains=1.0),
        # One error in two trials: errored.
        scored("half", 0, contains=1.0),
        call_failed("half", 1),
    ]
    flips = flip_index(compare(baseline, candidate, ["contains"]).flips)

    assert flips[("minority", "contains")].kind == "fixed"
    assert flips[("half", "contains")].kind == "errored"
    assert flips[("half", "contains")].after is None


def test_compare_evaluator_error_score() -> None:
    baseline = [scored("capital", contains=1.0)]
    candidate = [
        CaseResult(
            "capital",
            0,
            "ok",
            "Paris",
            scores=[Score.error("contains", "case has no expected output")],
        )
    ]
    comparison = compare(baseline, candidate, ["contains"])

    flip = comparison.flips[0]
    assert flip.kind == "errored"
    assert flip.after_reason == "case has no expected output"
    assert comparison.deltas["contains"].candidate_mean is None
    assert comparison.deltas["contains"].delta is None
    assert comparison.deltas["contains"].candidate_errors == 1
    assert comparison.case_flips[0].after_reason == (
        "contains: case has no expected output"
    )


def test_compare_evaluator_missing_on_one_side() -> None:
    baseline = [scored("capital", contains=1.0)]
    candidate = [scored("capital", contains=1.0, judge=0.1)]
    comparison = compare(baseline, candidate, EVALUATORS)

    # judge did not run in the baseline, so there is no verdict to flip from.
    assert comparison.flips == []
    assert comparison.deltas["judge"].baseline_mean is None
    assert comparison.deltas["judge"].delta is None
    # The case verdict covers every score, so the new failing judge score counts.
    assert comparison.case_flips[0].kind == "regressed"
