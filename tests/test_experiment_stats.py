"""Significance tests: hand-checked values, degenerate data and calibration."""

from __future__ import annotations

import math
import statistics
import warnings

import numpy as np
import pytest
from scipy import stats as scipy_stats  # type: ignore[import-untyped]

from keelway.experiments.stats import (
    TestResult,
    bootstrap_mean_diff,
    required_sample_size,
    two_proportion_z,
    welch_t,
)

# z_(0.975), the two-sided 95% critical value of the standard normal.
Z_975 = 1.959963984540054

# Two small samples with unequal spread for the Welch checks.
WELCH_A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1]
WELCH_A1 += [21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
WELCH_A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0]
WELCH_A2 += [24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]

# Simulations per calibration check. With alpha 0.05 the false-positive
# count is Binomial(400, 0.05): mean 20, sd 4.4, so [8, 36] (2% to 9%) is
# more than 2.7 sd either side.
SIMULATIONS = 400
FALSE_POSITIVE_MIN = 0.02
FALSE_POSITIVE_MAX = 0.09


def hand_z_test(
    successes_a: int, n_a: int, successes_b: int, n_b: int
) -> tuple[float, float, float, float]:
    """Return z, p, CI low and CI high from the textbook z-test formulas."""
    rate_a = successes_a / n_a
    rate_b = successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    pooled_se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (rate_b - rate_a) / pooled_se
    p = math.erfc(abs(z) / math.sqrt(2))
    unpooled_se = math.sqrt(rate_a * (1 - rate_a) / n_a + rate_b * (1 - rate_b) / n_b)
    diff = rate_b - rate_a
    return z, p, diff - Z_975 * unpooled_se, diff + Z_975 * unpooled_se


def test_z_test_matches_hand_computation() -> None:
    result = two_proportion_z(45, 500, 70, 500)
    z, p, ci_low, ci_high = hand_z_test(45, 500, 70, 500)
    assert result.test == "two-proportion z-test"
    assert result.statistic == pytest.approx(z, abs=1e-9)
    assert result.p_value == pytest.approx(p, abs=1e-9)
    assert result.effect == pytest.approx(0.05, abs=1e-12)
    assert result.ci_low == pytest.approx(ci_low, abs=1e-9)
    assert result.ci_high == pytest.approx(ci_high, abs=1e-9)


def test_z_test_pinned_values() -> None:
    # Computed once by hand: pooled rate 0.115, SE 0.0201767, z = 0.05 / SE.
    result = two_proportion_z(45, 500, 70, 500)
    assert result.statistic == pytest.approx(2.478104, abs=1e-6)
    assert result.p_value == pytest.approx(0.013208, abs=1e-6)
    assert result.significant


def test_z_test_negative_effect() -> None:
    result = two_proportion_z(70, 500, 45, 500)
    assert result.statistic is not None
    assert result.statistic < 0
    assert result.effect == pytest.approx(-0.05, abs=1e-12)
    assert result.ci_high < 0


def test_z_test_unequal_groups() -> None:
    result = two_proportion_z(30, 1000, 12, 250)
    z, p, ci_low, ci_high = hand_z_test(30, 1000, 12, 250)
    assert result.statistic == pytest.approx(z, abs=1e-9)
    assert result.p_value == pytest.approx(p, abs=1e-9)
    assert result.ci_low == pytest.approx(ci_low, abs=1e-9)
    assert result.ci_high == pytest.approx(ci_high, abs=1e-9)


def test_z_test_alpha_sets_ci_level() -> None:
    wide = two_proportion_z(45, 500, 70, 500, alpha=0.01)
    narrow = two_proportion_z(45, 500, 70, 500, alpha=0.10)
    assert wide.ci_low < narrow.ci_low
    assert wide.ci_high > narrow.ci_high
    assert wide.alpha == 0.01
    assert not wide.significant


@pytest.mark.parametrize(
    ("successes_a", "n_a", "successes_b", "n_b"),
    [(0, 0, 5, 10), (5, 10, 0, 0), (0, 0, 0, 0), (0, 50, 0, 80), (50, 50, 80, 80)],
)
def test_z_test_degenerate_inputs(
    successes_a: int, n_a: int, successes_b: int, n_b: int
) -> None:
    result = two_proportion_z(successes_a, n_a, successes_b, n_b)
    assert result.p_value == 1.0
    assert result.statistic is None
    assert not result.significant
    assert result.effect == 0.0
    assert not math.isnan(result.ci_low)
    assert not math.isnan(result.ci_high)


def test_z_test_empty_group_ci() -> None:
    result = two_proportion_z(0, 0, 5, 10)
    assert result.ci_low == -1.0
    assert result.ci_high == 1.0


