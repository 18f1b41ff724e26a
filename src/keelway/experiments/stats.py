"""Significance tests that compare a treatment group with a baseline group.

Every test is two-sided and reports the effect as treatment minus baseline,
with a confidence interval at level 1 - alpha. Degenerate data (empty
groups, no variance) gives a defined result instead of NaN or an exception:
each function documents what it returns then. Invalid arguments raise
ValueError.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as scipy_stats  # type: ignore[import-untyped]

Z_TEST = "two-proportion z-test"
WELCH_T_TEST = "Welch's t-test"
BOOTSTRAP = "bootstrap"

_OVERFLOW_MESSAGE = (
    "a mean or variance of a or b overflows a float. Rescale the values, "
    "for example to other units"
)

# Resampled values per chunk in bootstrap_mean_diff, which bounds its memory
# at about 8 bytes per value for the index array.
_BOOTSTRAP_CHUNK_VALUES = 1_000_000


@dataclass(frozen=True)
class TestResult:
    """Outcome of one significance test of treatment against baseline.

    ``effect`` is treatment minus baseline (difference of rates or of means),
    and ``ci_low``/``ci_high`` bound it at confidence level 1 - ``alpha``.
    The bounds are -inf/inf when the data cannot bound the effect (a mean
    test with fewer than 2 values in a group). ``statistic`` is None when
    the test has no finite statistic, for example with zero variance.
    """

    __test__ = False  # The name starts with "Test", so stop pytest collecting it.

    test: str
    statistic: float | None
    p_value: float
    effect: float
    ci_low: float
    ci_high: float
    alpha: float
    significant: bool


def two_proportion_z(
    successes_a: int,
    n_a: int,
    successes_b: int,
    n_b: int,
    alpha: float = 0.05,
) -> TestResult:
    """Run a two-sided two-proportion z-test of treatment b against baseline a.

    The z statistic uses the pooled standard error, which is valid under the
    null hypothesis of equal rates. The confidence interval of the rate
    difference is the Wald interval with the unpooled standard error,
    clipped to [-1, 1].

    Degenerate data is not significant with p_value 1.0 and statistic None:
    an empty group (effect 0.0, interval [-1, 1]), or both groups with only
    successes or only failures (pooled standard error 0, effect 0.0).

    Raises:
        ValueError: a count is not an integer or is negative, successes
            exceed trials, or alpha is outside (0, 1).
    """
    _validate_alpha(alpha)
    successes_a = _validate_count("successes_a", successes_a)
    n_a = _validate_count("n_a", n_a)
    successes_b = _validate_count("successes_b", successes_b)
    n_b = _validate_count("n_b", n_b)
    if successes_a > n_a:
        raise ValueError(
            f"successes_a={successes_a} exceeds n_a={n_a}. "
            "Pass the number of successes out of n_a trials"
        )
    if successes_b > n_b:
        raise ValueError(
            f"successes_b={successes_b} exceeds n_b={n_b}. "
            "Pass the number of successes out of n_b trials"
        )

    if n_a == 0 or n_b == 0:
        return _not_significant(Z_TEST, alpha, effect=0.0, ci_low=-1.0, ci_high=1.0)

    rate_a = successes_a / n_a
    rate_b = successes_b / n_b
    effect = rate_b - rate_a
    pooled_rate = (successes_a + successes_b) / (n_a + n_b)
    pooled_se = math.sqrt(pooled_rate * (1.0 - pooled_rate) * (1.0 / n_a + 1.0 / n_b))
    if pooled_se == 0.0:
        return _not_significant(
            Z_TEST, alpha, effect=effect, ci_low=effect, ci_high=effect
        )

    z = effect / pooled_se
    p_value = float(2.0 * scipy_stats.norm.sf(abs(z)))
    unpooled_se = math.sqrt(
        rate_a * (1.0 - rate_a) / n_a + rate_b * (1.0 - rate_b) / n_b
    )
    margin = _normal_quantile(alpha) * unpooled_se
    return TestResult(
        test=Z_TEST,
        statistic=z,
        p_value=p_value,
        effect=effect,
        ci_low=max(-1.0, effect - margin),
        ci_high=min(1.0, effect + margin),
        alpha=alpha,
        significant=p_value < alpha,
    )


def welch_t(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> TestResult:
    """Run Welch's t-test of the mean of treatment b against baseline a.

    The statistic is the mean difference over its unpooled standard error,
    with the Welch–Satterthwaite degrees of freedom for the t distribution
    behind the p-value and the confidence interval. That is what
    scipy.stats.ttest_ind(equal_var=False) computes, but ttest_ind warns
    about precision loss whenever one group is constant, which is common
    for scores, and the results here are exact in that case.

    Degenerate data gives a defined result with statistic None:

    - fewer than 2 values in a group: p_value 1.0, not significant, interval
      (-inf, inf), and effect 0.0 if a group is empty;
    - both groups constant with the same value: p_value 1.0, not significant,
      effect and interval 0.0;
    - both groups constant with different values: p_value 0.0, significant,
      interval equal to the effect, because without noise any difference is
      certain.

    Raises:
        ValueError: a value is NaN or infinite, a mean or variance
            overflows a float, or alpha is outside (0, 1).
    """
    _validate_alpha(alpha)
    baseline = _as_sample("a", a)
    treatment = _as_sample("b", b)
    degenerate = _degenerate_mean_test(WELCH_T_TEST, baseline, treatment, alpha)
    if degenerate is not None:
        return degenerate

    n_a = baseline.size
    n_b = treatment.size
    effect = _mean_difference(baseline, treatment)
    with np.errstate(over="ignore", invalid="ignore"):
        var_share_a = float(baseline.var(ddof=1)) / n_a
        var_share_b = float(treatment.var(ddof=1)) / n_b
    if not (math.isfinite(var_share_a) and math.isfinite(var_share_b)):
        raise ValueError(_OVERFLOW_MESSAGE)
    se = math.sqrt(var_share_a + var_share_b)
    df = (var_share_a + var_share_b) ** 2 / (
        var_share_a**2 / (n_a - 1) + var_share_b**2 / (n_b - 1)
    )
    statistic = effect / se
    p_value = float(2.0 * scipy_stats.t.sf(abs(statistic), df))
    margin = float(scipy_stats.t.ppf(1.0 - alpha / 2.0, df)) * se
    return TestResult(
        test=WELCH_T_TEST,
        statistic=statistic,
        p_value=p_value,
        effect=effect,
        ci_low=effect - margin,
        ci_high=effect + margin,
        alpha=alpha,
        significant=p_value < alpha,
    )


def bootstrap_mean_diff(
    a: Sequence[float],
    b: Sequence[float],
    alpha: float = 0.05,
    resamples: int = 10_000,
    seed: int = 0,
) -> TestResult:
    """Run a bootstrap test of the mean of treatment b against baseline a.

    Each resample draws len(a) values from a and len(b) values from b with
    replacement and records the difference of their means. The confidence
    interval is the percentile interval of those differences. The two-sided
    p-value inverts the percentile interval:
    2 * min(k_le + 1, k_ge + 1) / (resamples + 1), capped at 1, where k_le and
    k_ge count resampled differences <= 0 and >= 0. The +1 terms keep the
    p-value above 0, because a finite number of resamples cannot show a
    smaller one. The result is deterministic for a given seed and data.

    Degenerate data follows welch_t: fewer than 2 values in a group or two
    constant groups give the same results, without resampling.

    Raises:
        ValueError: a value is NaN or infinite, a mean overflows a float,
            alpha is outside (0, 1), or resamples is below 1.
    """
    _validate_alpha(alpha)
    if resamples < 1:
        raise ValueError(f"resamples={resamples} is invalid. Pass at least 1")
    baseline = _as_sample("a", a)
    treatment = _as_sample("b", b)
    degenerate = _degenerate_mean_test(BOOTSTRAP, baseline, treatment, alpha)
    if degenerate is not None:
        return degenerate

    rng = np.random.default_rng(seed)
    rows_per_chunk = max(
        1, _BOOTSTRAP_CHUNK_VALUES // max(baseline.size, treatment.size)
    )
    effect = _mean_difference(baseline, treatment)
    differences = np.empty(resamples)
    for start in range(0, resamples, rows_per_chunk):
        rows = min(rows_per_chunk, resamples - start)
        means_a = _resampled_means(rng, baseline, rows)
        means_b = _resampled_means(rng, treatment, rows)
        with np.errstate(over="ignore", invalid="ignore"):
            differences[start : start + rows] = means_b - means_a
    if not np.isfinite(differences).all():
        raise ValueError(_OVERFLOW_MESSAGE)
    ci_low, ci_high = np.quantile(differences, [alpha / 2.0, 1.0 - alpha / 2.0])
    at_or_below = int(np.count_nonzero(differences <= 0.0))
    at_or_above = int(np.count_nonzero(differences >= 0.0))
    p_value = min(1.0, 2.0 * (min(at_or_below, at_or_above) + 1) / (resamples + 1))
    return TestResult(
        test=BOOTSTRAP,
        statistic=None,
        p_value=p_value,
        effect=effect,
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        alpha=alpha,
        significant=p_value < alpha,
    )


def required_sample_size(
    baseline_rate: float,
    minimum_effect: float,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Return the sample size per group that a two-proportion z-test needs.

    The test is two-sided at level alpha and detects a change of
    ``minimum_effect`` (absolute, either sign) from ``baseline_rate`` with
    the given power. The formula is the normal approximation without
    continuity correction, rounded up:

        n = (z_(1-alpha/2) * sqrt(2 * p * (1 - p))
             + z_power * sqrt(p1 * (1 - p1) + p2 * (1 - p2)))^2 / (p2 - p1)^2

    with p1 = baseline_rate, p2 = p1 + minimum_effect and p = (p1 + p2) / 2.
    The result is at least 1.

    Raises:
        ValueError: a rate is outside [0, 1], minimum_effect is 0, or alpha
            or power is outside (0, 1).
    """
    _validate_alpha(alpha)
    if not 0.0 < power < 1.0:
        raise ValueError(f"power={power} is invalid. Pass a probability in (0, 1)")
    if not 0.0 <= baseline_rate <= 1.0:
        raise ValueError(
            f"baseline_rate={baseline_rate} is invalid. Pass a rate in [0, 1]"
        )
    if minimum_effect == 0.0 or not math.isfinite(minimum_effect):
        raise ValueError(
            f"minimum_effect={minimum_effect} is invalid. "
            "Pass the nonzero absolute change of the rate to detect"
        )
    treatment_rate = baseline_rate + minimum_effect
    if not 0.0 <= treatment_rate <= 1.0:
        raise ValueError(
            f"baseline_rate + minimum_effect = {treatment_rate} is outside [0, 1]. "
            "Pass a smaller minimum_effect"
        )

    mean_rate = (baseline_rate + treatment_rate) / 2.0
    null_sd = math.sqrt(2.0 * mean_rate * (1.0 - mean_rate))
    alternative_sd = math.sqrt(
        baseline_rate * (1.0 - baseline_rate) + treatment_rate * (1.0 - treatment_rate)
    )
    z_power = float(scipy_stats.norm.ppf(power))
    # Below power 0.5 z_power is negative, and a negative sum means any n
    # reaches the power, so it is clamped to 0 and the result to 1.
    numerator = max(0.0, _normal_quantile(alpha) * null_sd + z_power * alternative_sd)
    return max(1, math.ceil(numerator**2 / minimum_effect**2))


