"""Sticky variant assignment: stable buckets, split shares and split validation."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from keelway.experiments.assign import (
    BUCKETS,
    Variant,
    _upper_bounds,
    bucket,
    choose,
    validate_split,
)

USERS = [f"user-{i:04d}" for i in range(1, 2001)]
HALF_SPLIT = [Variant("control", "v1", 50.0), Variant("treatment", "v2", 50.0)]
TENTH_SPLIT = [Variant("control", "v1", 90.0), Variant("treatment", "v2", 10.0)]


def share(experiment: str, variants: list[Variant], name: str) -> float:
    """Return the share of USERS that choose assigns to the variant called name."""
    chosen = [choose(experiment, variants, user).name for user in USERS]
    return chosen.count(name) / len(USERS)


def test_bucket_pinned_values() -> None:
    # Computed once from SHA-256. A change here reassigns every user.
    assert bucket("exp", "user-0001") == 2566
    assert bucket("exp", "user-0002") == 3280
    assert bucket("exp", "user-0003") == 7940
    assert bucket("prompt-v2-test", "user-0001") == 9490
    assert bucket("", "") == 3192
    assert bucket("é", "ü") == 1799


def test_bucket_range() -> None:
    buckets = [bucket("exp", user) for user in USERS]
    assert min(buckets) >= 0
    assert max(buckets) < BUCKETS


def test_bucket_separator() -> None:
    assert bucket("ab", "c") != bucket("a", "bc")


def test_bucket_stable_across_processes() -> None:
    # Python's hash() of str changes with PYTHONHASHSEED, but bucket() must not.
    code = (
        "from keelway.experiments.assign import bucket\n"
        "print(bucket('exp', 'user-0001'))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    output = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert int(output) == bucket("exp", "user-0001")


def test_choose_half_split_share() -> None:
    assert 0.47 <= share("exp", HALF_SPLIT, "control") <= 0.53


def test_choose_tenth_split_share() -> None:
    assert 0.085 <= share("exp", TENTH_SPLIT, "treatment") <= 0.115


def test_choose_sticky() -> None:
    for user in USERS:
        first = choose("exp", HALF_SPLIT, user)
        repeats = {choose("exp", HALF_SPLIT, user) for _ in range(5)}
        assert repeats == {first}, user


def test_choose_experiment_reshuffles() -> None:
    first = [choose("exp-a", HALF_SPLIT, user).name for user in USERS]
    second = [choose("exp-b", HALF_SPLIT, user).name for user in USERS]
    moved = sum(a != b for a, b in zip(first, second, strict=True)) / len(USERS)
    assert 0.4 <= moved <= 0.6


def test_choose_three_way_split() -> None:
    variants = [
        Variant("a", "v1", 33.33),
        Variant("b", "v2", 33.33),
        Variant("c", "v3", 33.34),
    ]
    shares = [share("exp", variants, name) for name in ("a", "b", "c")]
    assert all(0.29 <= value <= 0.37 for value in shares), shares


def test_choose_validates_split() -> None:
    with pytest.raises(ValueError, match="sum to 90"):
        choose("exp", [Variant("a", "v1", 40.0), Variant("b", "v2", 50.0)], "user-0001")


def test_upper_bounds_half() -> None:
    assert _upper_bounds(HALF_SPLIT) == [5000, BUCKETS]


def test_upper_bounds_thirds() -> None:
    variants = [
        Variant("a", "v1", 33.33),
        Variant("b", "v2", 33.33),
        Variant("c", "v3", 33.34),
    ]
    assert _upper_bounds(variants) == [3333, 6666, BUCKETS]


def test_upper_bounds_rounding() -> None:
    # Bounds round the cumulative weight, so 100/3 each gives 3333 and 6667.
    variants = [Variant(name, name, 100 / 3) for name in ("a", "b", "c")]
    assert _upper_bounds(variants) == [3333, 6667, BUCKETS]


def test_upper_bounds_ten_way() -> None:
    variants = [Variant(f"v{i}", f"v{i}", 10.0) for i in range(10)]
    assert _upper_bounds(variants) == [1000 * (i + 1) for i in range(10)]


def test_validate_split_float_weights() -> None:
    variants = [Variant(name, name, 100 / 3) for name in ("a", "b", "c")]
    validate_split(variants)


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([], "at least 2 variants, got 0"),
        ([Variant("a", "v1", 100.0)], "at least 2 variants, got 1"),
        (
            [Variant("a", "v1", 50.0), Variant("a", "v2", 50.0)],
            "variant name 'a' is used more than once",
        ),
        (
            [Variant("", "v1", 50.0), Variant("b", "v2", 50.0)],
            "version 'v1' has an empty name",
        ),
        (
            [Variant("a", "v1", 0.0), Variant("b", "v2", 100.0)],
            "variant 'a' has weight 0.0",
        ),
        (
            [Variant("a", "v1", -10.0), Variant("b", "v2", 110.0)],
            "variant 'a' has weight -10.0",
        ),
        (
            [Variant("a", "v1", math.nan), Variant("b", "v2", 50.0)],
            "variant 'a' has weight nan",
        ),
        (
            [Variant("a", "v1", 0.5), Variant("b", "v2", 0.5)],
            r"sum to 1.0, not 100 \(a=0.5, b=0.5\)",
        ),
        (
            [Variant("a", "v1", 50.0), Variant("b", "v2", 50.001)],
            "sum to 100.001",
        ),
    ],
)
def test_validate_split_errors(variants: list[Variant], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_split(variants)
