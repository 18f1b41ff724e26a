"""The release gate: whether a candidate eval run is good enough to ship.

:func:`decide` runs every check of a :class:`GatePolicy` and keeps them all,
passing ones included, so a report can show what was checked. The gate
passes only when every check passes. Without a baseline only the absolute
checks run: results present, every evaluator scored, pass rate, error rate
and must-pass cases.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from keelway.evals.compare import Comparison, compare
from keelway.evals.results import CaseResult, RunSummary, summarize

# Slack for comparing a drop in mean with its tolerance, so that a drop equal
# to the tolerance up to float rounding (0.40 - 0.35 is 0.050000000000000044)
# passes.
_TOLERANCE_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """The limits a candidate run must meet.

    ``tolerances`` maps an evaluator to the maximum allowed drop of its mean,
    candidate against baseline. Evaluators not in it get ``default_tolerance``.
    ``min_pass_rate`` is the minimum fraction of judged results that must
    pass every evaluator (None for no minimum), and ``max_error_rate`` the
    maximum fraction of results that may error. With ``must_pass``, every
    trial of a must-pass case must pass.
    """

    tolerances: dict[str, float] = field(default_factory=dict)
    default_tolerance: float = 0.0
    min_pass_rate: float | None = None
    max_error_rate: float = 0.0
    must_pass: bool = True

    def __post_init__(self) -> None:
        for name, value in self.tolerances.items():
            _check_fraction(f"tolerance for {name!r}", value)
        _check_fraction("default_tolerance", self.default_tolerance)
        if self.min_pass_rate is not None:
            _check_fraction("min_pass_rate", self.min_pass_rate)
        _check_fraction("max_error_rate", self.max_error_rate)
        if not isinstance(self.must_pass, bool):
            raise ValueError(f"must_pass must be true or false, got {self.must_pass!r}")

    def tolerance(self, evaluator: str) -> float:
        """Return the maximum allowed drop of ``evaluator``'s mean."""
        return self.tolerances.get(evaluator, self.default_tolerance)


