"""Comparison of experiment variants against a baseline on several metrics.

``compare`` runs one significance test per metric and non-baseline variant
and turns each into a verdict: better, worse, no significant difference, or
not enough data when a group has fewer samples than the minimum declared
before the test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keelway.experiments.stats import (
    TestResult,
    bootstrap_mean_diff,
    two_proportion_z,
    welch_t,
)

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no significant difference"
NOT_ENOUGH_DATA = "not enough data"

RATE = "rate"
MEAN = "mean"

MEAN_METHODS = ("welch", "bootstrap")

# Significant digits kept for floats in Report.to_dict, so that tiny
# p-values survive and noise digits do not.
_SIGNIFICANT_DIGITS = 6


@dataclass(frozen=True)
class RateMetric:
    """A success rate per variant, compared with a two-proportion z-test.

    ``counts`` maps each variant name to (successes, trials).
    """

    name: str
    counts: Mapping[str, tuple[int, int]]
    higher_is_better: bool


@dataclass(frozen=True)
class MeanMetric:
    """A mean of samples per variant, compared with Welch's t-test or a bootstrap.

    ``values`` maps each variant name to its samples, and ``method`` is
    "welch" or "bootstrap".
    """

    name: str
    values: Mapping[str, Sequence[float]]
    higher_is_better: bool
    method: str = "welch"


@dataclass(frozen=True)
class Comparison:
    """Result of one variant against the baseline on one metric.

    ``baseline_value`` and ``variant_value`` are rates or means, None for a
    group without data. ``effect`` is variant minus baseline, and
    ``relative_change`` is the effect divided by the absolute baseline value,
    None when that value is 0 or missing. ``result`` is None when no test ran.
    ``verdict`` is one of better, worse, "no significant difference" and
    "not enough data", and ``reason`` explains it in one line. ``kind`` is
    "rate" or "mean".
    """

    metric: str
    variant: str
    baseline: str
    n_baseline: int
    n_variant: int
    baseline_value: float | None
    variant_value: float | None
    effect: float | None
    relative_change: float | None
    result: TestResult | None
    verdict: str
    reason: str
    kind: str


@dataclass(frozen=True)
class Report:
    """Comparisons of every variant against the baseline on every metric."""

    baseline: str
    alpha: float
    min_samples: int
    comparisons: tuple[Comparison, ...]

    def significant_metrics(self) -> list[str]:
        """Return the metrics where some variant is better or worse, in order."""
        names: list[str] = []
        for comparison in self.comparisons:
            significant = comparison.verdict in (BETTER, WORSE)
            if significant and comparison.metric not in names:
                names.append(comparison.metric)
        return names

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-safe data.

        Floats keep 6 significant digits, and NaN or infinite values (such as
        an unbounded confidence interval) become None.
        """
        return {
            "baseline": self.baseline,
            "alpha": self.alpha,
            "min_samples": self.min_samples,
            "significant_metrics": self.significant_metrics(),
            "comparisons": [_comparison_dict(c) for c in self.comparisons],
        }

    def format_text(self) -> str:
        """Return the report as an aligned plain-text table and a summary.

        The table has one row per comparison. The summary has one line per
        metric that states whether any variant differs significantly from the
        baseline at the declared alpha.
        """
        header = (
            "metric",
            "baseline -> variant",
            "n",
            "value",
            "effect [CI]",
            "p",
            "verdict",
        )
        rows = [header, *(self._table_row(c) for c in self.comparisons)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [
            "  ".join(
                cell.ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * width for width in widths))

        level = 1.0 - self.alpha
        lines.append("")
        lines.append(
            f"Confidence intervals at {level:.0%}, "
            f"significance at alpha {self.alpha:g}, "
            f"minimum {self.min_samples} samples per group."
        )
        lines.extend(self._summary_lines())
        return "\n".join(lines) + "\n"

    def _table_row(self, comparison: Comparison) -> tuple[str, ...]:
        format_value = _format_rate if comparison.kind == RATE else _format_mean
        format_effect = (
            _format_rate_effect if comparison.kind == RATE else _format_mean_effect
        )
        values = (
            f"{format_value(comparison.baseline_value)} -> "
            f"{format_value(comparison.variant_value)}"
        )
        effect = "n/a"
        p_value = "n/a"
        if comparison.result is not None:
            result = comparison.result
            effect = (
                f"{format_effect(result.effect)} "
                f"[{format_effect(result.ci_low)}, {format_effect(result.ci_high)}]"
            )
            p_value = _format_p(result.p_value)
        return (
            comparison.metric,
            f"{comparison.baseline} -> {comparison.variant}",
            f"{comparison.n_baseline} -> {comparison.n_variant}",
            values,
            effect,
            p_value,
            comparison.verdict,
        )

    def _summary_lines(self) -> list[str]:
        metrics: dict[str, list[Comparison]] = {}
        for comparison in self.comparisons:
            metrics.setdefault(comparison.metric, []).append(comparison)

        lines: list[str] = []
        for metric, comparisons in metrics.items():
            significant = [c for c in comparisons if c.verdict in (BETTER, WORSE)]
            short = [c.variant for c in comparisons if c.verdict == NOT_ENOUGH_DATA]
            if significant:
                findings = "; ".join(
                    f"{c.variant} is {c.verdict} than {c.baseline} ({c.reason})"
                    for c in significant
                )
                line = f"{metric}: significant at alpha {self.alpha:g}: {findings}."
            elif len(short) == len(comparisons):
                names = ", ".join(short)
                lines.append(
                    f"{metric}: no conclusion yet, not enough data for {names}."
                )
                continue
            else:
                line = f"{metric}: no significant difference at alpha {self.alpha:g}."
            if short:
                line += f" Not enough data for {', '.join(short)}."
            lines.append(line)
        return lines


def compare(
    baseline: str,
    metrics: Sequence[RateMetric | MeanMetric],
    alpha: float = 0.05,
    min_samples: int = 100,
    seed: int = 0,
) -> Report:
    """Compare every non-baseline variant with the baseline on every metric.

    Rates get a two-proportion z-test, and means get Welch's t-test or a
    bootstrap with ``seed``, as the metric's method selects. The variants are
    those named in any metric, in order of first appearance. A variant
    without data on a metric, or a group with fewer than ``min_samples``
    samples (or fewer than 2 values for a mean), gets the verdict "not
    enough data".

    NOTE: each comparison is tested at alpha on its own, with no correction
    for multiple comparisons, so with k comparisons and no real difference
    about k * alpha of them are expected to come out significant.

    Raises:
        ValueError: a metric has no entry for the baseline, two metrics share
            a name, a mean metric has an unknown method, alpha is outside
            (0, 1), min_samples is negative, or a metric's data is invalid.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(
            f"alpha={alpha} is invalid. Pass a significance level in (0, 1), e.g. 0.05"
        )
    if min_samples < 0:
        raise ValueError(f"min_samples={min_samples} is negative. Pass 0 or more")
    names = [metric.name for metric in metrics]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"metric name {name!r} is used more than once. Rename one")

    variants: list[str] = []
    for metric in metrics:
        data = metric.counts if isinstance(metric, RateMetric) else metric.values
        if baseline not in data:
            raise ValueError(
                f"metric {metric.name!r} has no data for the baseline {baseline!r}. "
                f"It has data for {sorted(data)}"
            )
        if isinstance(metric, MeanMetric) and metric.method not in MEAN_METHODS:
            raise ValueError(
                f"metric {metric.name!r} has method {metric.method!r}. "
                f"Pass one of {', '.join(MEAN_METHODS)}"
            )
        for variant in data:
            if variant != baseline and variant not in variants:
                variants.append(variant)

    comparisons = tuple(
        _compare_one(metric, baseline, variant, alpha, min_samples, seed)
        for metric in metrics
        for variant in variants
    )
    return Report(
        baseline=baseline, alpha=alpha, min_samples=min_samples, comparisons=comparisons
    )


@dataclass(frozen=True)
class _Group:
    n: int
    value: float | None


def _compare_one(
    metric: RateMetric | MeanMetric,
    baseline: str,
    variant: str,
    alpha: float,
    min_samples: int,
    seed: int,
) -> Comparison:
    try:
        if isinstance(metric, RateMetric):
            kind = RATE
            base_group = _rate_group(metric.counts[baseline])
            variant_group = _rate_group(metric.counts.get(variant, (0, 0)))
            result = _test_rates(metric, baseline, variant, alpha)
        else:
            kind = MEAN
            base_group = _mean_group(metric.values[baseline])
            variant_group = _mean_group(metric.values.get(variant, ()))
            result = _test_means(metric, baseline, variant, alpha, seed)
    except ValueError as exc:
        raise ValueError(f"metric {metric.name!r}, variant {variant!r}: {exc}") from exc

    effect = None
    relative_change = None
    if base_group.value is not None and variant_group.value is not None:
        effect = variant_group.value - base_group.value
        if base_group.value != 0.0:
            relative_change = effect / abs(base_group.value)

    verdict, reason = _judge(
        metric, baseline, variant, base_group.n, variant_group.n, result, min_samples
    )
    return Comparison(
        metric=metric.name,
        variant=variant,
        baseline=baseline,
        n_baseline=base_group.n,
        n_variant=variant_group.n,
        baseline_value=base_group.value,
        variant_value=variant_group.value,
        effect=effect,
        relative_change=relative_change,
        result=result,
        verdict=verdict,
        reason=reason,
        kind=kind,
    )


def _rate_group(counts: tuple[int, int]) -> _Group:
    successes, trials = counts
    return _Group(n=trials, value=successes / trials if trials > 0 else None)


def _mean_group(values: Sequence[float]) -> _Group:
    n = len(values)
    return _Group(n=n, value=math.fsum(values) / n if n > 0 else None)


def _test_rates(
    metric: RateMetric, baseline: str, variant: str, alpha: float
) -> TestResult | None:
    if variant not in metric.counts:
        return None
    base_successes, base_trials = metric.counts[baseline]
    variant_successes, variant_trials = metric.counts[variant]
    return two_proportion_z(
        base_successes, base_trials, variant_successes, variant_trials, alpha
    )


def _test_means(
    metric: MeanMetric, baseline: str, variant: str, alpha: float, seed: int
) -> TestResult | None:
    if variant not in metric.values:
        return None
    if metric.method == "bootstrap":
        return bootstrap_mean_diff(
            metric.values[baseline], metric.values[variant], alpha, seed=seed
        )
    return welch_t(metric.values[baseline], metric.values[variant], alpha)


def _judge(
    metric: RateMetric | MeanMetric,
    baseline: str,
    variant: str,
    n_baseline: int,
    n_variant: int,
    result: TestResult | None,
    min_samples: int,
) -> tuple[str, str]:
    """Return the verdict and its reason for one comparison."""
    if n_variant == 0:
        return NOT_ENOUGH_DATA, f"{variant} has no data for {metric.name}"
    if n_baseline == 0:
        return NOT_ENOUGH_DATA, f"{baseline} has no data for {metric.name}"
    for name, n in ((baseline, n_baseline), (variant, n_variant)):
        if n < min_samples:
            return (
                NOT_ENOUGH_DATA,
                f"n={n} for {name} < minimum {min_samples} declared before the test",
            )
        if isinstance(metric, MeanMetric) and n < 2:
            return NOT_ENOUGH_DATA, f"n={n} for {name}, but a mean test needs 2 or more"

    # Both groups have data here, so the test ran.
    assert result is not None
    p_text = _format_p(result.p_value)
    if not result.significant:
        return NO_DIFFERENCE, f"p={p_text} >= alpha {result.alpha:g}"
    increased = result.effect > 0.0
    verdict = BETTER if increased == metric.higher_is_better else WORSE
    return verdict, f"p={p_text} < alpha {result.alpha:g}"


def _comparison_dict(comparison: Comparison) -> dict[str, Any]:
    result = comparison.result
    test = None
    if result is not None:
        test = {
            "test": result.test,
            "statistic": _json_float(result.statistic),
            "p_value": _json_float(result.p_value),
            "effect": _json_float(result.effect),
            "ci_low": _json_float(result.ci_low),
            "ci_high": _json_float(result.ci_high),
            "alpha": result.alpha,
            "significant": result.significant,
        }
    return {
        "metric": comparison.metric,
        "kind": comparison.kind,
        "variant": comparison.variant,
        "baseline": comparison.baseline,
        "n_baseline": comparison.n_baseline,
        "n_variant": comparison.n_variant,
        "baseline_value": _json_float(comparison.baseline_value),
        "variant_value": _json_float(comparison.variant_value),
        "effect": _json_float(comparison.effect),
        "relative_change": _json_float(comparison.relative_change),
        "verdict": comparison.verdict,
        "reason": comparison.reason,
        "test": test,
    }


def _json_float(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")


def _format_p(p_value: float) -> str:
    return f"{p_value:.2g}"


def _format_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _format_mean(value: float | None) -> str:
    if value is None:
        return "n/a"
    # Plain digits for the sizes latencies and costs take, as in 13830 or
    # 0.0012, and scientific notation only past them.
    if value == 0 or 1e-4 <= abs(value) < 1e7:
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return f"{value:.4g}"


def _format_rate_effect(value: float) -> str:
    # Rate differences are in percentage points (pp), not percent.
    return "n/a" if not math.isfinite(value) else f"{value * 100:+.2f}pp"


def _format_mean_effect(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.4g}"
