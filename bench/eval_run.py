"""Measure eval runs on the local model: cases per second and evaluator overhead.

The script makes a fresh SQLite store in a temporary folder, creates the
example prompt ``python-answer`` (answers from the passage) and imports the
golden set, then measures with the embedded default config (Gemma 3 270M
and MiniLM in process, offline):

- ``generate``: a run of the first N cases with the output cache off, so
  every case calls the local model; cases per second at each concurrency.
- ``cached``: the same run again with the cache on, so no model is called;
  what remains is the runner, the store and the evaluators.
- ``evaluators``: each evaluator alone over the cached outputs, in process,
  as milliseconds per case (median over the runs).

Run it from the repository root::

    python bench/eval_run.py [--cases 24] [--runs 3] [--concurrency 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROMPT = ROOT / "examples" / "python-reference" / "answer-from-passage.yaml"
GOLDEN = ROOT / "src" / "keelway" / "evals" / "examples" / "python-reference.yaml"
EVALUATORS: list[dict[str, Any]] = [
    {"kind": "contains"},
    {"kind": "exact_match"},
    {"kind": "regex", "pattern": "[A-Za-z_]+"},
    {"kind": "length", "max": 400},
    {"kind": "faithfulness", "mode": "embedding"},
    {"kind": "semantic_similarity"},
    {"kind": "answer_relevancy", "mode": "embedding"},
]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from keelway.config import load_config
    from keelway.evals.base import Sample, Services
    from keelway.evals.cases import read_file
    from keelway.evals.client import in_process_gateway
    from keelway.evals.datasets import DatasetStore
    from keelway.evals.evaluators import build
    from keelway.evals.runner import EvalRunner, RunOptions
    from keelway.evals.runs import RunStore
    from keelway.governance.audit import AuditLog
    from keelway.governance.roles import Principal
    from keelway.prompts.content import parse_prompt_yaml
    from keelway.prompts.registry import PromptRegistry
    from keelway.store.database import open_database

    config = load_config(None)
    folder = Path(tempfile.mkdtemp(prefix="keelway-eval-bench-"))
    database = open_database(f"sqlite:///{folder / 'keelway.db'}")
    audit = AuditLog(database)
    registry = PromptRegistry(database, audit)
    actor = Principal.local()
    name, content = parse_prompt_yaml(PROMPT.read_text(), PROMPT.name)
    registry.create(actor, name, content)
    datasets = DatasetStore(database, audit)
    loaded = read_file(GOLDEN)
    datasets.save(actor, "python-reference", loaded.cases)
    runs = RunStore(database)
    results: dict[str, Any] = {"generate": {}, "cached": {}, "evaluators": {}}
    specs = [{"kind": "contains"}, {"kind": "faithfulness", "mode": "embedding"}]
    async with in_process_gateway(config, database) as client:
        runner = EvalRunner(registry, datasets, runs, audit, client)
        # Load both models before timing anything.
        await client.embed(["warm up"])
        await runner.run(
            actor, f"{name}@1.0.0", "python-reference", specs,
            RunOptions(limit=1, use_cache=False),
        )  # fmt: skip
        outcome = None
        for concurrency in args.concurrency:
            rates = []
            for _ in range(args.runs):
                options = RunOptions(
                    concurrency=concurrency, limit=args.cases, use_cache=False
                )
                started = time.perf_counter()
                outcome = await runner.run(
                    actor, f"{name}@1.0.0", "python-reference", specs, options
                )
                rates.append(args.cases / (time.perf_counter() - started))
            results["generate"][concurrency] = statistics.median(rates)
        rates = []
        for _ in range(args.runs):
            started = time.perf_counter()
            await runner.run(
                actor, f"{name}@1.0.0", "python-reference", specs,
                RunOptions(concurrency=4, limit=args.cases),
            )  # fmt: skip
            rates.append(args.cases / (time.perf_counter() - started))
        results["cached"] = statistics.median(rates)
        assert outcome is not None
        cases = {
            case.key: case for case in datasets.load("python-reference").eval_cases()
        }
        samples = [
            Sample(cases[result.case_key], result.output or "", latency_ms=1.0)
            for result in outcome.results
        ]
        services = Services(embed=client.embed, judge=client.judge)
        for spec in EVALUATORS:
            evaluator = build(spec)
            timings = []
            for _ in range(args.runs):
                started = time.perf_counter()
                for sample in samples:
                    await evaluator.evaluate(sample, services)
                timings.append((time.perf_counter() - started) * 1000 / len(samples))
            results["evaluators"][evaluator.name] = statistics.median(timings)
    database.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", default="1,2")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.concurrency = [int(item) for item in args.concurrency.split(",")]
    os.environ.setdefault("KEELWAY_HOME", tempfile.mkdtemp(prefix="keelway-home-"))
    results = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(results))
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; {args.cases} cases, median of {args.runs}"
    )
    for concurrency, rate in results["generate"].items():
        print(f"generate, concurrency {concurrency}: {rate:.2f} cases/s")
    print(f"cached rerun, concurrency 4: {results['cached']:.1f} cases/s")
    for name, ms in results["evaluators"].items():
        print(f"evaluator {name}: {ms:.3f} ms per case")


if __name__ == "__main__":
    main()
