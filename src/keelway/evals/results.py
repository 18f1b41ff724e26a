"""Results of an eval run: per case and trial, and summarised per evaluator.

Means leave out ``error`` scores, which are counted on their own, so an
evaluator that could not judge a case never pulls a mean towards 0. With
several trials, an evaluator's ``std`` is the standard deviation of its
per-trial means (sample standard deviation, ``ddof=1``).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from keelway.evals.base import Score

CallStatus = Literal["ok", "error"]


@dataclass(slots=True)
class CaseResult:
    """One case in one trial: the model call and every evaluator's score."""

    case_key: str
    trial: int
    status: CallStatus
    output: str | None
    error: str | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached: bool = False
    trace_id: str | None = None
    must_pass: bool = False
    tags: tuple[str, ...] = ()
    scores: list[Score] = field(default_factory=list)

    @property
    def passed(self) -> bool | None:
        """Return whether every score passed, or None when any could not score.

        A failed model call counts as not passed: the case produced nothing
        that could pass.
        """
        if self.status == "error":
            return None
        if any(score.status == "error" for score in self.scores):
            return None
        return all(score.passed for score in self.scores)

    def score(self, evaluator: str) -> Score | None:
        """Return the score of ``evaluator``, if it ran on this case."""
        for score in self.scores:
            if score.evaluator == evaluator:
                return score
        return None


@dataclass(frozen=True, slots=True)
class EvaluatorSummary:
    """One evaluator over a run."""

    name: str
    mean: float | None
    std: float | None
    pass_rate: float | None
    scored: int
    errors: int
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run in figures: per evaluator, and over its cases."""

    cases: int
    trials: int
    results: int
    passed: int
    failed: int
    errors: int
    pass_rate: float | None
    error_rate: float
    evaluators: dict[str, EvaluatorSummary]
    cost_usd: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    input_tokens: int
    output_tokens: int
    cached: int

    def thresholds(self) -> dict[str, float]:
        """Return each evaluator's pass threshold, where it is known."""
        return {
            name: item.threshold
            for name, item in self.evaluators.items()
            if item.threshold is not None
        }

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-ready data."""
        return {
            "cases": self.cases,
            "trials": self.trials,
            "results": self.results,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "pass_rate": self.pass_rate,
            "error_rate": self.error_rate,
            "cost_usd": self.cost_usd,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached": self.cached,
            "evaluators": {
                name: {
                    "mean": item.mean,
                    "std": item.std,
                    "pass_rate": item.pass_rate,
                    "scored": item.scored,
                    "errors": item.errors,
                    "threshold": item.threshold,
                }
                for name, item in self.evaluators.items()
            },
        }


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _evaluator_summary(
    name: str, results: Sequence[CaseResult], threshold: float | None
) -> EvaluatorSummary:
    values: list[float] = []
    passes = 0
    errors = 0
    per_trial: dict[int, list[float]] = {}
    for result in results:
        score = result.score(name)
        if score is None:
            continue
        if score.status == "error" or score.value is None:
            errors += 1
            continue
        values.append(score.value)
        per_trial.setdefault(result.trial, []).append(score.value)
        passes += bool(score.passed)
    mean = statistics.fmean(values) if values else None
    trial_means = [statistics.fmean(items) for items in per_trial.values() if items]
    std = statistics.stdev(trial_means) if len(trial_means) > 1 else None
    return EvaluatorSummary(
        name,
        mean,
        std,
        passes / len(values) if values else None,
        len(values),
        errors,
        threshold,
    )


def summarize(
    results: Iterable[CaseResult],
    evaluators: Sequence[str],
    thresholds: dict[str, float] | None = None,
) -> RunSummary:
    """Summarise ``results`` over the named evaluators."""
    items = list(results)
    thresholds = thresholds or {}
    passed = sum(1 for result in items if result.passed is True)
    errors = sum(1 for result in items if result.passed is None)
    failed = len(items) - passed - errors
    judged = passed + failed
    latencies = [
        result.latency_ms
        for result in items
        if result.latency_ms is not None and result.status == "ok"
    ]
    return RunSummary(
        cases=len({result.case_key for result in items}),
        trials=len({result.trial for result in items}),
        results=len(items),
        passed=passed,
        failed=failed,
        errors=errors,
        pass_rate=passed / judged if judged else None,
        error_rate=errors / len(items) if items else 0.0,
        evaluators={
            name: _evaluator_summary(name, items, thresholds.get(name))
            for name in evaluators
        },
        cost_usd=sum(result.cost_usd or 0.0 for result in items),
        latency_p50_ms=_quantile(latencies, 0.5),
        latency_p95_ms=_quantile(latencies, 0.95),
        input_tokens=sum(result.input_tokens or 0 for result in items),
        output_tokens=sum(result.output_tokens or 0 for result in items),
        cached=sum(1 for result in items if result.cached),
    )
