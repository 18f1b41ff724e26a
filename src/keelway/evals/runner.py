"""Running a prompt version over a dataset version and scoring every output.

For each case (and each trial) the runner renders the prompt through the
gateway, with the case's variables, and then runs every evaluator on the
output. Outputs are cached by prompt version, content hash, case, model
settings and trial, so a rerun reuses them: it costs nothing, gives the
same scores, and picks up after an interrupted run. Judge replies are
cached the same way, by rubric, variables and model.

A case that could not be run (the gateway rejected the call, the provider
failed after its retries, the case ran past its timeout) is stored with
status ``error`` and its reason. A run in which every call failed is
stored as ``failed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keelway.evals.base import (
    Case,
    Evaluator,
    EvaluatorConfigError,
    JudgeReply,
    Sample,
    Score,
    ServiceError,
    Services,
)
from keelway.evals.client import GatewayClient
from keelway.evals.datasets import DatasetStore, parse_dataset_reference
from keelway.evals.evaluators import build
from keelway.evals.results import CaseResult, RunSummary, summarize
from keelway.evals.rubric_install import install_rubrics
from keelway.evals.runs import (
    FAILED,
    FINISHED,
    INTERRUPTED,
    RunRecord,
    RunStore,
    cache_key,
)
from keelway.governance.audit import AuditLog
from keelway.governance.errors import Invalid, NotFound
from keelway.governance.roles import Permission, Principal
from keelway.prompts.errors import InvalidReference
from keelway.prompts.registry import REJECTED, PromptRegistry, Resolved
from keelway.prompts.versioning import parse_reference

log = logging.getLogger(__name__)

MAX_TRIALS = 100
MAX_CONCURRENCY = 64
CONTEXT_VARIABLE = "context"


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run: trials, concurrency, timeouts, the cache and a case filter.

    ``model`` sends every call to that model group instead of the prompt's.
    ``case_timeout`` bounds one case (its call, retries and evaluators) in
    seconds. ``tags`` keeps cases with any of those tags; ``limit`` keeps
    the first that many cases.
    """

    trials: int = 1
    concurrency: int = 4
    case_timeout: float = 300.0
    model: str | None = None
    use_cache: bool = True
    tags: tuple[str, ...] = ()
    limit: int | None = None

    def check(self) -> None:
        """Raise Invalid for settings out of range."""
        if not 1 <= self.trials <= MAX_TRIALS:
            raise Invalid(f"trials must be from 1 to {MAX_TRIALS}, got {self.trials}")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise Invalid(
                f"concurrency must be from 1 to {MAX_CONCURRENCY}, got "
                f"{self.concurrency}"
            )
        if not self.case_timeout > 0:
            raise Invalid(f"case timeout must be positive, got {self.case_timeout}")
        if self.limit is not None and self.limit < 1:
            raise Invalid(f"limit must be at least 1, got {self.limit}")

    def as_dict(self) -> dict[str, Any]:
        """Return the settings a run records."""
        return {
            "concurrency": self.concurrency,
            "case_timeout": self.case_timeout,
            "model": self.model,
            "cache": self.use_cache,
            "tags": list(self.tags),
            "limit": self.limit,
        }


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """A finished (or failed) run with its results and summary."""

    run: RunRecord
    results: list[CaseResult]
    summary: RunSummary


class CachedJudge:
    """A judge whose replies are kept in the eval cache, keyed by their input."""

    def __init__(self, judge: Any, runs: RunStore, use_cache: bool) -> None:
        self.judge = judge
        self.runs = runs
        self.use_cache = use_cache

    async def __call__(
        self, rubric: str, variables: Mapping[str, Any], model: str | None = None
    ) -> JudgeReply:
        key = cache_key(
            "judge", {"rubric": rubric, "variables": dict(variables), "model": model}
        )
        if self.use_cache:
            stored = await asyncio.to_thread(self.runs.cached, key)
            if stored is not None:
                return JudgeReply(stored["text"], stored.get("model"), None, None, None)
        reply = await self.judge(rubric, variables, model)
        await asyncio.to_thread(
            self.runs.cache, key, "judge", {"text": reply.text, "model": reply.model}
        )
        return reply


