"""The eval gate: tolerances, pass and error rates, must-pass cases."""

from __future__ import annotations

import math

import pytest

from keelway.evals.base import Score
from keelway.evals.gate import GateCheck, GatePolicy, GateVerdict, decide
from keelway.evals.results import CaseResult


def scored(
    key: str, trial: int = 0, *, must_pass: bool = False, **values: float
) -> CaseResult:
    """Return a result whose evaluators scored ``values``, all at threshold 0.5."""
    scores = [
        Score.ok(name, value, 0.5, f"{name} gave {value} on {key}")
        for name, value in values.items()
    ]
    return CaseResult(
        key, trial, "ok", f"output of {key}", must_pass=must_pass, scores=scores
    )


def call_failed(key: str, trial: int = 0, *, must_pass: bool = False) -> CaseResult:
    return CaseResult(
        key, trial, "error", None, error="upstream timed out", must_pass=must_pass
    )


def checks_of(verdict: GateVerdict, kind: str) -> list[GateCheck]:
    return [check for check in verdict.checks if check.kind == kind]


def test_policy_rejects_invalid_values() -> None:
    with pytest.raises(ValueError, match="tolerance for 'contains' must be from 0"):
        GatePolicy(tolerances={"contains": 1.5})
    with pytest.raises(ValueError, match="default_tolerance must be from 0 to 1"):
        GatePolicy(default_tolerance=-0.1)
    with pytest.raises(ValueError, match="min_pass_rate must be from 0 to 1"):
        GatePolicy(min_pass_rate=2)
    with pytest.raises(ValueError, match="max_error_rate must be from 0 to 1"):
        GatePolicy(max_error_rate=math.nan)
    with pytest.raises(ValueError, match="max_error_rate must be a number"):
        GatePolicy(max_error_rate=True)
    with pytest.raises(ValueError, match="must_pass must be true or false"):
        GatePolicy(must_pass="yes")  # type: ignore[arg-type]


def test_policy_accepts_limits() -> None:
    policy = GatePolicy(
        tolerances={"judge": 0.1}, default_tolerance=0.0, min_pass_rate=1.0
    )

    assert policy.tolerance("judge") == 0.1
    assert policy.tolerance("contains") == 0.0


def test_gate_tolerance_boundary_passes() -> None:
    # 0.40 - 0.35 is 0.050000000000000044 in floats: equal to the tolerance.
    baseline = [scored("capital", judge=0.40)]
    candidate = [scored("capital", judge=0.35)]
    policy = GatePolicy(tolerances={"judge": 0.05}, must_pass=False)

    verdict = decide(candidate, baseline, ["judge"], policy)

    assert verdict.passed is True
    assert verdict.reasons == []
    [tolerance] = checks_of(verdict, "tolerance")
    assert tolerance.passed is True
    assert tolerance.message == (
        "judge: mean went from 0.40 to 0.35 (-0.05), within the tolerance of 0.05"
    )


def test_gate_drop_over_tolerance_fails() -> None:
    baseline = [scored("capital", contains=0.82), scored("refund", contains=0.82)]
    candidate = [scored("capital", contains=0.41), scored("refund", contains=0.41)]
    policy = GatePolicy(tolerances={"contains": 0.05})

    verdict = decide(candidate, baseline, ["contains"], policy)

    assert verdict.passed is False
    assert verdict.reasons == [
        "contains: mean fell from 0.82 to 0.41 (-0.41), more than the tolerance of 0.05"
    ]
    assert verdict.comparison is not None
    assert verdict.baseline is not None
    assert verdict.baseline.evaluators["contains"].mean == pytest.approx(0.82)


def test_gate_default_tolerance_applies() -> None:
    baseline = [scored("capital", contains=0.9, judge=0.9)]
    candidate = [scored("capital", contains=0.85, judge=0.85)]
    policy = GatePolicy(tolerances={"judge": 0.1}, default_tolerance=0.0)

    verdict = decide(candidate, baseline, ["contains", "judge"], policy)

    assert verdict.passed is False
    assert len(verdict.reasons) == 1
    assert verdict.reasons[0].startswith("contains: mean fell from 0.90 to 0.85")
    assert verdict.reasons[0].endswith("more than the tolerance of 0.00")


def test_gate_improvement_passes() -> None:
    baseline = [scored("capital", contains=0.5)]
    candidate = [scored("capital", contains=0.9)]

    verdict = decide(candidate, baseline, ["contains"], GatePolicy())

    assert verdict.passed is True
    [tolerance] = checks_of(verdict, "tolerance")
    assert "(+0.40)" in tolerance.message


def test_gate_must_pass_case_failing() -> None:
    candidate = [
        scored("capital", contains=1.0),
        scored("refund-policy", must_pass=True, contains=0.0),
    ]

    verdict = decide(candidate, None, ["contains"], GatePolicy())

    assert verdict.passed is False
    assert verdict.reasons == [
        "must-pass case 'refund-policy' did not pass "
        "(trial 0: contains scored 0.00: contains gave 0.0 on refund-policy)"
    ]


def test_gate_must_pass_disabled() -> None:
    candidate = [scored("refund-policy", must_pass=True, contains=0.0)]

    verdict = decide(candidate, None, ["contains"], GatePolicy(must_pass=False))

    assert verdict.passed is True
    assert checks_of(verdict, "must_pass") == []


def test_gate_must_pass_needs_every_trial() -> None:
    candidate = [
        scored("refund-policy", 0, must_pass=True, contains=1.0),
        scored("refund-policy", 1, must_pass=True, contains=1.0),
        call_failed("refund-policy", 2, must_pass=True),
    ]

    verdict = decide(candidate, None, ["contains"], GatePolicy(max_error_rate=0.5))

    [check] = checks_of(verdict, "must_pass")
    assert check.passed is False
    assert check.subject == "refund-policy"
    assert "did not pass in 1 of 3 trials" in check.message
    assert "trial 2: model call failed: upstream timed out" in check.message
    assert verdict.passed is False


