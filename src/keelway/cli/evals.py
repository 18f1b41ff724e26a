"""``keelway eval``: run a prompt version over a dataset, compare runs, gate.

Exit codes: ``run`` exits 0 when every case passed, 1 when a case failed
or could not be scored, and 2 when the run itself failed (bad arguments,
every model call failed). ``gate`` exits 0 when the candidate passes, 1 on
a regression, and 2 when it could not decide.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from keelway.cli.datasets import require_reader
from keelway.cli.identity import (
    echo_table,
    format_time,
    one_line,
    open_as_principal,
    service_errors,
)
from keelway.cli.options import config_option, resolve_config
from keelway.config import Config
from keelway.evals.base import Services
from keelway.evals.client import (
    GatewayClient,
    RetryPolicy,
    in_process_gateway,
    remote_gateway,
)
from keelway.evals.compare import Comparison, compare
from keelway.evals.datasets import DatasetStore
from keelway.evals.evaluators.judge import PAIRWISE_RUBRIC
from keelway.evals.gate import GatePolicy, decide
from keelway.evals.gates import GateStore
from keelway.evals.junit import write_junit
from keelway.evals.pairwise import PairwiseResult, judge_pairs
from keelway.evals.report import markdown_gate, markdown_run
from keelway.evals.results import CaseResult
from keelway.evals.rubric_install import install_rubrics
from keelway.evals.runner import (
    CachedJudge,
    EvalRunner,
    RunOptions,
    RunOutcome,
    fill_costs,
    split_tolerances,
)
from keelway.evals.runs import FAILED, RunRecord, RunStore
from keelway.governance.audit import AuditLog
from keelway.governance.errors import GovernanceError
from keelway.governance.roles import Principal
from keelway.prompts.registry import PromptRegistry
from keelway.store.database import Database

API_KEY_ENV = "KEELWAY_API_KEY"
MAX_EVALUATORS_FILE = 1_000_000


class RunFailed(click.ClickException):
    """An eval that could not run: exit code 2, so CI can tell it from a regression."""

    exit_code = 2


def parse_evaluator(text: str) -> dict[str, Any]:
    """Parse ``KIND`` or a YAML mapping such as ``{kind: regex, pattern: x}``."""
    text = text.strip()
    if not text.startswith("{"):
        return {"kind": text}
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise click.BadParameter(
            f"{text!r} is not a YAML mapping: {one_line(str(error))}",
            param_hint="--evaluator",
        ) from None
    if not isinstance(spec, dict) or "kind" not in spec:
        raise click.BadParameter(
            f"{text!r} must be a mapping with a 'kind'", param_hint="--evaluator"
        )
    return spec


def _specs(
    evaluators: str | None, evaluator: Sequence[str], file: Path | None
) -> list[dict[str, Any]] | None:
    specs: list[dict[str, Any]] = []
    if evaluators:
        specs.extend(
            {"kind": kind.strip()} for kind in evaluators.split(",") if kind.strip()
        )
    specs.extend(parse_evaluator(item) for item in evaluator)
    if file is not None:
        if not file.exists():
            raise RunFailed(f"cannot read {file}: no such file")
        if file.is_dir():
            raise RunFailed(f"cannot read {file}: it is a directory")
        if not file.is_file():
            raise RunFailed(f"cannot read {file}: not a regular file")
        if file.stat().st_size > MAX_EVALUATORS_FILE:
            raise RunFailed(
                f"{file} is larger than {MAX_EVALUATORS_FILE} bytes; an evaluators "
                "file is a short list of specs"
            )
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise RunFailed(f"cannot read {file}: {one_line(str(error))}") from None
        if isinstance(loaded, dict):
            loaded = loaded.get("evaluators")
        if not isinstance(loaded, list) or not all(
            isinstance(item, dict | str) for item in loaded
        ):
            raise RunFailed(f"{file} must hold a list of evaluator specs")
        specs.extend(
            {"kind": item} if isinstance(item, str) else item for item in loaded
        )
    return specs or None


def run_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options every command that runs evals takes."""
    options = [
        click.option(
            "--evaluators",
            default=None,
            metavar="KIND,KIND",
            help="Evaluator kinds, comma-separated [default: the dataset's].",
        ),
        click.option(
            "--evaluator",
            multiple=True,
            metavar="SPEC",
            help="An evaluator as a kind or a YAML mapping such as "
            "'{kind: semantic_similarity, threshold: 0.8}'; repeatable.",
        ),
        click.option(
            "--evaluators-file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="YAML file with a list of evaluator specs.",
        ),
        click.option(
            "--trials",
            type=click.IntRange(1, 100),
            default=1,
            show_default=True,
            help="Runs of each case; scores are reported as mean and std.",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(1, 64),
            default=4,
            show_default=True,
            help="Cases run at once.",
        ),
        click.option(
            "--case-timeout",
            type=click.FloatRange(min=0.1),
            default=300.0,
            show_default=True,
            help="Seconds one case (call, retries, evaluators) may take.",
        ),
        click.option(
            "--call-timeout",
            type=click.FloatRange(min=0.1),
            default=120.0,
            show_default=True,
            help="Seconds one model call attempt may take.",
        ),
        click.option(
            "--retries",
            type=click.IntRange(0, 10),
            default=3,
            show_default=True,
            help="Retries of a call after a 429, a 5xx or a timeout.",
        ),
        click.option(
            "--model",
            default=None,
            help="Send every call to this model group instead of the prompt's.",
        ),
        click.option(
            "--no-cache",
            is_flag=True,
            help="Call the model even when a cached output exists.",
        ),
        click.option(
            "--tag",
            "tags",
            multiple=True,
            help="Only cases with this tag; repeatable.",
        ),
        click.option(
            "--limit",
            type=click.IntRange(min=1),
            default=None,
            help="Only the first N cases.",
        ),
        click.option(
            "--gateway",
            default=None,
            metavar="URL",
            help=f"A running keelway server to call, with the key in {API_KEY_ENV} "
            "[default: a gateway built in process from the config].",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@dataclass(slots=True)
class RunSettings:
    specs: list[dict[str, Any]] | None
    options: RunOptions
    retry: RetryPolicy
    gateway: str | None


def _settings(values: dict[str, Any]) -> RunSettings:
    specs = _specs(
        values.pop("evaluators"), values.pop("evaluator"), values.pop("evaluators_file")
    )
    options = RunOptions(
        trials=values.pop("trials"),
        concurrency=values.pop("concurrency"),
        case_timeout=values.pop("case_timeout"),
        model=values.pop("model"),
        use_cache=not values.pop("no_cache"),
        tags=tuple(values.pop("tags")),
        limit=values.pop("limit"),
    )
    retry = RetryPolicy(
        attempts=values.pop("retries") + 1, timeout=values.pop("call_timeout")
    )
    return RunSettings(specs, options, retry, values.pop("gateway"))


@asynccontextmanager
async def _client(
    config: Config, database: Database, settings: RunSettings
) -> AsyncIterator[GatewayClient]:
    embedding_model = config.evals.embedding_model
    if settings.gateway is None:
        async with in_process_gateway(
            config, database, settings.retry, embedding_model=embedding_model
        ) as client:
            yield client
        return
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise RunFailed(f"--gateway needs a virtual key in {API_KEY_ENV}")
    async with remote_gateway(
        settings.gateway, key, settings.retry, embedding_model=embedding_model
    ) as client:
        yield client


class _Progress:
    """A progress bar on stderr per run, so --json output stays clean."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.finished = 0

    def start(self, run: RunRecord, total: int) -> None:
        self.close()
        if self.quiet:
            return
        self.bar = click.progressbar(
            length=total,
            label=f"{run.prompt}@{run.prompt_version} on {run.dataset}@"
            f"{run.dataset_version}",
            file=sys.stderr,
            show_pos=True,
        )
        self.bar.__enter__()

    def step(self, result: CaseResult) -> None:
        self.finished += 1
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@dataclass(slots=True)
class _Stores:
    config: Config
    database: Database
    actor: Principal
    registry: PromptRegistry
    datasets: DatasetStore
    runs: RunStore
    audit: AuditLog


def _open(config_path: Path | None) -> _Stores:
    config = resolve_config(config_path)
    try:
        database, actor = open_as_principal(config)
    except click.ClickException as error:
        raise RunFailed(error.message) from None
    audit = AuditLog(database)
    registry = PromptRegistry.from_config(database, audit, config.prompts)
    return _Stores(
        config,
        database,
        actor,
        registry,
        DatasetStore(database, audit),
        RunStore(database),
        audit,
    )


async def _run_many(
    stores: _Stores,
    settings: RunSettings,
    jobs: Sequence[tuple[str, str]],
    progress: _Progress,
) -> list[RunOutcome]:
    outcomes = []
    async with _client(stores.config, stores.database, settings) as client:
        runner = EvalRunner(
            stores.registry, stores.datasets, stores.runs, stores.audit, client
        )
        for prompt, dataset in jobs:
            outcomes.append(
                await runner.run(
                    stores.actor,
                    prompt,
                    dataset,
                    settings.specs,
                    settings.options,
                    progress=progress.step,
                    on_start=progress.start,
                )
            )
            progress.close()
    # The in-process gateway has drained its trace writer: costs are stored.
    return [fill_costs(stores.runs, outcome) for outcome in outcomes]


def _execute(
    stores: _Stores,
    settings: RunSettings,
    jobs: Sequence[tuple[str, str]],
    quiet: bool,
) -> list[RunOutcome]:
    progress = _Progress(quiet)
    try:
        return asyncio.run(_run_many(stores, settings, jobs, progress))
    except GovernanceError as error:
        raise RunFailed(one_line(error.message)) from None
    except KeyboardInterrupt:
        progress.close()
        click.echo(
            f"interrupted: {progress.finished} cases were stored and their outputs "
            "cached; run the same command again to reuse them",
            err=True,
        )
        raise
    finally:
        progress.close()


def _thresholds(outcome: RunOutcome) -> dict[str, float]:
    return outcome.summary.thresholds()


def _echo_summary(outcome: RunOutcome) -> None:
    run = outcome.run
    click.echo(f"run {run.id}  {run.label}  {run.status}")
    _echo_figures(run.summary or outcome.summary.as_dict())


def _write_reports(
    outcome: RunOutcome, junit: Path | None, markdown: Path | None
) -> None:
    try:
        if junit is not None:
            write_junit(
                junit,
                f"keelway.{outcome.run.prompt}",
                outcome.results,
                evaluators=list(outcome.summary.evaluators),
                thresholds=_thresholds(outcome),
            )
        if markdown is not None:
            markdown.write_text(
                markdown_run(outcome.run.label, outcome.summary, outcome.results),
                encoding="utf-8",
            )
    except OSError as error:
        raise RunFailed(f"cannot write a report: {error}") from None


def _result_dict(result: CaseResult) -> dict[str, Any]:
    from keelway.evals.runs import score_to_dict

    return {
        "case": result.case_key,
        "trial": result.trial,
        "status": result.status,
        "passed": result.passed,
        "output": result.output,
        "error": result.error,
        "latency_ms": result.latency_ms,
        "cost_usd": result.cost_usd,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "cached": result.cached,
        "trace_id": result.trace_id,
        "scores": [score_to_dict(score) for score in result.scores],
    }


@click.group("eval")
def eval_group() -> None:
    """Run prompt versions over datasets, compare runs and gate releases."""


@eval_group.command("run")
@click.option("--prompt", "prompt", required=True, metavar="NAME@VERSION|LABEL")
@click.option("--dataset", "dataset", required=True, metavar="NAME[@VERSION]")
@run_options
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write JUnit XML here.",
)
@click.option(
    "--markdown",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a Markdown report here.",
)
@config_option
def run_command(
    prompt: str,
    dataset: str,
    as_json: bool,
    junit: Path | None,
    markdown: Path | None,
    config_path: Path | None,
    **values: Any,
) -> int:
    """Run a prompt version over a dataset and score every output."""
    settings = _settings(values)
    stores = _open(config_path)
    (outcome,) = _execute(stores, settings, [(prompt, dataset)], as_json)
    _write_reports(outcome, junit, markdown)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run": outcome.run.as_dict(),
                    "results": [_result_dict(result) for result in outcome.results],
                }
            )
        )
    else:
        _echo_summary(outcome)
    if outcome.run.status == FAILED:
        click.echo(f"error: {outcome.run.error}", err=True)
        return 2
    summary = outcome.summary
    return 0 if summary.failed == 0 and summary.errors == 0 else 1


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _echo_comparison(comparison: Comparison) -> None:
    rows = []
    for name, delta in comparison.deltas.items():
        change = "n/a" if delta.delta is None else f"{delta.delta:+.3f}"
        rows.append(
            [name, _number(delta.baseline_mean), _number(delta.candidate_mean), change]
        )
    echo_table(["EVALUATOR", "BASELINE", "CANDIDATE", "DELTA"], rows)
    if not comparison.flips:
        click.echo("no case flipped")
        return
    click.echo("")
    echo_table(
        ["CASE", "EVALUATOR", "CHANGE", "REASON NOW"],
        [
            [
                flip.case_key,
                flip.evaluator or "-",
                f"{_side(flip.before)} → {_side(flip.after)}",
                _cut(one_line(flip.after_reason or ""), 100),
            ]
            for flip in comparison.flips
        ],
    )


@eval_group.command("compare")
@click.argument("baseline_id", metavar="RUN_A")
@click.argument("candidate_id", metavar="RUN_B")
@click.option(
    "--judge",
    "use_judge",
    is_flag=True,
    help="Also ask a judge which output of each case is better, in both orders.",
)
@click.option(
    "--judge-rubric",
    default=PAIRWISE_RUBRIC,
    show_default=True,
    help="The pairwise rubric prompt.",
)
@click.option(
    "--judge-model", default=None, help="The judge model group [default: the rubric's]."
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@config_option
def compare_command(
    baseline_id: str,
    candidate_id: str,
    use_judge: bool,
    judge_rubric: str,
    judge_model: str | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Show per-evaluator deltas from RUN_A to RUN_B and the cases that flipped.

    With --judge, a judge model also compares the two outputs of every case
    both runs answered, once in each order; a verdict that follows the
    order counts as a tie.
    """
    stores = _open(config_path)
    require_reader(stores.actor)
    with service_errors():
        baseline = stores.runs.find(baseline_id)
        candidate = stores.runs.find(candidate_id)
    names = list(dict.fromkeys([*_names(baseline), *_names(candidate)]))
    baseline_results = stores.runs.results(baseline.id)
    candidate_results = stores.runs.results(candidate.id)
    comparison = compare(baseline_results, candidate_results, names)
    pairs = None
    if use_judge:
        pairs = _judge_pairs(
            stores, baseline, baseline_results, candidate_results, judge_rubric,
            judge_model,
        )  # fmt: skip
    if as_json:
        data = _comparison_dict(comparison, baseline, candidate)
        if pairs is not None:
            data["pairwise"] = {
                "counts": dict(pairs.counts()),
                "verdicts": {
                    key: {
                        "winner": verdict.winner,
                        "status": verdict.status,
                        "reason": verdict.reason,
                    }
                    for key, verdict in pairs.verdicts.items()
                },
                "skipped": pairs.skipped,
            }
        click.echo(json.dumps(data))
        return
    click.echo(f"baseline  {baseline.id}  {baseline.label}")
    click.echo(f"candidate {candidate.id}  {candidate.label}")
    _echo_comparison(comparison)
    if pairs is not None:
        _echo_pairs(pairs)


def _judge_pairs(
    stores: _Stores,
    baseline: RunRecord,
    baseline_results: Sequence[CaseResult],
    candidate_results: Sequence[CaseResult],
    rubric: str,
    model: str | None,
) -> PairwiseResult:
    with service_errors():
        install_rubrics(stores.registry, [{"kind": "llm_judge"}])
        cases = {
            case.key: case
            for case in stores.datasets.load(
                baseline.dataset, baseline.dataset_version
            ).eval_cases()
        }
    settings = RunSettings(None, RunOptions(), RetryPolicy(), None)

    async def judge() -> PairwiseResult:
        async with _client(stores.config, stores.database, settings) as client:
            services = Services(
                embed=client.embed,
                judge=CachedJudge(client.judge, stores.runs, use_cache=True),
            )
            return await judge_pairs(
                cases, baseline_results, candidate_results, services, rubric, model
            )

    return asyncio.run(judge())


def _echo_pairs(pairs: PairwiseResult) -> None:
    counts = pairs.counts()
    click.echo("")
    click.echo(
        f"judge prefers A in {counts['A']} cases, B in {counts['B']}, ties "
        f"{counts['tie']}, errors {counts['error']}"
        + (f"; {len(pairs.skipped)} cases not in both runs" if pairs.skipped else "")
    )
    rows = [
        [key, verdict.winner or "error", one_line(verdict.reason)[:100]]
        for key, verdict in pairs.verdicts.items()
        if verdict.winner != "tie"
    ]
    if rows:
        echo_table(["CASE", "PREFERRED", "REASON"], rows)


def _side(verdict: bool | None) -> str:
    return {True: "pass", False: "fail", None: "error"}[verdict]


def _names(run: RunRecord) -> list[str]:
    return list((run.summary or {}).get("evaluators", {}))


def _comparison_dict(
    comparison: Comparison, baseline: RunRecord, candidate: RunRecord
) -> dict[str, Any]:
    return {
        "baseline": baseline.id,
        "candidate": candidate.id,
        "deltas": {
            name: {
                "baseline_mean": delta.baseline_mean,
                "candidate_mean": delta.candidate_mean,
                "delta": delta.delta,
                "baseline_pass_rate": delta.baseline_pass_rate,
                "candidate_pass_rate": delta.candidate_pass_rate,
            }
            for name, delta in comparison.deltas.items()
        },
        "flips": [
            {
                "case": flip.case_key,
                "evaluator": flip.evaluator,
                "kind": flip.kind,
                "before": flip.before,
                "after": flip.after,
                "before_reason": flip.before_reason,
                "after_reason": flip.after_reason,
            }
            for flip in comparison.flips
        ],
        "baseline_only": comparison.baseline_only,
        "candidate_only": comparison.candidate_only,
    }


def _tolerance_items(items: Sequence[str]) -> dict[str, float]:
    tolerances = {}
    for item in items:
        name, equals, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not equals or not name or not math.isfinite(number) or not 0 <= number <= 1:
            raise RunFailed(
                f"--tolerance {item!r} is not EVALUATOR=NUMBER with a number "
                "from 0 to 1"
            )
        tolerances[name] = number
    return tolerances


@eval_group.command("gate")
@click.option("--candidate", required=True, metavar="NAME@VERSION|LABEL")
@click.option(
    "--baseline",
    default=None,
    metavar="NAME@VERSION|LABEL",
    help="The version to compare with, such as NAME@production.",
)
@click.option("--dataset", "dataset", required=True, metavar="NAME[@VERSION]")
@run_options
@click.option(
    "--tolerance",
    "tolerance_items",
    multiple=True,
    metavar="EVALUATOR=DROP",
    help="Largest allowed drop of an evaluator's mean; repeatable. Evaluator "
    "specs may set 'tolerance' too.",
)
@click.option(
    "--default-tolerance",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Largest allowed drop of the mean of evaluators without their own.",
)
@click.option(
    "--min-pass-rate",
    type=click.FloatRange(0, 1),
    default=None,
    help="Least share of cases that must pass every evaluator.",
)
@click.option(
    "--max-error-rate",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="Largest share of cases that may end in an error.",
)
@click.option(
    "--no-must-pass",
    is_flag=True,
    help="Do not fail the gate on failed must-pass cases.",
)
@click.option(
    "--summary",
    "summary_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the Markdown summary here as well as to standard output.",
)
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the candidate's JUnit XML here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@config_option
def gate_command(
    candidate: str,
    baseline: str | None,
    dataset: str,
    tolerance_items: tuple[str, ...],
    default_tolerance: float,
    min_pass_rate: float | None,
    max_error_rate: float,
    no_must_pass: bool,
    summary_path: Path | None,
    junit: Path | None,
    as_json: bool,
    config_path: Path | None,
    **values: Any,
) -> int:
    """Run CANDIDATE (and BASELINE) over a dataset; exit 1 on a regression.

    The gate fails when an evaluator's mean drops by more than its
    tolerance, the pass rate falls under --min-pass-rate, the error rate
    passes --max-error-rate or a must-pass case fails. The decision is
    stored, and a gated label moves only to a version whose gate passed.
    """
    for option, value in (
        ("--default-tolerance", default_tolerance),
        ("--min-pass-rate", min_pass_rate),
        ("--max-error-rate", max_error_rate),
    ):
        if value is not None and not math.isfinite(value):
            raise RunFailed(f"{option} must be a number from 0 to 1, not {value}")
    settings = _settings(values)
    tolerances = _tolerance_items(tolerance_items)
    stores = _open(config_path)
    jobs = [(candidate, dataset)] + ([(baseline, dataset)] if baseline else [])
    outcomes = _execute(stores, settings, jobs, as_json)
    chosen, base = outcomes[0], outcomes[1] if baseline else None
    for outcome in outcomes:
        if outcome.run.status == FAILED:
            raise RunFailed(
                f"run {outcome.run.id} of {outcome.run.label} failed: "
                f"{outcome.run.error}"
            )
    names = list(chosen.summary.evaluators)
    spec_tolerances = split_tolerances(chosen.run.evaluators)
    try:
        policy = GatePolicy(
            tolerances={**spec_tolerances, **tolerances},
            default_tolerance=default_tolerance,
            min_pass_rate=min_pass_rate,
            max_error_rate=max_error_rate,
            must_pass=not no_must_pass,
        )
    except ValueError as error:
        raise RunFailed(str(error)) from None
    verdict = decide(
        chosen.results,
        base.results if base else None,
        names,
        policy,
        _thresholds(chosen),
    )
    gate = GateStore(stores.database).record(
        stores.actor, chosen.run, base.run if base else None, verdict, policy
    )
    candidate_label = f"{chosen.run.prompt}@{chosen.run.prompt_version}"
    baseline_label = f"{base.run.prompt}@{base.run.prompt_version}" if base else None
    text = markdown_gate(verdict, candidate_label, baseline_label)
    _write_reports(chosen, junit, None)
    if summary_path is not None:
        try:
            summary_path.write_text(text, encoding="utf-8")
        except OSError as error:
            raise RunFailed(f"cannot write {summary_path}: {error.strerror}") from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "gate": gate,
                    "passed": verdict.passed,
                    "reasons": verdict.reasons,
                    "candidate_run": chosen.run.id,
                    "baseline_run": base.run.id if base else None,
                    "comparison": _comparison_dict(
                        verdict.comparison, base.run, chosen.run
                    )
                    if verdict.comparison is not None and base is not None
                    else None,
                }
            )
        )
    else:
        click.echo(text, nl=False)
        click.echo(f"gate {gate}: {'passed' if verdict.passed else 'failed'}")
    return 0 if verdict.passed else 1