def test_z_test_opposite_extremes() -> None:
    # All failures against all successes: the pooled SE is not 0, but the
    # unpooled one is, so the interval collapses onto the effect.
    result = two_proportion_z(0, 20, 20, 20)
    assert result.significant
    assert result.effect == 1.0
    assert result.ci_low == 1.0
    assert result.ci_high == 1.0


def test_z_test_ci_clipped() -> None:
    result = two_proportion_z(0, 3, 3, 3, alpha=0.5)
    assert result.ci_high <= 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 10, 5, 10), "successes_a=-1 is negative"),
        ((1, -10, 5, 10), "n_a=-10 is negative"),
        ((11, 10, 5, 10), "successes_a=11 exceeds n_a=10"),
        ((1, 10, 12, 10), "successes_b=12 exceeds n_b=10"),
        ((1.5, 10, 5, 10), "successes_a=1.5 is invalid"),
    ],
)
def test_z_test_invalid_counts(args: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        two_proportion_z(*args)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.05, 1.5, math.nan])
def test_z_test_invalid_alpha(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha="):
        two_proportion_z(5, 10, 5, 10, alpha=alpha)


def test_z_test_accepts_numpy_integers() -> None:
    result = two_proportion_z(np.int64(45), np.int64(500), 70, 500)  # type: ignore[arg-type]
    assert result.p_value == pytest.approx(0.013208, abs=1e-6)


def test_welch_pinned_values() -> None:
    # Computed once with the formulas in test_welch_matches_hand_computation:
    # df = 24.99 by Welch–Satterthwaite.
    result = welch_t(WELCH_A2, WELCH_A1)
    assert result.test == "Welch's t-test"
    assert result.statistic == pytest.approx(-2.455356, abs=1e-6)
    assert result.p_value == pytest.approx(0.021378, abs=1e-6)
    assert result.significant


def test_welch_matches_hand_computation() -> None:
    result = welch_t(WELCH_A2, WELCH_A1)
    share_a = statistics.variance(WELCH_A2) / len(WELCH_A2)
    share_b = statistics.variance(WELCH_A1) / len(WELCH_A1)
    se = math.sqrt(share_a + share_b)
    df = (share_a + share_b) ** 2 / (
        share_a**2 / (len(WELCH_A2) - 1) + share_b**2 / (len(WELCH_A1) - 1)
    )
    effect = statistics.fmean(WELCH_A1) - statistics.fmean(WELCH_A2)
    t = effect / se
    margin = scipy_stats.t.ppf(0.975, df) * se
    assert result.effect == pytest.approx(effect, abs=1e-9)
    assert result.statistic == pytest.approx(t, abs=1e-9)
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(abs(t), df), abs=1e-9)
    assert result.ci_low == pytest.approx(effect - margin, abs=1e-9)
    assert result.ci_high == pytest.approx(effect + margin, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_welch_matches_scipy_ttest_ind(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(800, 200, 40).tolist()
    b = rng.normal(760, 120, 25).tolist()
    result = welch_t(a, b)
    expected = scipy_stats.ttest_ind(b, a, equal_var=False)
    interval = expected.confidence_interval(0.95)
    assert result.statistic == pytest.approx(float(expected.statistic), abs=1e-9)
    assert result.p_value == pytest.approx(float(expected.pvalue), abs=1e-9)
    assert result.ci_low == pytest.approx(float(interval.low), abs=1e-9)
    assert result.ci_high == pytest.approx(float(interval.high), abs=1e-9)


@pytest.mark.parametrize(("a", "b"), [([], [1.0, 2.0]), ([1.0], [2.0, 3.0]), ([], [])])
def test_welch_too_few_values(a: list[float], b: list[float]) -> None:
    result = welch_t(a, b)
    assert result.p_value == 1.0
    assert not result.significant
    assert result.statistic is None
    assert result.ci_low == -math.inf
    assert result.ci_high == math.inf


def test_welch_one_value_effect() -> None:
    assert welch_t([1.0], [2.0, 3.0]).effect == 1.5


def test_welch_empty_group_effect() -> None:
    assert welch_t([], [2.0, 3.0]).effect == 0.0


def test_welch_identical_constant_groups() -> None:
    result = welch_t([0.1] * 3, [0.1] * 4)
    assert result.p_value == 1.0
    assert not result.significant
    assert result.effect == 0.0
    assert result.ci_low == 0.0
    assert result.ci_high == 0.0


def test_welch_different_constant_groups() -> None:
    result = welch_t([1.0, 1.0], [2.0, 2.0, 2.0])
    assert result.p_value == 0.0
    assert result.significant
    assert result.statistic is None
    assert result.effect == 1.0
    assert result.ci_low == 1.0
    assert result.ci_high == 1.0


def test_welch_one_constant_group() -> None:
    # Only b varies, so the Welch df equals len(b) - 1 and t = 1 / sqrt(1 / 3).
    result = welch_t([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    assert result.statistic == pytest.approx(math.sqrt(3), abs=1e-12)
    assert result.p_value == pytest.approx(2 * scipy_stats.t.sf(math.sqrt(3), 2))


def test_welch_one_constant_group_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = welch_t([0.1] * 5, [0.2, 0.3, 0.5])
    assert not math.isnan(result.p_value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_welch_rejects_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match=r"b\[1\]=.* is not finite"):
        welch_t([1.0, 2.0], [1.0, bad, 3.0])


def test_welch_rejects_nested_values() -> None:
    with pytest.raises(ValueError, match="flat sequence"):
        welch_t([[1.0, 2.0]], [1.0, 2.0])  # type: ignore[list-item]


def test_welch_rejects_overflow() -> None:
    with pytest.raises(ValueError, match="overflows"):
        welch_t([1e200, -1e200, 0.0], [1.0, 2.0, 3.0])


def test_bootstrap_deterministic() -> None:
    first = bootstrap_mean_diff(WELCH_A2, WELCH_A1, resamples=2000, seed=7)
    second = bootstrap_mean_diff(WELCH_A2, WELCH_A1, resamples=2000, seed=7)
    assert first == second


def test_bootstrap_seed_changes_ci() -> None:
    first = bootstrap_mean_diff(WELCH_A2, WELCH_A1, resamples=2000, seed=7)
    second = bootstrap_mean_diff(WELCH_A2, WELCH_A1, resamples=2000, seed=8)
    assert first.ci_low != second.ci_low


def test_bootstrap_small_samples() -> None:
    result = bootstrap_mean_diff(WELCH_A2, WELCH_A1)
    assert result.test == "bootstrap"
    assert result.statistic is None
    assert result.effect == pytest.approx(-2.166667, abs=1e-6)
    assert result.significant
    assert result.ci_high < 0


def test_bootstrap_close_to_welch() -> None:
    # With 2,000 normal values per group both intervals estimate the same
    # thing, and the bootstrap one is only slightly narrower.
    rng = np.random.default_rng(11)
    a = rng.normal(800, 200, 2000).tolist()
    b = rng.normal(760, 200, 2000).tolist()
    boot = bootstrap_mean_diff(a, b, resamples=4000)
    welch = welch_t(a, b)
    assert boot.effect == pytest.approx(welch.effect, abs=1e-9)
    assert boot.ci_low == pytest.approx(welch.ci_low, abs=2.0)
    assert boot.ci_high == pytest.approx(welch.ci_high, abs=2.0)


def test_bootstrap_chunked_resampling() -> None:
    # 10,000 resamples of 500 values take several chunks of 1,000,000.
    rng = np.random.default_rng(12)
    a = rng.normal(0, 1, 500).tolist()
    result = bootstrap_mean_diff(a, [x + 0.5 for x in a])
    assert result.significant
    assert result.ci_low < 0.5 < result.ci_high


def test_bootstrap_p_value_floor() -> None:
    result = bootstrap_mean_diff([1.0, 2.0, 3.0], [11.0, 12.0, 13.0], resamples=999)
    assert result.p_value == pytest.approx(2 / 1000)


def test_bootstrap_identical_groups() -> None:
    result = bootstrap_mean_diff([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], resamples=999)
    assert result.p_value == 1.0
    assert not result.significant


def test_bootstrap_constant_groups() -> None:
    same = bootstrap_mean_diff([2.0, 2.0], [2.0, 2.0, 2.0])
    different = bootstrap_mean_diff([2.0, 2.0], [3.0, 3.0, 3.0])
    assert same.p_value == 1.0
    assert different.p_value == 0.0
    assert different.significant


def test_bootstrap_too_few_values() -> None:
    result = bootstrap_mean_diff([1.0], [2.0, 3.0])
    assert result.p_value == 1.0
    assert result.ci_low == -math.inf


def test_bootstrap_invalid_resamples() -> None:
    with pytest.raises(ValueError, match="resamples=0"):
        bootstrap_mean_diff([1.0, 2.0], [1.0, 2.0], resamples=0)


def test_bootstrap_rejects_nan() -> None:
    with pytest.raises(ValueError, match="not finite"):
        bootstrap_mean_diff([1.0, math.nan], [1.0, 2.0])


def test_bootstrap_rejects_overflow() -> None:
    with pytest.raises(ValueError, match="overflows"):
        bootstrap_mean_diff([1.7e308, 1.7e308], [1.0, 2.0], resamples=10)


def test_sample_size_published_value() -> None:
    # The JMP 13.2 documentation, "Two Sample Proportions", gives 2554 for
    # p1 = 0.08 and p2 = 0.06, two-sided alpha 0.05 and power 0.8:
    # https://jmp.com/support/help/13-2/Two_Sample_Proportions.shtml
    assert required_sample_size(0.08, -0.02) == 2554


def test_sample_size_pinned_value() -> None:
    # Computed once from the formula: 10% -> 12% needs 3,841 per group.
    assert required_sample_size(0.10, 0.02) == 3841


def test_sample_size_matches_formula() -> None:
    z_power = 0.8416212335729143  # z_(0.8)
    p1, p2 = 0.10, 0.14
    p = (p1 + p2) / 2
    numerator = Z_975 * math.sqrt(2 * p * (1 - p)) + z_power * math.sqrt(
        p1 * (1 - p1) + p2 * (1 - p2)
    )
    assert required_sample_size(0.10, 0.04) == math.ceil(numerator**2 / 0.04**2)


def test_sample_size_symmetric_effect() -> None:
    assert required_sample_size(0.5, 0.1) == required_sample_size(0.5, -0.1)


def test_sample_size_grows_with_power() -> None:
    assert required_sample_size(0.1, 0.02, power=0.9) > required_sample_size(0.1, 0.02)


def test_sample_size_low_power_floor() -> None:
    assert required_sample_size(0.5, 0.4, power=0.01) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"baseline_rate": 1.2, "minimum_effect": 0.1}, "baseline_rate=1.2"),
        ({"baseline_rate": -0.1, "minimum_effect": 0.1}, "baseline_rate=-0.1"),
        ({"baseline_rate": 0.5, "minimum_effect": 0.0}, "minimum_effect=0.0"),
        ({"baseline_rate": 0.5, "minimum_effect": math.nan}, "minimum_effect=nan"),
        ({"baseline_rate": 0.9, "minimum_effect": 0.2}, "outside"),
        ({"baseline_rate": 0.1, "minimum_effect": -0.2}, "outside"),
        ({"baseline_rate": 0.1, "minimum_effect": 0.1, "power": 1.0}, "power=1.0"),
        ({"baseline_rate": 0.1, "minimum_effect": 0.1, "alpha": 0.0}, "alpha=0.0"),
    ],
)
def test_sample_size_invalid(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        required_sample_size(**kwargs)


def test_result_not_collected() -> None:
    assert TestResult.__test__ is False


def test_z_test_false_positive_rate() -> None:
    rng = np.random.default_rng(101)
    successes = rng.binomial(200, 0.2, size=(SIMULATIONS, 2))
    positives = sum(
        two_proportion_z(int(a), 200, int(b), 200).significant for a, b in successes
    )
    assert FALSE_POSITIVE_MIN <= positives / SIMULATIONS <= FALSE_POSITIVE_MAX


def test_welch_false_positive_rate() -> None:
    rng = np.random.default_rng(102)
    positives = 0
    for _ in range(SIMULATIONS):
        a = rng.normal(800, 200, 30).tolist()
        b = rng.normal(800, 200, 30).tolist()
        positives += welch_t(a, b).significant
    assert FALSE_POSITIVE_MIN <= positives / SIMULATIONS <= FALSE_POSITIVE_MAX


def test_bootstrap_false_positive_rate() -> None:
    # Skewed data, as latencies are, where the bootstrap is the usual choice.
    rng = np.random.default_rng(103)
    positives = 0
    for seed in range(SIMULATIONS):
        a = rng.exponential(800, 40).tolist()
        b = rng.exponential(800, 40).tolist()
        result = bootstrap_mean_diff(a, b, resamples=1000, seed=seed)
        positives += result.significant
    assert FALSE_POSITIVE_MIN <= positives / SIMULATIONS <= FALSE_POSITIVE_MAX


def test_z_test_ci_coverage() -> None:
    # The 95% interval should contain the true effect of +4 points in about
    # 95% of runs. Binomial(400, 0.95) has sd 1.1%, so [91%, 99%] is wide.
    rng = np.random.default_rng(104)
    baseline = rng.binomial(1000, 0.10, size=SIMULATIONS)
    treatment = rng.binomial(1000, 0.14, size=SIMULATIONS)
    covered = 0
    for a, b in zip(baseline, treatment, strict=True):
        result = two_proportion_z(int(a), 1000, int(b), 1000)
        covered += result.ci_low <= 0.04 <= result.ci_high
    assert 0.91 <= covered / SIMULATIONS <= 0.99


def test_welch_ci_coverage() -> None:
    rng = np.random.default_rng(105)
    covered = 0
    for _ in range(SIMULATIONS):
        a = rng.normal(800, 200, 100).tolist()
        b = rng.normal(760, 200, 100).tolist()
        result = welch_t(a, b)
        covered += result.ci_low <= -40 <= result.ci_high
    assert 0.91 <= covered / SIMULATIONS <= 0.99
