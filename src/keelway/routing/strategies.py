"""Load-balancing strategies: which deployment of a group takes a request.

- ``weighted``: random, in proportion to each deployment's ``weight``;
- ``least_busy``: the fewest requests in flight from this process;
- ``lowest_latency``: the lowest mean latency over the last
  ``LATENCY_WINDOW`` successful calls (a deployment with no calls yet
  counts as 0, so each one is tried);
- ``lowest_cost``: the lowest list price for a request of typical shape.

Sticky routing sits on top: with a sticky value (such as the ``user``), the
deployment comes from rendezvous hashing over the available deployments,
so a caller keeps its deployment while it stays available and only the
callers of a deployment that leaves are moved.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import deque
from collections.abc import Sequence
from typing import Protocol

LATENCY_WINDOW = 20


class Candidate(Protocol):
    """The attributes of a deployment that strategies read."""

    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> float: ...

    @property
    def stats(self) -> DeploymentStats: ...

    @property
    def unit_price(self) -> float | None: ...


class DeploymentStats:
    """Live counters of one deployment in this process."""

    def __init__(self) -> None:
        self.in_flight = 0
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def observe_latency(self, seconds: float) -> None:
        """Add the latency of a successful call to the moving window."""
        self._latencies.append(seconds)

    @property
    def mean_latency(self) -> float:
        """Mean latency in seconds over the window, 0 before the first call."""
        if not self._latencies:
            return 0.0
        return sum(self._latencies) / len(self._latencies)


def choose(
    strategy: str,
    candidates: Sequence[Candidate],
    *,
    sticky: str | None = None,
    rng: random.Random | None = None,
) -> Candidate:
    """Return the candidate that takes the request."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    if len(candidates) == 1:
        return candidates[0]
    if sticky is not None:
        return _rendezvous(candidates, sticky)
    rng = rng or random.Random()
    if strategy == "least_busy":
        return _lowest(candidates, lambda c: c.stats.in_flight, rng)
    if strategy == "lowest_latency":
        return _lowest(candidates, lambda c: c.stats.mean_latency, rng)
    if strategy == "lowest_cost":
        return _lowest(
            candidates,
            lambda c: math.inf if c.unit_price is None else c.unit_price,
            rng,
        )
    weights = [c.weight for c in candidates]
    return rng.choices(list(candidates), weights=weights)[0]


def _lowest(
    candidates: Sequence[Candidate], key: _Key, rng: random.Random
) -> Candidate:
    best = min(key(c) for c in candidates)
    tied = [c for c in candidates if key(c) == best]
    return tied[0] if len(tied) == 1 else rng.choice(tied)


class _Key(Protocol):
    def __call__(self, candidate: Candidate, /) -> float: ...


def _rendezvous(candidates: Sequence[Candidate], sticky: str) -> Candidate:
    """Weighted rendezvous (highest random weight) hashing."""

    def score(candidate: Candidate) -> float:
        digest = hashlib.blake2b(
            f"{candidate.name}\x00{sticky}".encode(), digest_size=8
        ).digest()
        # A uniform number in (0, 1), then -w / ln(u) weights the choice.
        unit = (int.from_bytes(digest, "big") + 1) / (2**64 + 1)
        return -candidate.weight / math.log(unit)

    return max(candidates, key=score)