@eval_group.command("list")
@click.option("--prompt", default=None, help="Only runs of this prompt.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@config_option
def list_command(
    prompt: str | None, limit: int, as_json: bool, config_path: Path | None
) -> None:
    """List the newest eval runs."""
    stores = _open(config_path)
    require_reader(stores.actor)
    runs = stores.runs.list(prompt, limit)
    if as_json:
        for run in runs:
            click.echo(json.dumps(run.as_dict()))
        return
    rows = []
    for run in runs:
        summary = run.summary or {}
        rate = summary.get("pass_rate")
        rows.append(
            [
                run.id[:12],
                format_time(run.started_at),
                run.status,
                f"{run.prompt}@{run.prompt_version}",
                f"{run.dataset}@{run.dataset_version}",
                "n/a" if rate is None else f"{rate:.1%}",
            ]
        )
    echo_table(["RUN", "STARTED", "STATUS", "PROMPT", "DATASET", "PASS RATE"], rows)


@eval_group.command("show")
@click.argument("run_id", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.option("--failed", is_flag=True, help="Show only failed and errored cases.")
@config_option
def show_command(
    run_id: str, as_json: bool, failed: bool, config_path: Path | None
) -> None:
    """Show a run: its figures and each case's verdict and reasons."""
    stores = _open(config_path)
    require_reader(stores.actor)
    with service_errors():
        run = stores.runs.find(run_id)
    results = stores.runs.results(run.id)
    if failed:
        results = [result for result in results if result.passed is not True]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run": run.as_dict(),
                    "results": [_result_dict(result) for result in results],
                }
            )
        )
        return
    click.echo(f"run {run.id}  {run.label}  {run.status}")
    click.echo(f"started {format_time(run.started_at)} by {run.created_by}")
    if run.error:
        click.echo(f"error: {run.error}")
    _echo_figures(run.summary or {})
    click.echo("")
    rows = []
    for result in results:
        verdict = {True: "pass", False: "FAIL", None: "error"}[result.passed]
        reasons = "; ".join(
            f"{score.evaluator}: {score.reason}"
            for score in result.scores
            if score.passed is not True
        )
        rows.append(
            [
                result.case_key,
                str(result.trial),
                verdict,
                _cut(one_line(result.error or reasons), 120),
            ]
        )
    echo_table(["CASE", "TRIAL", "VERDICT", "REASON"], rows)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _echo_figures(summary: dict[str, Any]) -> None:
    """Print a stored summary: counts, then one row per evaluator."""
    if not summary:
        return
    rate = summary.get("pass_rate")
    click.echo(
        f"{summary.get('passed', 0)} passed, {summary.get('failed', 0)} failed, "
        f"{summary.get('errors', 0)} errors (pass rate "
        f"{'n/a' if rate is None else f'{rate:.1%}'}; "
        f"{summary.get('cached', 0)} cached; ${summary.get('cost_usd', 0.0):.6f})"
    )
    rows = []
    for name, item in summary.get("evaluators", {}).items():
        mean = "n/a" if item.get("mean") is None else f"{item['mean']:.3f}"
        if item.get("std") is not None:
            mean += f" ± {item['std']:.3f}"
        passing = item.get("pass_rate")
        rows.append(
            [
                name,
                mean,
                "n/a" if passing is None else f"{passing:.1%}",
                str(item.get("scored", 0)),
                str(item.get("errors", 0)),
            ]
        )
    echo_table(["EVALUATOR", "MEAN", "PASS RATE", "SCORED", "ERRORS"], rows)
