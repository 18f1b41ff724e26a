"""Comparison of two eval runs: a baseline and a candidate over the same cases.

Means, pass rates and error counts come from :func:`summarize` on each run as
a whole, so a case that only one run contains still counts in that run's
figures. Flips compare the verdicts of the cases both runs contain.

With several trials, a case's verdict on a side is decided by its trials:

* It is *errored* when at least half of its trials errored (a failed model
  call or an ``error`` score), because the judged trials cannot outvote that
  many unknown verdicts. Trials where the evaluator did not run are left out.
* Otherwise it *passed* when more than half of its judged trials passed, so
  a tie between passing and failing trials counts as failed.

A case errored on either side is listed with kind ``errored``, never as a
regression or a fix, because an error hides what its verdict would have been.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from keelway.evals.results import CaseResult, RunSummary, summarize

FlipKind = Literal["regressed", "fixed", "errored"]

REGRESSED: FlipKind = "regressed"
FIXED: FlipKind = "fixed"
ERRORED: FlipKind = "errored"


@dataclass(frozen=True, slots=True)
class EvaluatorDelta:
    """One evaluator in both runs.

    ``delta`` is the candidate mean minus the baseline mean, None when either
    run has no scored case for the evaluator.
    """

    evaluator: str
    baseline_mean: float | None
    candidate_mean: float | None
    delta: float | None
    baseline_pass_rate: float | None
    candidate_pass_rate: float | None
    baseline_errors: int
    candidate_errors: int


@dataclass(frozen=True, slots=True)
class Flip:
    """A case whose verdict changed between the runs, or that errored in one.

    ``evaluator`` is None for a case-level flip, where the verdict is whether
    the case passed every evaluator. ``before`` and ``after`` are the
    baseline and candidate verdicts, None for errored. The reasons are the
    evaluator's (or model call's) reasons from a trial that agrees with that
    side's verdict.
    """

    case_key: str
    evaluator: str | None
    before: bool | None
    after: bool | None
    kind: FlipKind
    before_reason: str
    after_reason: str


@dataclass(frozen=True, slots=True)
class Comparison:
    """A candidate run against a baseline run.

    ``flips`` are per evaluator and ``case_flips`` per case, both in the order
    cases first appear in the baseline. ``baseline_only`` and
    ``candidate_only`` are the case keys that only one run contains.
    """

    evaluators: tuple[str, ...]
    baseline: RunSummary
    candidate: RunSummary
    deltas: dict[str, EvaluatorDelta]
    flips: list[Flip]
    case_flips: list[Flip]
    baseline_only: list[str]
    candidate_only: list[str]

    @property
    def common_cases(self) -> int:
        """Number of case keys both runs contain."""
        return self.baseline.cases - len(self.baseline_only)

    def regressions(self) -> list[Flip]:
        """Return the per-evaluator flips from pass to fail."""
        return [flip for flip in self.flips if flip.kind == REGRESSED]

    def fixes(self) -> list[Flip]:
        """Return the per-evaluator flips from fail to pass."""
        return [flip for flip in self.flips if flip.kind == FIXED]

    def errored(self) -> list[Flip]:
        """Return the per-evaluator entries for cases errored on either side."""
        return [flip for flip in self.flips if flip.kind == ERRORED]


# A trial's verdict: passed (True), failed (False) or errored (None), and why.
_TrialVerdict = tuple[bool | None, str]


def compare(
    baseline: Sequence[CaseResult],
    candidate: Sequence[CaseResult],
    evaluators: Sequence[str],
) -> Comparison:
    """Compare ``candidate`` with ``baseline`` on the named evaluators."""
    names = tuple(dict.fromkeys(evaluators))
    baseline_summary = summarize(baseline, names)
    candidate_summary = summarize(candidate, names)
    deltas = {
        name: _delta(
            name,
            baseline_summary.evaluators[name].mean,
            candidate_summary.evaluators[name].mean,
            baseline_summary,
            candidate_summary,
        )
        for name in names
    }

    baseline_cases = _group_by_case(baseline)
    candidate_cases = _group_by_case(candidate)
    common = [key for key in baseline_cases if key in candidate_cases]

    flips: list[Flip] = []
    case_flips: list[Flip] = []
    for key in common:
        before_trials = baseline_cases[key]
        after_trials = candidate_cases[key]
        for name in names:
            flip = _flip(
                key,
                name,
                [_evaluator_verdict(result, name) for result in before_trials],
                [_evaluator_verdict(result, name) for result in after_trials],
            )
            if flip is not None:
                flips.append(flip)
        case_flip = _flip(
            key,
            None,
            [_case_verdict(result) for result in before_trials],
            [_case_verdict(result) for result in after_trials],
        )
        if case_flip is not None:
            case_flips.append(case_flip)

    return Comparison(
        evaluators=names,
        baseline=baseline_summary,
        candidate=candidate_summary,
        deltas=deltas,
        flips=flips,
        case_flips=case_flips,
        baseline_only=[key for key in baseline_cases if key not in candidate_cases],
        candidate_only=[key for key in candidate_cases if key not in baseline_cases],
    )


def _delta(
    name: str,
    baseline_mean: float | None,
    candidate_mean: float | None,
    baseline: RunSummary,
    candidate: RunSummary,
) -> EvaluatorDelta:
    delta = None
    if baseline_mean is not None and candidate_mean is not None:
        delta = candidate_mean - baseline_mean
    return EvaluatorDelta(
        evaluator=name,
        baseline_mean=baseline_mean,
        candidate_mean=candidate_mean,
        delta=delta,
        baseline_pass_rate=baseline.evaluators[name].pass_rate,
        candidate_pass_rate=candidate.evaluators[name].pass_rate,
        baseline_errors=baseline.evaluators[name].errors,
        candidate_errors=candidate.evaluators[name].errors,
    )


def _group_by_case(results: Sequence[CaseResult]) -> dict[str, list[CaseResult]]:
    cases: dict[str, list[CaseResult]] = {}
    for result in results:
        cases.setdefault(result.case_key, []).append(result)
    for trials in cases.values():
        trials.sort(key=lambda result: result.trial)
    return cases


def _evaluator_verdict(result: CaseResult, evaluator: str) -> _TrialVerdict | None:
    """Return one trial's verdict for ``evaluator``, None when it did not run."""
    if result.status == "error":
        return None, f"model call failed: {result.error or 'no error message'}"
    score = result.score(evaluator)
    if score is None:
        return None
    if score.status == "error":
        return None, score.reason
    return bool(score.passed), score.reason


