"""Gathering an experiment's measurements from the store for its report.

An A/B test compares the traces of each variant; the first variant declared
is the baseline. A shadow test compares each sampled request's live answer
(``live``, the baseline) with the candidate's (``shadow``). The metrics are:

- error rate: share of requests that failed (lower is better);
- latency_ms and cost_usd: means over successful requests (lower is better);
- user feedback: ``feedback`` scores on the traces; a thumbs score (every
  value 0 or 1) is compared as a rate, any other score as a mean;
- evaluator scores: each evaluator's ``evaluator`` scores, as means.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select

from keelway.experiments.report import MeanMetric, RateMetric, Report, compare
from keelway.experiments.store import ExperimentRecord, ExperimentStore
from keelway.store.database import Database
from keelway.store.models import Trace, TraceScore

Metric = RateMetric | MeanMetric

# Traces read per query when joining scores, below every database's
# limit on bound parameters.
_CHUNK = 500


def experiment_report(
    database: Database, store: ExperimentStore, name: str, seed: int = 0
) -> Report:
    """Compare the variants of experiment ``name`` on every metric it has data for."""
    experiment = store.get(name)
    if experiment.kind == "shadow":
        baseline, metrics = _shadow_metrics(database, store, experiment)
    else:
        baseline, metrics = _ab_metrics(database, experiment)
    return compare(
        baseline,
        metrics,
        alpha=experiment.alpha,
        min_samples=experiment.min_samples,
        seed=seed,
    )


def _ab_metrics(
    database: Database, experiment: ExperimentRecord
) -> tuple[str, list[Metric]]:
    names = [variant.name for variant in experiment.variants]
    with database.session() as session:
        rows = session.execute(
            select(
                Trace.id, Trace.variant, Trace.status, Trace.latency_ms, Trace.cost_usd
            ).where(Trace.experiment == experiment.name, Trace.route != "shadow")
        ).all()
    variant_of: dict[str, str] = {}
    outcomes: list[tuple[str, bool, float, float | None]] = []
    for trace_id, variant, status, latency, cost in rows:
        if variant not in names:
            continue
        variant_of[trace_id] = variant
        outcomes.append((variant, status == "ok", latency, cost))
    metrics = _request_metrics(names, outcomes)
    metrics += _score_metrics(database, names, variant_of)
    return names[0], metrics


def _shadow_metrics(
    database: Database, store: ExperimentStore, experiment: ExperimentRecord
) -> tuple[str, list[Metric]]:
    names = ["live", "shadow"]
    outcomes: list[tuple[str, bool, float, float | None]] = []
    variant_of: dict[str, str] = {}
    for sample in store.samples(experiment.name):
        variant_of[sample.trace_id] = "live"
        outcomes.append(
            ("live", True, sample.live_latency_ms or 0.0, sample.live_cost_usd)
        )
        if sample.shadow_trace_id is not None:
            variant_of[sample.shadow_trace_id] = "shadow"
        outcomes.append(
            (
                "shadow",
                sample.shadow_status == "ok",
                sample.shadow_latency_ms or 0.0,
                sample.shadow_cost_usd,
            )
        )
    metrics = _request_metrics(names, outcomes)
    metrics += _score_metrics(database, names, variant_of)
    return "live", metrics


def _request_metrics(
    names: list[str], outcomes: Iterable[tuple[str, bool, float, float | None]]
) -> list[Metric]:
    errors = {name: [0, 0] for name in names}
    latency: dict[str, list[float]] = {name: [] for name in names}
    cost: dict[str, list[float]] = {name: [] for name in names}
    for variant, ok, latency_ms, cost_usd in outcomes:
        errors[variant][1] += 1
        if not ok:
            errors[variant][0] += 1
            continue
        latency[variant].append(latency_ms)
        if cost_usd is not None:
            cost[variant].append(cost_usd)
    metrics: list[Metric] = [
        RateMetric(
            "error_rate",
            {name: (count[0], count[1]) for name, count in errors.items()},
            higher_is_better=False,
        ),
        MeanMetric("latency_ms", latency, higher_is_better=False),
    ]
    if any(cost.values()):
        metrics.append(MeanMetric("cost_usd", cost, higher_is_better=False))
    return metrics


def _score_metrics(
    database: Database, names: list[str], variant_of: dict[str, str]
) -> list[Metric]:
    """Return a metric per score name found on the experiment's traces."""
    values: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(
        lambda: {name: [] for name in names}
    )
    trace_ids = list(variant_of)
    with database.session() as session:
        for start in range(0, len(trace_ids), _CHUNK):
            chunk = trace_ids[start : start + _CHUNK]
            rows = session.execute(
                select(
                    TraceScore.trace_id,
                    TraceScore.name,
                    TraceScore.source,
                    TraceScore.value,
                ).where(TraceScore.trace_id.in_(chunk))
            ).all()
            for trace_id, score_name, source, value in rows:
                values[(source, score_name)][variant_of[trace_id]].append(value)
    metrics: list[Metric] = []
    for (source, score_name), by_variant in sorted(values.items()):
        label = score_name if source == "evaluator" else f"{source}:{score_name}"
        everything = [v for scores in by_variant.values() for v in scores]
        if source == "feedback" and all(v in (0.0, 1.0) for v in everything):
            counts = {
                name: (int(sum(scores)), len(scores))
                for name, scores in by_variant.items()
            }
            metrics.append(RateMetric(label, counts, higher_is_better=True))
        else:
            metrics.append(MeanMetric(label, by_variant, higher_is_better=True))
    return metrics
