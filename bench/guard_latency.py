"""Measure what the default guardrail policy costs per request.

The script builds the default config's guardrail policy (``keelway init``
writes the same one) and runs its input stage, the way the gateway does for
each chat request, on prompts of about 1 KB and 10 KB. Each prompt is
support-desk prose with an email address, a phone number, a card number and
an IBAN in every kilobyte, so the PII recognizers do real work. Every size
runs ``--runs`` times with ``--requests`` requests after a warm-up, and the
report gives the median over the runs of p50 and p99 of:

- the whole input stage (all scanners, rewriting and pseudonyms);
- each scanner on its own, from the verdicts' timings.

Run it from the repository root::

    python bench/guard_latency.py [--requests N] [--runs R] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from keelway.config import default_config_text, parse_config
from keelway.guardrails.engine import GuardEngine

SENTENCES = [
    "Hello, I am writing about the invoice from last month for our office.",
    "Please send the corrected copy to {email} before Friday if you can.",
    "You can also call me on {phone} during business hours, any weekday.",
    "The payment was taken from the card ending {card} and it was charged twice.",
    "Refunds should go to the account {iban} which is the one we use for rent.",
    "Our team has used the service for three years and we are mostly happy.",
    "The dashboard shows the wrong currency for the second line item again.",
    "Could you also explain why the tariff changed without any notice to us?",
]
VALUES = {
    "email": ["maria.lopez+billing@mail.example.com", "j.smith@support.example.org"],
    "phone": ["+44 20 7946 0958", "(415) 555-2671", "+49 30 901820"],
    "card": ["4111 1111 1111 1111", "5500-0000-0000-0004"],
    "iban": ["DE89 3704 0044 0532 0130 00", "GB82 WEST 1234 5698 7654 32"],
}


def prompt(size: int) -> str:
    """Return support prose of about ``size`` characters."""
    parts: list[str] = []
    index = 0
    while sum(len(part) + 1 for part in parts) < size:
        template = SENTENCES[index % len(SENTENCES)]
        values = {
            name: options[index % len(options)] for name, options in VALUES.items()
        }
        parts.append(template.format(**values))
        index += 1
    return " ".join(parts)[:size]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    position = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[position]


async def measure(
    engine: GuardEngine, text: str, requests: int, warmup: int
) -> dict[str, Any]:
    policy = engine.policies["standard"]
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are a helpful billing assistant."},
            {"role": "user", "content": text},
        ],
    }
    for _ in range(warmup):
        await engine.check_input(policy, body)
    totals: list[float] = []
    scanners: dict[str, list[float]] = {}
    for _ in range(requests):
        started = time.perf_counter()
        result = await engine.check_input(policy, body)
        totals.append((time.perf_counter() - started) * 1000)
        for verdict in result.verdicts:
            scanners.setdefault(verdict.scanner, []).append(verdict.elapsed_ms)
    return {
        "p50": percentile(totals, 0.5),
        "p99": percentile(totals, 0.99),
        "scanners": {
            name: {"p50": percentile(times, 0.5), "p99": percentile(times, 0.99)}
            for name, times in scanners.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--sizes", default="1024,10240")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    config = parse_config(yaml.safe_load(default_config_text()))
    started = time.perf_counter()
    engine = GuardEngine(config.guardrails)
    build_seconds = time.perf_counter() - started
    sizes = [int(part) for part in args.sizes.split(",")]
    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "build_seconds": round(build_seconds, 2),
        "sizes": {},
    }
    for size in sizes:
        text = prompt(size)
        runs = [
            asyncio.run(measure(engine, text, args.requests, args.warmup))
            for _ in range(args.runs)
        ]
        names = list(runs[0]["scanners"])
        report["sizes"][size] = {
            "p50": statistics.median(run["p50"] for run in runs),
            "p99": statistics.median(run["p99"] for run in runs),
            "scanners": {
                name: {
                    "p50": statistics.median(
                        run["scanners"][name]["p50"] for run in runs
                    ),
                    "p99": statistics.median(
                        run["scanners"][name]["p99"] for run in runs
                    ),
                }
                for name in names
            },
        }
    print(f"policy 'standard' built in {build_seconds:.2f}s; {report['machine']}")
    print(f"{args.runs} runs x {args.requests} requests per size; medians of runs\n")
    print(
        "| prompt | whole input stage p50 / p99 ms | "
        + " | ".join(
            f"{name} p50 / p99 ms" for name in report["sizes"][sizes[0]]["scanners"]
        )
        + " |"
    )
    print("| --- " * (2 + len(report["sizes"][sizes[0]]["scanners"])) + "|")
    for size in sizes:
        row = report["sizes"][size]
        cells = [f"{size / 1024:g} KB", f"{row['p50']:.2f} / {row['p99']:.2f}"]
        cells += [
            f"{value['p50']:.2f} / {value['p99']:.2f}"
            for value in row["scanners"].values()
        ]
        print("| " + " | ".join(cells) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