def split_tolerances(specs: Sequence[Mapping[str, Any] | str]) -> dict[str, float]:
    """Return the gate tolerance each spec sets, by evaluator name.

    ``tolerance`` in a spec is the largest drop of that evaluator's mean a
    gate allows; it is a gate setting, not the evaluator's.
    """
    tolerances = {}
    for spec in specs:
        if isinstance(spec, Mapping) and "tolerance" in spec:
            name = spec.get("name") or spec.get("kind")
            tolerances[str(name)] = spec["tolerance"]
    return tolerances


def build_evaluators(specs: Sequence[Mapping[str, Any] | str]) -> list[Evaluator]:
    """Build evaluators from specs; raise Invalid on a bad spec or a name clash."""
    evaluators = []
    for spec in specs:
        if isinstance(spec, Mapping):
            spec = {key: value for key, value in spec.items() if key != "tolerance"}
        try:
            evaluators.append(build(spec))
        except EvaluatorConfigError as error:
            raise Invalid(str(error)) from None
    names = [evaluator.name for evaluator in evaluators]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise Invalid(
            f"evaluator names {clashes} are used twice; give each spec its own 'name'"
        )
    if not evaluators:
        raise Invalid(
            "no evaluators: pass --evaluators or list them in the dataset's "
            "'evaluators'"
        )
    return evaluators


def prompt_variables(resolved: Resolved, case: Case) -> dict[str, Any]:
    """Return the case's variables that the prompt declares.

    A prompt that declares ``context`` and a case without such a variable
    get the case's reference passages, joined by blank lines.
    """
    declared = {variable.name for variable in resolved.content.variables}
    values = {name: value for name, value in case.variables.items() if name in declared}
    wants_context = CONTEXT_VARIABLE in declared and CONTEXT_VARIABLE not in values
    if wants_context and case.context:
        values[CONTEXT_VARIABLE] = "\n\n".join(case.context)
    return values


def _check_variables(resolved: Resolved, cases: Sequence[Case]) -> None:
    """Raise Invalid when no case would send the prompt anything of its own.

    A prompt that declares none of the cases' variables, with cases that
    carry no messages, would send the same request for every case.
    """
    declared = {variable.name for variable in resolved.content.variables}
    given = {name for case in cases for name in case.variables}
    if any(case.context for case in cases):
        given.add(CONTEXT_VARIABLE)
    if not given or declared & given or any(case.messages for case in cases):
        return
    shown = ", ".join(sorted(given)[:5])
    raise Invalid(
        f"{resolved.name}@{resolved.version} declares none of the variables the "
        f"cases give ({shown}), so every case would send the same request; "
        "evaluate a prompt that uses them"
    )


def select_cases(cases: Sequence[Case], options: RunOptions) -> list[Case]:
    """Return the cases a run with ``options`` covers, in dataset order."""
    chosen = list(cases)
    if options.tags:
        wanted = set(options.tags)
        chosen = [case for case in chosen if wanted & set(case.tags)]
    if options.limit is not None:
        chosen = chosen[: options.limit]
    return chosen