def _check_fraction(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be from 0 to 1, got {value}")


@dataclass(frozen=True, slots=True)
class GateCheck:
    """One check of the gate and its outcome.

    ``kind`` is one of ``results``, ``scored``, ``tolerance``, ``pass_rate``,
    ``error_rate`` and ``must_pass``. ``subject`` is the evaluator or case
    key checked, or ``run`` for the checks over the whole run. ``message``
    is one plain sentence with the figures, for reports.
    """

    kind: str
    subject: str
    passed: bool
    message: str


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """The gate's decision on a candidate run.

    ``reasons`` are the messages of the failed checks, in check order.
    ``comparison`` and ``baseline`` are None when no baseline was given.
    """

    passed: bool
    reasons: list[str]
    checks: list[GateCheck]
    candidate: RunSummary
    baseline: RunSummary | None
    comparison: Comparison | None


def decide(
    candidate: Sequence[CaseResult],
    baseline: Sequence[CaseResult] | None,
    evaluators: Sequence[str],
    policy: GatePolicy,
    thresholds: Mapping[str, float] | None = None,
) -> GateVerdict:
    """Run the checks of ``policy`` on ``candidate`` and decide the gate.

    ``thresholds`` (each evaluator's pass threshold) only label the
    summaries for reports.
    """
    names = tuple(dict.fromkeys(evaluators))
    candidate_summary = summarize(candidate, names, dict(thresholds or {}))
    comparison = None
    baseline_summary = None
    if baseline is not None:
        comparison = compare(baseline, candidate, names)
        baseline_summary = comparison.baseline

    checks = [_results_check(candidate_summary)]
    for name in names:
        checks.append(_scored_check(name, candidate_summary))
        if comparison is not None:
            tolerance_check = _tolerance_check(name, comparison, policy)
            if tolerance_check is not None:
                checks.append(tolerance_check)
    if policy.min_pass_rate is not None:
        checks.append(_pass_rate_check(candidate_summary, policy.min_pass_rate))
    checks.append(_error_rate_check(candidate_summary, policy.max_error_rate))
    if policy.must_pass:
        checks.extend(_must_pass_checks(candidate, baseline))

    reasons = [check.message for check in checks if not check.passed]
    return GateVerdict(
        passed=not reasons,
        reasons=reasons,
        checks=checks,
        candidate=candidate_summary,
        baseline=baseline_summary,
        comparison=comparison,
    )


def _results_check(summary: RunSummary) -> GateCheck:
    if summary.results == 0:
        return GateCheck("results", "run", False, "the candidate run has no results")
    return GateCheck(
        "results",
        "run",
        True,
        f"the candidate run has {summary.results} results over {summary.cases} cases",
    )


def _scored_check(name: str, summary: RunSummary) -> GateCheck:
    item = summary.evaluators[name]
    if item.mean is None:
        if item.errors:
            message = (
                f"{name}: no case was scored in the candidate, "
                f"all {item.errors} scores are errors"
            )
        else:
            message = f"{name}: no case was scored in the candidate"
        return GateCheck("scored", name, False, message)
    return GateCheck(
        "scored",
        name,
        True,
        f"{name}: {_count(item.scored, 'score')} in the candidate, "
        f"{_count(item.errors, 'error')}",
    )


def _tolerance_check(
    name: str, comparison: Comparison, policy: GatePolicy
) -> GateCheck | None:
    """Return the mean-drop check, None when the candidate has no mean."""
    delta = comparison.deltas[name]
    tolerance = policy.tolerance(name)
    before = delta.baseline_mean
    after = delta.candidate_mean
    if after is None:
        # The scored check already fails this evaluator.
        return None
    if before is None or delta.delta is None:
        return GateCheck(
            "tolerance",
            name,
            True,
            f"{name}: the baseline has no mean, so the drop was not checked",
        )
    drop = before - after
    if drop > tolerance + _TOLERANCE_EPSILON:
        return GateCheck(
            "tolerance",
            name,
            False,
            f"{name}: mean fell from {before:.2f} to {after:.2f} "
            f"({delta.delta:+.2f}), more than the tolerance of {tolerance:.2f}",
        )
    return GateCheck(
        "tolerance",
        name,
        True,
        f"{name}: mean went from {before:.2f} to {after:.2f} "
        f"({delta.delta:+.2f}), within the tolerance of {tolerance:.2f}",
    )


def _pass_rate_check(summary: RunSummary, minimum: float) -> GateCheck:
    judged = summary.passed + summary.failed
    if summary.pass_rate is None:
        return GateCheck(
            "pass_rate",
            "run",
            False,
            f"no result could be judged, so the pass rate is unknown "
            f"(minimum {minimum:.2f})",
        )
    counts = f"{summary.passed} of {judged} judged results passed"
    if summary.pass_rate < minimum:
        return GateCheck(
            "pass_rate",
            "run",
            False,
            f"pass rate {summary.pass_rate:.2f} is below the minimum of "
            f"{minimum:.2f} ({counts})",
        )
    return GateCheck(
        "pass_rate",
        "run",
        True,
        f"pass rate {summary.pass_rate:.2f} meets the minimum of "
        f"{minimum:.2f} ({counts})",
    )


def _error_rate_check(summary: RunSummary, maximum: float) -> GateCheck:
    counts = f"{summary.errors} of {summary.results} results errored"
    if summary.error_rate > maximum:
        return GateCheck(
            "error_rate",
            "run",
            False,
            f"error rate {summary.error_rate:.2f} is above the maximum of "
            f"{maximum:.2f} ({counts})",
        )
    return GateCheck(
        "error_rate",
        "run",
        True,
        f"error rate {summary.error_rate:.2f} is within the maximum of "
        f"{maximum:.2f} ({counts})",
    )


def _must_pass_checks(
    candidate: Sequence[CaseResult], baseline: Sequence[CaseResult] | None
) -> list[GateCheck]:
    """Return one check per must-pass case of either run.

    A must-pass case passes only when every one of its candidate trials
    passed. A must-pass case of the baseline that the candidate lacks fails,
    because it was not shown to pass.
    """
    trials: dict[str, list[CaseResult]] = {}
    for result in candidate:
        if result.must_pass:
            trials.setdefault(result.case_key, []).append(result)
    candidate_keys = {result.case_key for result in candidate}

    checks: list[GateCheck] = []
    for key, results in trials.items():
        checks.append(_must_pass_check(key, results))
    missing: dict[str, None] = {}
    for result in baseline or ():
        if result.must_pass and result.case_key not in candidate_keys:
            missing[result.case_key] = None
    for key in missing:
        checks.append(
            GateCheck(
                "must_pass",
                key,
                False,
                f"must-pass case {key!r} is in the baseline but missing "
                f"from the candidate",
            )
        )
    return checks


def _must_pass_check(key: str, results: Sequence[CaseResult]) -> GateCheck:
    ordered = sorted(results, key=lambda result: result.trial)
    failing = [result for result in ordered if result.passed is not True]
    if not failing:
        return GateCheck(
            "must_pass",
            key,
            True,
            f"must-pass case {key!r} passed"
            + (f" in all {len(ordered)} trials" if len(ordered) > 1 else ""),
        )
    first = failing[0]
    return GateCheck(
        "must_pass",
        key,
        False,
        f"must-pass case {key!r} did not pass"
        + (f" in {len(failing)} of {len(ordered)} trials" if len(ordered) > 1 else "")
        + f" (trial {first.trial}: {_failure_reason(first)})",
    )


def _failure_reason(result: CaseResult) -> str:
    """Return the model error, else the first errored, else the first failed score."""
    if result.status == "error":
        return f"model call failed: {result.error or 'no error message'}"
    for score in result.scores:
        if score.status == "error":
            return f"{score.evaluator} errored: {score.reason}"
    for score in result.scores:
        if not score.passed:
            value = "no value" if score.value is None else f"{score.value:.2f}"
            return f"{score.evaluator} scored {value}: {score.reason}"
    return "no reason recorded"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
