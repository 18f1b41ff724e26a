"""The clock type that limiters take, so tests can move time without sleeping."""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]
"""A function that returns the current time in seconds since the Unix epoch."""

MICROS_PER_SECOND = 1_000_000


def to_micros(seconds: float) -> int:
    """Return a time in seconds as whole microseconds, the unit limiters count in."""
    return int(seconds * MICROS_PER_SECOND)