class EvalRunner:
    """Runs evals over the stores and the gateway client it is given."""

    def __init__(
        self,
        registry: PromptRegistry,
        datasets: DatasetStore,
        runs: RunStore,
        audit: AuditLog,
        client: GatewayClient,
        services: Services | None = None,
    ) -> None:
        self.registry = registry
        self.datasets = datasets
        self.runs = runs
        self.audit = audit
        self.client = client
        self.services = services or Services(embed=client.embed, judge=client.judge)

    def resolve(self, actor: Principal, reference: str) -> Resolved:
        """Return the prompt version ``reference`` names, checking read access."""
        try:
            parsed = parse_reference(reference)
        except InvalidReference as error:
            raise Invalid(str(error)) from None
        self.registry.authorize_read(actor, parsed.name)
        resolved = self.registry.resolve(parsed)
        if resolved.status == REJECTED:
            raise Invalid(f"{resolved.name}@{resolved.version} was rejected in review")
        return resolved

    async def run(
        self,
        actor: Principal,
        prompt: str,
        dataset: str,
        evaluators: Sequence[Mapping[str, Any] | str] | None = None,
        options: RunOptions | None = None,
        progress: Callable[[CaseResult], None] | None = None,
        on_start: Callable[[RunRecord, int], None] | None = None,
    ) -> RunOutcome:
        """Run ``prompt`` over ``dataset``, store everything and return it.

        Raises Invalid or NotFound, before anything is stored, for a bad
        reference, a missing prompt or dataset, or bad evaluator specs.
        """
        options = options or RunOptions()
        options.check()
        resolved = self.resolve(actor, prompt)
        self.audit.require(
            actor,
            Permission.RUN_EVALS,
            "eval.run",
            f"prompt:{resolved.name}@{resolved.version}",
            team=resolved.team,
        )
        name, version = parse_dataset_reference(dataset)
        loaded = self.datasets.load(name, version)
        specs = list(evaluators or loaded.record.evaluators or [])
        built = build_evaluators(specs)
        cases = select_cases(loaded.eval_cases(), options)
        if not cases:
            raise NotFound(f"no case of {loaded.record.reference} matches the filter")
        _check_variables(resolved, cases)
        install_rubrics(self.registry, specs)
        run = self.runs.create(
            prompt=resolved.name,
            prompt_version=resolved.version,
            prompt_reference=prompt,
            dataset=loaded.record.name,
            dataset_version=loaded.record.version,
            evaluators=[
                {"kind": spec} if isinstance(spec, str) else spec for spec in specs
            ],
            settings=options.as_dict(),
            trials=options.trials,
            created_by=actor.name,
        )
        if on_start is not None:
            on_start(run, len(cases) * options.trials)
        services = Services(
            embed=self.services.embed,
            judge=CachedJudge(self.services.judge, self.runs, options.use_cache)
            if self.services.judge is not None
            else None,
        )
        work = _Work(self, run, resolved, built, services, options, progress)
        names = [evaluator.name for evaluator in built]
        thresholds = {evaluator.name: evaluator.threshold for evaluator in built}
        try:
            results = await work.run_all(cases)
        except BaseException:
            partial = summarize(work.done, names, thresholds)
            await asyncio.shield(
                asyncio.to_thread(
                    self.runs.finish,
                    run.id,
                    INTERRUPTED,
                    partial.as_dict(),
                    "interrupted before every case finished",
                )
            )
            raise
        summary = summarize(results, names, thresholds)
        status, error = FINISHED, None
        if all(result.status == "error" for result in results):
            status = FAILED
            error = f"every model call failed; the first: {results[0].error}"
        await asyncio.to_thread(
            self.runs.finish, run.id, status, summary.as_dict(), error
        )
        return RunOutcome(self.runs.find(run.id), results, summary)


