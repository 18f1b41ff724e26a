"""Latency of the injection and secrets scanners, each alone, at 1 KB and 10 KB.

Every case scans one text ``--iterations`` times per run and reports p50 and
p99 per run; the printed figures are the medians over ``--runs`` runs. The
classifier case clears the scanner's window cache before each scan, so it
measures the encoder; the cached case shows a text whose windows were seen
before (a resent conversation turn). Run from the repository root::

    python bench/guard_injection.py            # about 4 min on a busy 2-core machine
    python bench/guard_injection.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

from keelway.guardrails.base import ScanContext
from keelway.guardrails.injection import InjectionScanner, split_windows
from keelway.guardrails.normalize import normalize
from keelway.guardrails.secrets import build_secrets

PARAGRAPH = (
    "Thanks for the update on the billing migration. Before we schedule the"
    " cutover, could you confirm that invoices created during the freeze keep"
    " their original numbers, and that the reporting dashboard reads from the"
    " new tables by then? Customer support also asked for a short FAQ. "
)


def make_text(size: int) -> str:
    """Return benign text of ``size`` characters, cut at a word boundary."""
    text = PARAGRAPH * (size // len(PARAGRAPH) + 1)
    return text[:size].rsplit(" ", 1)[0]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(
    scan: Callable[[], object], iterations: int, runs: int
) -> tuple[float, float]:
    """Return the median over runs of p50 and p99, in milliseconds."""
    p50s, p99s = [], []
    for _ in range(runs):
        samples = []
        for _ in range(iterations):
            started = time.perf_counter()
            scan()
            samples.append((time.perf_counter() - started) * 1000)
        p50s.append(percentile(samples, 0.5))
        p99s.append(percentile(samples, 0.99))
    return statistics.median(p50s), statistics.median(p99s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per case")
    parser.add_argument(
        "--iterations", type=int, default=40, help="scans per run for the fast cases"
    )
    parser.add_argument(
        "--model-iterations",
        type=int,
        default=8,
        help="scans per run for cases that call the encoder",
    )
    parser.add_argument("--quick", action="store_true", help="1 run, few scans")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.iterations, args.model_iterations = 1, 10, 2

    import torch

    context = ScanContext(source="user")
    rules_only = InjectionScanner(classifier=False)
    with_classifier = InjectionScanner()
    secrets = build_secrets({})
    with_classifier.scan("warm up the encoder", context)

    def uncached(text: str) -> Callable[[], object]:
        def scan() -> object:
            with_classifier._cache.clear()
            return with_classifier.scan(text, context)

        return scan

    results = []
    for size in (1_000, 10_000):
        text = make_text(size)
        windows = len(split_windows(normalize(text).text, 256))
        cases = {
            "normalize": (lambda t=text: normalize(t), args.iterations),
            "injection rules only": (
                lambda t=text: rules_only.scan(t, context),
                args.iterations,
            ),
            "injection + classifier": (uncached(text), args.model_iterations),
            "injection + classifier, cached": (
                lambda t=text: with_classifier.scan(t, context),
                args.iterations,
            ),
            "secrets": (lambda t=text: secrets.scan(t, context), args.iterations),
        }
        for name, (scan, iterations) in cases.items():
            p50, p99 = measure(scan, iterations, args.runs)
            results.append(
                {
                    "case": name,
                    "bytes": size,
                    "windows": windows,
                    "p50_ms": p50,
                    "p99_ms": p99,
                }
            )
            print(
                f"{name:32} {size:>6} B  windows {windows:2d}"
                f"  p50 {p50:9.3f} ms  p99 {p99:9.3f} ms"
            )
    print(
        f"python {platform.python_version()}, torch {torch.__version__},"
        f" {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
