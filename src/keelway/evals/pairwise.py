"""Pairwise judging of two runs: which output of each case does a judge prefer?

Each case that both runs answered (first trial) goes to
:func:`~keelway.evals.evaluators.judge.compare_pair`, which asks the judge
twice with the outputs swapped, so a verdict that follows the position
comes out as a tie.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keelway.evals.base import Case, Services
from keelway.evals.evaluators.judge import PAIRWISE_RUBRIC, PairVerdict, compare_pair
from keelway.evals.results import CaseResult


@dataclass(frozen=True, slots=True)
class PairwiseResult:
    """The judge's preference on every case both runs answered."""

    verdicts: dict[str, PairVerdict]
    skipped: list[str]

    def counts(self) -> Counter[str]:
        """Return how many cases A won, B won, tied or errored."""
        return Counter(
            verdict.winner if verdict.status == "ok" and verdict.winner else "error"
            for verdict in self.verdicts.values()
        )


async def judge_pairs(
    cases: Mapping[str, Case],
    results_a: Sequence[CaseResult],
    results_b: Sequence[CaseResult],
    services: Services,
    rubric: str = PAIRWISE_RUBRIC,
    model: str | None = None,
    concurrency: int = 4,
) -> PairwiseResult:
    """Judge run A's output against run B's on each case both answered."""
    first_a = {r.case_key: r for r in results_a if r.trial == 0 and r.status == "ok"}
    first_b = {r.case_key: r for r in results_b if r.trial == 0 and r.status == "ok"}
    keys = [key for key in first_a if key in first_b and key in cases]
    skipped = sorted((set(first_a) | set(first_b)) - set(keys))
    limit = asyncio.Semaphore(concurrency)

    async def one(key: str) -> PairVerdict:
        async with limit:
            return await compare_pair(
                cases[key],
                first_a[key].output or "",
                first_b[key].output or "",
                services,
                rubric,
                model,
            )

    verdicts = await asyncio.gather(*(one(key) for key in keys))
    return PairwiseResult(dict(zip(keys, verdicts, strict=True)), skipped)