class _Work:
    """The cases of one run, run with bounded concurrency."""

    def __init__(
        self,
        runner: EvalRunner,
        run: RunRecord,
        resolved: Resolved,
        evaluators: list[Evaluator],
        services: Services,
        options: RunOptions,
        progress: Callable[[CaseResult], None] | None,
    ) -> None:
        self.runner = runner
        self.run = run
        self.resolved = resolved
        self.evaluators = evaluators
        self.services = services
        self.options = options
        self.progress = progress
        self.done: list[CaseResult] = []
        self.limit = asyncio.Semaphore(options.concurrency)

    async def run_all(self, cases: Sequence[Case]) -> list[CaseResult]:
        jobs = [(case, trial) for trial in range(self.options.trials) for case in cases]
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._bounded(case, trial)) for case, trial in jobs
            ]
        return [task.result() for task in tasks]

    async def _bounded(self, case: Case, trial: int) -> CaseResult:
        async with self.limit:
            try:
                result = await asyncio.wait_for(
                    self._case(case, trial), self.options.case_timeout
                )
            except TimeoutError:
                result = self._failed(
                    case,
                    trial,
                    f"case timed out after {self.options.case_timeout:g} s",
                )
        await asyncio.to_thread(self.runner.runs.add_result, self.run.id, result)
        self.done.append(result)
        if self.progress is not None:
            self.progress(result)
        return result

    def _failed(self, case: Case, trial: int, reason: str) -> CaseResult:
        return CaseResult(
            case.key,
            trial,
            "error",
            None,
            error=reason,
            must_pass=case.must_pass,
            tags=case.tags,
        )

    def _output_key(self, variables: Mapping[str, Any], case: Case, trial: int) -> str:
        return cache_key(
            "output",
            {
                "prompt": self.resolved.name,
                "version": self.resolved.version,
                "content_hash": self.resolved.content_hash,
                "variables": dict(variables),
                "messages": list(case.messages or ()),
                "model": self.options.model,
                "trial": trial,
            },
        )

    async def _generate(self, case: Case, trial: int) -> tuple[dict[str, Any], bool]:
        variables = prompt_variables(self.resolved, case)
        key = self._output_key(variables, case, trial)
        runs = self.runner.runs
        if self.options.use_cache:
            stored = await asyncio.to_thread(runs.cached, key)
            if stored is not None:
                return stored, True
        body: dict[str, Any] = {
            "prompt": f"{self.resolved.name}@{self.resolved.version}",
            "variables": variables,
            "messages": [dict(message) for message in case.messages or ()],
        }
        if self.options.model is not None:
            body["model"] = self.options.model
        reply = await self.runner.client.chat(body)
        value = {
            "text": reply.text,
            "latency_ms": reply.latency_ms,
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens,
            "trace_id": reply.trace_id,
            "model": reply.model,
        }
        await asyncio.to_thread(runs.cache, key, "output", value)
        return value, False

    async def _case(self, case: Case, trial: int) -> CaseResult:
        try:
            value, cached = await self._generate(case, trial)
        except ServiceError as error:
            return self._failed(case, trial, str(error))
        sample = Sample(
            case,
            value["text"],
            latency_ms=value.get("latency_ms"),
            cost_usd=value.get("cost_usd"),
            input_tokens=value.get("input_tokens"),
            output_tokens=value.get("output_tokens"),
        )
        scores = [await self._score(evaluator, sample) for evaluator in self.evaluators]
        return CaseResult(
            case.key,
            trial,
            "ok",
            sample.output,
            latency_ms=sample.latency_ms,
            cost_usd=value.get("cost_usd"),
            input_tokens=sample.input_tokens,
            output_tokens=sample.output_tokens,
            cached=cached,
            trace_id=value.get("trace_id"),
            must_pass=case.must_pass,
            tags=case.tags,
            scores=scores,
        )

    async def _score(self, evaluator: Evaluator, sample: Sample) -> Score:
        missing = evaluator.missing(sample.case)
        if missing is not None:
            return evaluator.error(missing)
        try:
            score = await evaluator.evaluate(sample, self.services)
        except ServiceError as error:
            return evaluator.error(f"evaluator call failed: {error}")
        except Exception as error:  # noqa: BLE001 - one evaluator must not end a run
            log.exception(
                "evaluator %s raised on case %s of run %s",
                evaluator.name,
                sample.case.key,
                self.run.id,
            )
            return evaluator.error(
                f"evaluator raised {error.__class__.__name__}: {error}"
            )
        return score


def fill_costs(runs: RunStore, outcome: RunOutcome) -> RunOutcome:
    """Copy the gateway's traced cost into a run's results and summary.

    Traces are written after each answer, so call this once the gateway's
    trace writer has drained (after the in-process gateway has closed).
    Cached outputs keep the cost of the call that produced them.
    """
    judged = _judge_trace_ids(outcome.results)
    traced = runs.trace_costs(
        [result.trace_id for result in outcome.results if result.trace_id] + judged
    )
    for result in outcome.results:
        if result.trace_id in traced and result.cost_usd is None:
            result.cost_usd = traced[result.trace_id]
            runs.add_result(outcome.run.id, result)
    names = list(outcome.summary.evaluators)
    thresholds = outcome.summary.thresholds()
    summary = summarize(outcome.results, names, thresholds)
    data = summary.as_dict()
    # Judge calls this run made; replies from the cache cost nothing now.
    data["judge_cost_usd"] = sum(traced.get(trace_id, 0.0) for trace_id in judged)
    runs.finish(outcome.run.id, outcome.run.status, data, outcome.run.error)
    return RunOutcome(runs.find(outcome.run.id), outcome.results, summary)


def _judge_trace_ids(results: Sequence[CaseResult]) -> list[str]:
    """Return the trace ids of the judge calls recorded in scores' details."""
    ids = []
    for result in results:
        for score in result.scores:
            trace_id = score.details.get("judge_trace_id")
            if isinstance(trace_id, str):
                ids.append(trace_id)
            for call in score.details.get("judge_calls") or ():
                trace_id = (
                    call.get("judge_trace_id") if isinstance(call, dict) else None
                )
                if isinstance(trace_id, str):
                    ids.append(trace_id)
    return ids