def _validate_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(
            f"alpha={alpha} is invalid. Pass a significance level in (0, 1), e.g. 0.05"
        )


def _validate_count(name: str, value: int) -> int:
    try:
        count = operator.index(value)
    except TypeError:
        raise ValueError(
            f"{name}={value!r} is invalid. Pass a whole number of trials or successes"
        ) from None
    if count < 0:
        raise ValueError(f"{name}={count} is negative. Pass a count of 0 or more")
    return count


def _as_sample(name: str, values: Sequence[float]) -> npt.NDArray[np.float64]:
    sample = np.asarray(values, dtype=np.float64)
    if sample.ndim != 1:
        raise ValueError(
            f"{name} has shape {sample.shape}. Pass a flat sequence of numbers"
        )
    not_finite = np.flatnonzero(~np.isfinite(sample))
    if not_finite.size:
        index = int(not_finite[0])
        raise ValueError(
            f"{name}[{index}]={sample[index]} is not finite. "
            "Drop NaN and infinite values before testing"
        )
    return sample


def _normal_quantile(alpha: float) -> float:
    return float(scipy_stats.norm.ppf(1.0 - alpha / 2.0))


def _not_significant(
    test: str, alpha: float, effect: float, ci_low: float, ci_high: float
) -> TestResult:
    return TestResult(
        test=test,
        statistic=None,
        p_value=1.0,
        effect=effect,
        ci_low=ci_low,
        ci_high=ci_high,
        alpha=alpha,
        significant=False,
    )