def _case_verdict(result: CaseResult) -> _TrialVerdict:
    """Return one trial's verdict over all its scores, as ``CaseResult.passed``."""
    passed = result.passed
    if result.status == "error":
        return passed, f"model call failed: {result.error or 'no error message'}"
    # An errored case reports its error, not a failure from another evaluator.
    status = "error" if passed is None else "ok"
    for score in result.scores:
        if score.status == status and not score.passed:
            return passed, f"{score.evaluator}: {score.reason}"
    return passed, "passed every evaluator"


def _majority_verdict(trials: Sequence[_TrialVerdict | None]) -> _TrialVerdict | None:
    """Return a case's verdict over its trials, None when no trial has one.

    The case is errored when at least half of the trials with a verdict
    errored, else it passed when more than half of its judged trials passed.
    The reason comes from the first trial that agrees with the result.
    """
    verdicts = [trial for trial in trials if trial is not None]
    if not verdicts:
        return None
    errors = sum(1 for passed, _ in verdicts if passed is None)
    if 2 * errors >= len(verdicts):
        outcome: bool | None = None
    else:
        judged = len(verdicts) - errors
        passes = sum(1 for passed, _ in verdicts if passed is True)
        outcome = 2 * passes > judged
    reason = next(reason for passed, reason in verdicts if passed is outcome)
    return outcome, reason


def _flip(
    case_key: str,
    evaluator: str | None,
    before_trials: Sequence[_TrialVerdict | None],
    after_trials: Sequence[_TrialVerdict | None],
) -> Flip | None:
    before = _majority_verdict(before_trials)
    after = _majority_verdict(after_trials)
    if before is None or after is None:
        return None
    before_passed, before_reason = before
    after_passed, after_reason = after
    if before_passed is None or after_passed is None:
        kind: FlipKind = ERRORED
    elif before_passed and not after_passed:
        kind = REGRESSED
    elif after_passed and not before_passed:
        kind = FIXED
    else:
        return None
    return Flip(
        case_key=case_key,
        evaluator=evaluator,
        before=before_passed,
        after=after_passed,
        kind=kind,
        before_reason=before_reason,
        after_reason=after_reason,
    )
