"""Measure the latency of the PII scanner alone on 1 KB and 10 KB texts.

Each case is one text scanned ``--scans`` times after ``--warmup`` scans.
A run records the p50 and p99 of those scans, and the table shows the
median of each over ``--runs`` runs. The texts are built here:

- ``1 KB, 5 entities``: a support message with an email, a phone, a card,
  an IBAN and an IP address, padded with prose to 1,024 characters;
- ``1 KB, none``: 1,024 characters of prose with numbers but no PII, the
  common case on a gateway;
- ``10 KB, entities``: the first text's entities repeated through
  10,240 characters (the table shows how many were found), which also
  exercises the scan windows.

Building the scanner (Presidio's engine and recognizers) happens once
before timing and is printed separately. Run it from the repository root::

    python bench/guard_pii.py [--runs 5] [--scans 400] [--warmup 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

# Imported here so that the build time printed below leaves out the import
# of Presidio, spaCy and their dependencies (seconds on a cold start).
import keelway.guardrails.pii  # noqa: F401
from keelway.guardrails.base import ScanContext
from keelway.guardrails.registry import build_scanner

ENTITIES = (
    "Hi team, please update the account for Jane. Her email is "
    "jane.doe+billing@mail.example.com and her mobile is +44 20 7946 0958. "
    "She paid with card 4111 1111 1111 1111 last week, and the refund goes to "
    "IBAN DE89 3704 0044 0532 0130 00. The request came from 203.0.113.42 at "
    "2024-01-02T03:04:05Z. "
)
PROSE = (
    "The quarterly report covers revenue, churn and the roadmap for release "
    "4.2 of the product line; 12 teams shipped 37 features in 2024. "
)


def build_texts() -> list[tuple[str, str]]:
    one_kb = (ENTITIES + PROSE * 10)[:1024]
    plain = (PROSE * 12)[:1024]
    ten_kb = ((ENTITIES + PROSE * 6) * 12)[:10240]
    return [
        ("1 KB, 5 entities", one_kb),
        ("1 KB, none", plain),
        ("10 KB, entities", ten_kb),
    ]


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def time_scans(scan, text: str, scans: int, warmup: int) -> tuple[float, float]:
    """Return the p50 and p99 latency of ``scans`` scans, in milliseconds."""
    context = ScanContext()
    for _ in range(warmup):
        scan(text, context)
    samples = []
    for _ in range(scans):
        started = time.perf_counter()
        scan(text, context)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return percentile(samples, 0.5), percentile(samples, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per case")
    parser.add_argument("--scans", type=int, default=400, help="timed scans per run")
    parser.add_argument("--warmup", type=int, default=20, help="untimed scans per run")
    args = parser.parse_args()

    started = time.perf_counter()
    scanner = build_scanner("pii", {})
    build_ms = (time.perf_counter() - started) * 1000
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs,"
        f" scanner built in {build_ms:.0f} ms"
    )
    print(f"{args.runs} runs x {args.scans} scans; medians over runs\n")
    print(f"{'case':<20} {'chars':>6} {'found':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for name, text in build_texts():
        findings = len(scanner.scan(text, ScanContext()).findings)
        p50s, p99s = [], []
        for _ in range(args.runs):
            p50, p99 = time_scans(scanner.scan, text, args.scans, args.warmup)
            p50s.append(p50)
            p99s.append(p99)
        print(
            f"{name:<20} {len(text):>6} {findings:>6}"
            f" {statistics.median(p50s):>8.2f} {statistics.median(p99s):>8.2f}"
        )


if __name__ == "__main__":
    main()