def _degenerate_mean_test(
    test: str,
    baseline: npt.NDArray[np.float64],
    treatment: npt.NDArray[np.float64],
    alpha: float,
) -> TestResult | None:
    """Return the result for samples that a mean test cannot handle, else None."""
    if baseline.size < 2 or treatment.size < 2:
        effect = 0.0
        if baseline.size and treatment.size:
            effect = _mean_difference(baseline, treatment)
        return _not_significant(test, alpha, effect, -math.inf, math.inf)

    # Constant groups are found by min == max, not by a variance of 0,
    # because the float mean of equal values can be off by one ulp and leave
    # a tiny variance that would make the t statistic huge.
    if baseline.min() != baseline.max() or treatment.min() != treatment.max():
        return None
    effect = _mean_difference(baseline[:1], treatment[:1])
    if effect == 0.0:
        return _not_significant(test, alpha, 0.0, 0.0, 0.0)
    return TestResult(
        test=test,
        statistic=None,
        p_value=0.0,
        effect=effect,
        ci_low=effect,
        ci_high=effect,
        alpha=alpha,
        significant=True,
    )


def _resampled_means(
    rng: np.random.Generator, sample: npt.NDArray[np.float64], rows: int
) -> npt.NDArray[np.float64]:
    indices = rng.integers(0, sample.size, size=(rows, sample.size))
    with np.errstate(over="ignore", invalid="ignore"):
        means: npt.NDArray[np.float64] = sample[indices].mean(axis=1)
    return means


def _mean_difference(
    baseline: npt.NDArray[np.float64], treatment: npt.NDArray[np.float64]
) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        difference = float(treatment.mean() - baseline.mean())
    if not math.isfinite(difference):
        raise ValueError(_OVERFLOW_MESSAGE)
    return difference
