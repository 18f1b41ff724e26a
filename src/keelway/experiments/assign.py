"""Sticky assignment of units (users, sessions) to experiment variants.

A unit's bucket comes from SHA-256 of the experiment name and the unit id,
so every process and machine puts the same unit in the same variant
without shared state, and a new experiment name reshuffles the units.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

BUCKETS = 10_000

# Tolerance for float rounding when checking that weights sum to 100.
_WEIGHT_SUM_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: a prompt version and its share of traffic.

    ``weight`` is the share in percent, so the weights of an experiment sum
    to 100.
    """

    name: str
    version: str
    weight: float


def bucket(experiment: str, unit: str) -> int:
    """Return the unit's bucket in [0, BUCKETS) for the experiment.

    The bucket is the first 8 bytes of SHA-256 of ``experiment``, a NUL byte
    and ``unit`` (UTF-8), read as a big-endian integer, modulo BUCKETS. The
    NUL separator keeps ("ab", "c") and ("a", "bc") apart.
    """
    digest = hashlib.sha256(f"{experiment}\x00{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def validate_split(variants: Sequence[Variant]) -> None:
    """Raise ValueError unless the variants form a valid traffic split.

    A valid split has at least 2 variants with unique non-empty names, each
    with a finite weight above 0, and the weights sum to 100 within 1e-9.
    """
    if len(variants) < 2:
        raise ValueError(
            f"an experiment needs at least 2 variants, got {len(variants)}. "
            "Add a baseline and a treatment"
        )

    seen: set[str] = set()
    for variant in variants:
        if not variant.name:
            raise ValueError(
                f"variant with version {variant.version!r} has an empty name. Name it"
            )
        if variant.name in seen:
            raise ValueError(
                f"variant name {variant.name!r} is used more than once. "
                "Give each variant a unique name"
            )
        seen.add(variant.name)
        if not (math.isfinite(variant.weight) and variant.weight > 0.0):
            raise ValueError(
                f"variant {variant.name!r} has weight {variant.weight}. "
                "Pass a weight above 0 (percent of traffic)"
            )

    total = math.fsum(variant.weight for variant in variants)
    if abs(total - 100.0) > _WEIGHT_SUM_TOLERANCE:
        weights = ", ".join(f"{variant.name}={variant.weight}" for variant in variants)
        raise ValueError(
            f"variant weights sum to {total}, not 100 ({weights}). "
            "Pass weights in percent of traffic"
        )


def choose(experiment: str, variants: Sequence[Variant], unit: str) -> Variant:
    """Return the variant that the unit is assigned to in the experiment.

    The unit's bucket falls into one of consecutive bucket ranges, one per
    variant in the given order, each ``weight * BUCKETS / 100`` buckets wide.
    The same unit, experiment and split always give the same variant.

    Raises:
        ValueError: the split is invalid (see validate_split).
    """
    validate_split(variants)
    unit_bucket = bucket(experiment, unit)
    for variant, upper_bound in zip(variants, _upper_bounds(variants), strict=True):
        if unit_bucket < upper_bound:
            return variant
    # _upper_bounds ends at BUCKETS and bucket() is below it.
    raise AssertionError(f"bucket {unit_bucket} is outside [0, {BUCKETS})")


def _upper_bounds(variants: Sequence[Variant]) -> list[int]:
    """Return the exclusive upper bucket bound of each variant's range.

    The bounds come from the rounded cumulative weights, so rounding errors
    do not add up over many variants, and the last bound is exactly BUCKETS.
    NOTE: a variant with a weight below about 0.005% rounds to an empty
    range and gets no units.
    """
    bounds: list[int] = []
    cumulative = 0.0
    for variant in variants[:-1]:
        cumulative += variant.weight
        bounds.append(round(cumulative * BUCKETS / 100.0))
    bounds.append(BUCKETS)
    return bounds
