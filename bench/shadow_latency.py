"""Measure what a shadow test costs the live answer.

The script starts the fake OpenAI upstream and one ``keelway serve`` process
(as ``gateway_overhead.py`` does), creates a prompt with two approved
versions and labels the first ``production``. Each run then sends the same
requests for ``bench@production`` twice: once with no experiment and once
with a shadow test that copies every request (sample rate 1.0) to the second
version. The order alternates between runs. The report gives, per
concurrency, the median over the runs of the live answers' p50 and p99
latency and requests per second with and without the shadow test, and
checks that every shadowed request stored both outputs.

Run it from the repository root::

    python bench/shadow_latency.py [--requests N] [--runs R] [--concurrency 1,8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from gateway_overhead import (
    MODEL,
    Burst,
    Environment,
    Load,
    environment,
    percentile,
)
from sqlalchemy import func, select

from keelway.experiments.store import ExperimentStore
from keelway.governance import AuditLog, Principal
from keelway.prompts.content import PromptContent
from keelway.prompts.registry import PromptRegistry
from keelway.store.models import Experiment, ShadowSample

AUTHOR = Principal.local()
REVIEWER = Principal("bench-reviewer", "user", AUTHOR.grants)
PROMPT = "bench"


def _content(wording: str) -> PromptContent:
    return PromptContent.from_dict(
        {
            "variables": {"question": "string"},
            "messages": [
                {"role": "system", "content": wording},
                {"role": "user", "content": "{{ question }}"},
            ],
            "model": {"group": MODEL, "max_tokens": 16},
        }
    )


def prepare(env: Environment) -> tuple[PromptRegistry, ExperimentStore]:
    """Create the prompt with an approved live and candidate version."""
    audit = AuditLog(env.database)
    registry = PromptRegistry(env.database, audit)
    registry.create(AUTHOR, PROMPT, _content("Answer in one sentence."))
    registry.propose(AUTHOR, PROMPT, _content("Answer in one short sentence."))
    for version in ("1.0.0", "1.1.0"):
        registry.review(REVIEWER, PROMPT, version, approve=True)
    registry.set_label(AUTHOR, PROMPT, "production", "1.0.0")
    return registry, ExperimentStore(env.database, audit)


def stored_samples(env: Environment, name: str) -> int:
    with env.database.session() as session:
        experiment = session.scalar(select(Experiment).where(Experiment.name == name))
        assert experiment is not None
        count = session.scalar(
            select(func.count())
            .select_from(ShadowSample)
            .where(ShadowSample.experiment_id == experiment.id)
        )
        return int(count or 0)


def wait_for_samples(env: Environment, name: str, expected: int) -> int:
    deadline = time.monotonic() + 60
    count = stored_samples(env, name)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        count = stored_samples(env, name)
    return count


async def send_numbered(
    session: aiohttp.ClientSession, load: Load, count: int, concurrency: int
) -> Burst:
    """Send requests whose questions are numbered 0 to count - 1.

    Each phase sends the same questions, so with ``--upstream-jitter-ms`` the
    fake upstream waits the same time for each in both phases.
    """
    latencies: list[float] = []
    failures = 0
    first_failure: str | None = None
    numbers = iter(range(count))

    async def worker() -> None:
        nonlocal failures, first_failure
        for number in numbers:
            body = orjson.dumps(
                {
                    "prompt": f"{PROMPT}@production",
                    "variables": {"question": f"Why? ({number})"},
                }
            )
            started = time.perf_counter()
            try:
                async with session.post(
                    load.url, data=body, headers=load.headers
                ) as response:
                    payload = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                failures += 1
                first_failure = first_failure or repr(error)
                continue
            if load.complete(status, payload):
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1
                first_failure = first_failure or f"HTTP {status}: {payload[:200]!r}"

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return Burst(latencies, failures, time.perf_counter() - started, first_failure)


def summary(burst: Burst) -> dict[str, float]:
    latencies = sorted(burst.latencies)
    return {
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "rps": len(latencies) / burst.seconds if burst.seconds else 0.0,
        "failures": burst.failures,
    }


async def measure(
    env: Environment,
    experiments: ExperimentStore,
    requests: int,
    runs: int,
    concurrency: int,
) -> dict[str, Any]:
    load = Load(
        f"{env.keelway.url}/v1/chat/completions",
        {"Authorization": f"Bearer {env.key}", "Content-Type": "application/json"},
        b"",
        False,
    )
    results: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    missing_samples = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await send_numbered(session, load, 200, concurrency)
        for run in range(runs):
            order = ["without", "with"] if run % 2 == 0 else ["with", "without"]
            for phase in order:
                name = None
                if phase == "with":
                    name = f"shadow-{uuid.uuid4().hex[:8]}"
                    experiments.create_shadow(
                        AUTHOR, name, PROMPT, "production", "1.1.0"
                    )
                burst = await send_numbered(session, load, requests, concurrency)
                results[phase].append(summary(burst))
                if name is not None:
                    experiments.stop(AUTHOR, name)
                    stored = wait_for_samples(env, name, requests)
                    missing_samples += requests - stored
                else:
                    # Let the store settle between phases.
                    await asyncio.sleep(0.5)
    table: dict[str, Any] = {"concurrency": concurrency}
    for phase, rows in results.items():
        table[phase] = {
            key: statistics.median(row[key] for row in rows)
            for key in ("p50_ms", "p99_ms", "rps")
        }
        table[phase]["failures"] = sum(row["failures"] for row in rows)
    table["added_p50_ms"] = table["with"]["p50_ms"] - table["without"]["p50_ms"]
    table["added_p99_ms"] = table["with"]["p99_ms"] - table["without"]["p99_ms"]
    table["missing_samples"] = missing_samples
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument(
        "--upstream-delay-ms",
        type=float,
        default=0.0,
        help="Milliseconds the fake upstream waits before each answer.",
    )
    parser.add_argument(
        "--upstream-jitter-ms",
        type=float,
        default=0.0,
        help=(
            "Up to this many milliseconds more per answer, fixed by the "
            "request's question, so both phases see the same upstream times."
        ),
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    levels = [int(part) for part in args.concurrency.split(",")]
    rows = []
    with environment(
        upstream_delay_ms=args.upstream_delay_ms,
        upstream_jitter_ms=args.upstream_jitter_ms,
    ) as env:
        _, experiments = prepare(env)
        for level in levels:
            rows.append(
                asyncio.run(measure(env, experiments, args.requests, args.runs, level))
            )
    print(
        f"{args.runs} runs x {args.requests} requests, upstream delay "
        f"{args.upstream_delay_ms:g} ms + up to {args.upstream_jitter_ms:g} ms, "
        "median of runs; "
        f"{platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}"
    )
    print(
        "| concurrency | p50 without | p50 with | added p50 | p99 without | "
        "p99 with | rps without | rps with | samples missing |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    failed = False
    for row in rows:
        print(
            f"| {row['concurrency']} | {row['without']['p50_ms']:.2f} ms | "
            f"{row['with']['p50_ms']:.2f} ms | {row['added_p50_ms']:+.2f} ms | "
            f"{row['without']['p99_ms']:.2f} ms | {row['with']['p99_ms']:.2f} ms | "
            f"{row['without']['rps']:.0f} | {row['with']['rps']:.0f} | "
            f"{row['missing_samples']} |"
        )
        failures = row["without"]["failures"] + row["with"]["failures"]
        failed = failed or failures > 0 or row["missing_samples"] > 0
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