def test_gate_passing_must_pass_listed() -> None:
    candidate = [scored("refund-policy", must_pass=True, contains=1.0)]

    verdict = decide(candidate, None, ["contains"], GatePolicy())

    [check] = checks_of(verdict, "must_pass")
    assert check.passed is True
    assert check.message == "must-pass case 'refund-policy' passed"


def test_gate_error_rate_over_max() -> None:
    candidate = [
        scored("a", contains=1.0),
        scored("b", contains=1.0),
        scored("c", contains=1.0),
        call_failed("d"),
    ]

    over = decide(candidate, None, ["contains"], GatePolicy(max_error_rate=0.2))
    at_max = decide(candidate, None, ["contains"], GatePolicy(max_error_rate=0.25))

    assert over.passed is False
    assert over.reasons == [
        "error rate 0.25 is above the maximum of 0.20 (1 of 4 results errored)"
    ]
    assert at_max.passed is True


def test_gate_min_pass_rate() -> None:
    candidate = [
        scored("a", contains=1.0),
        scored("b", contains=1.0),
        scored("c", contains=0.0),
        scored("d", contains=0.0),
    ]

    below = decide(candidate, None, ["contains"], GatePolicy(min_pass_rate=0.75))
    at_min = decide(candidate, None, ["contains"], GatePolicy(min_pass_rate=0.5))

    assert below.passed is False
    assert below.reasons == [
        "pass rate 0.50 is below the minimum of 0.75 (2 of 4 judged results passed)"
    ]
    assert at_min.passed is True


def test_gate_without_baseline() -> None:
    candidate = [scored("capital", contains=0.9), scored("refund", contains=0.7)]

    verdict = decide(candidate, None, ["contains"], GatePolicy(min_pass_rate=1.0))

    assert verdict.passed is True
    assert verdict.comparison is None
    assert verdict.baseline is None
    assert checks_of(verdict, "tolerance") == []
    kinds = [check.kind for check in verdict.checks]
    assert kinds == ["results", "scored", "pass_rate", "error_rate"]
    assert all(check.passed for check in verdict.checks)


def test_gate_evaluator_all_errors() -> None:
    candidate = [
        CaseResult(
            key,
            0,
            "ok",
            "some output",
            scores=[
                Score.ok("contains", 1.0, 0.5, "found"),
                Score.error("judge", "judge model timed out"),
            ],
        )
        for key in ("a", "b")
    ]
    baseline = [
        scored("a", contains=1.0, judge=0.9),
        scored("b", contains=1.0, judge=0.9),
    ]
    policy = GatePolicy(max_error_rate=1.0)

    verdict = decide(candidate, baseline, ["contains", "judge"], policy)

    assert verdict.passed is False
    assert verdict.reasons == [
        "judge: no case was scored in the candidate, all 2 scores are errors"
    ]
    # The drop check is left out for an evaluator without a candidate mean.
    assert [check.subject for check in checks_of(verdict, "tolerance")] == ["contains"]


def test_gate_evaluator_never_ran() -> None:
    candidate = [scored("a", contains=1.0)]

    verdict = decide(candidate, None, ["contains", "judge"], GatePolicy())

    assert verdict.passed is False
    assert verdict.reasons == ["judge: no case was scored in the candidate"]


def test_gate_baseline_without_mean() -> None:
    baseline = [
        CaseResult("a", 0, "ok", "x", scores=[Score.error("judge", "timed out")])
    ]
    candidate = [scored("a", judge=0.9)]

    verdict = decide(candidate, baseline, ["judge"], GatePolicy())

    [tolerance] = checks_of(verdict, "tolerance")
    assert tolerance.passed is True
    assert tolerance.message == (
        "judge: the baseline has no mean, so the drop was not checked"
    )
    assert verdict.passed is True


def test_gate_cases_only_in_one_run() -> None:
    baseline = [
        scored("capital", contains=1.0),
        scored("refund-policy", must_pass=True, contains=1.0),
        scored("retired", contains=1.0),
    ]
    candidate = [scored("capital", contains=1.0), scored("added", contains=1.0)]

    verdict = decide(candidate, baseline, ["contains"], GatePolicy())

    assert verdict.comparison is not None
    assert verdict.comparison.baseline_only == ["refund-policy", "retired"]
    assert verdict.comparison.candidate_only == ["added"]
    # Only the must-pass case that went missing fails the gate.
    assert verdict.reasons == [
        "must-pass case 'refund-policy' is in the baseline but missing "
        "from the candidate"
    ]


def test_gate_trials_majority_in_comparison() -> None:
    baseline = [
        scored("flaky", 0, contains=1.0),
        scored("flaky", 1, contains=1.0),
        scored("flaky", 2, contains=0.0),
    ]
    candidate = [
        scored("flaky", 0, contains=1.0),
        scored("flaky", 1, contains=0.0),
        scored("flaky", 2, contains=0.0),
    ]
    policy = GatePolicy(default_tolerance=0.5)

    verdict = decide(candidate, baseline, ["contains"], policy)

    assert verdict.comparison is not None
    [flip] = verdict.comparison.flips
    assert flip.kind == "regressed"
    assert flip.case_key == "flaky"
    # Mean 2/3 -> 1/3 is within the tolerance of 0.5, so the gate passes.
    assert verdict.passed is True
    assert verdict.candidate.trials == 3


def test_gate_empty_candidate_fails() -> None:
    verdict = decide([], None, [], GatePolicy())

    assert verdict.passed is False
    assert verdict.reasons == ["the candidate run has no results"]
