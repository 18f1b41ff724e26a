"""Online evaluation: scoring a sample of production traces after they are stored.

The trace writer hands each stored batch to :meth:`OnlineEvaluator.offer`,
which only picks the sampled traces (by a hash of the trace id, so every
replica samples the same way) and queues them; the request that made a
trace has been answered long before. Worker tasks run the configured
evaluators and store each score on its trace (``trace_scores`` with source
``online_eval``). Judge and embedding calls go through the gateway itself,
as use case ``eval``, and such traces are never sampled again.

Scores that could not be computed are counted in ``/metrics`` with outcome
``error`` and not stored, since a trace score is always a number.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from keelway.config import OnlineEvalConfig
from keelway.evals.base import Case, Evaluator, Sample, Services
from keelway.evals.evaluators import build
from keelway.evals.from_traces import answer_text
from keelway.monitoring.metrics import Metrics
from keelway.store.database import Database
from keelway.store.models import TraceScore
from keelway.tracing.records import TraceRecord

log = logging.getLogger(__name__)

SOURCE = "online_eval"
EVAL_USE_CASE = "eval"
MAX_REASON = 4000


def sampled(trace_id: str, rate: float) -> bool:
    """Return whether ``trace_id`` falls in a sample of share ``rate``."""
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(trace_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def trace_sample(trace: TraceRecord, context_variable: str) -> Sample | None:
    """Return the case and output of a stored trace, or None without payloads."""
    request = trace.request.text if trace.request is not None else None
    response = trace.response.text if trace.response is not None else None
    if not request or not response:
        return None
    if trace.request.truncated or trace.response.truncated:
        return None
    try:
        body = orjson.loads(request)
    except orjson.JSONDecodeError:
        return None
    output = answer_text(response)
    if not isinstance(body, dict) or output is None:
        return None
    variables = body.get("variables") if isinstance(body.get("variables"), dict) else {}
    messages = body.get("messages") if isinstance(body.get("messages"), list) else None
    context = variables.get(context_variable)
    case = Case(
        key=trace.id,
        variables=variables,
        messages=[item for item in messages or [] if isinstance(item, dict)] or None,
        context=(context,) if isinstance(context, str) and context else (),
        metadata={"prompt": trace.prompt, "prompt_version": trace.prompt_version},
    )
    return Sample(
        case,
        output,
        latency_ms=trace.latency_ms,
        cost_usd=trace.cost_usd,
    )


class OnlineEvaluator:
    """Queues sampled traces and scores them in background tasks."""

    def __init__(
        self, config: OnlineEvalConfig, database: Database, metrics: Metrics
    ) -> None:
        self.config = config
        self.database = database
        self.metrics = metrics
        self.evaluators: list[Evaluator] = [build(spec) for spec in config.evaluators]
        self.queue: asyncio.Queue[TraceRecord] = asyncio.Queue(config.queue_size)
        self.services = Services()
        self.windows: dict[str, collections.deque[bool]] = {
            evaluator.name: collections.deque(maxlen=config.window)
            for evaluator in self.evaluators
        }
        self._tasks: list[asyncio.Task[None]] = []

    def offer(self, batch: Sequence[TraceRecord]) -> None:
        """Queue the sampled traces of a stored batch; never waits."""
        for trace in batch:
            if not self._wanted(trace):
                continue
            try:
                self.queue.put_nowait(trace)
            except asyncio.QueueFull:
                self.metrics.online_eval_dropped.inc()

    def _wanted(self, trace: TraceRecord) -> bool:
        if trace.status != "ok" or trace.use_case == EVAL_USE_CASE:
            return False
        if self.config.prompts and trace.prompt not in self.config.prompts:
            return False
        return sampled(trace.id, self.config.sample_rate)

    def start(self, services: Services) -> None:
        """Start the worker tasks, which call models through ``services``."""
        self.services = services
        self._tasks = [
            asyncio.create_task(self._work(), name=f"keelway-online-eval-{index}")
            for index in range(self.config.concurrency)
        ]

    async def stop(self, timeout: float) -> None:
        """Finish queued traces for up to ``timeout`` seconds, then stop."""
        try:
            await asyncio.wait_for(self.queue.join(), timeout)
        except TimeoutError:
            log.warning(
                "online evaluation stopped with %d traces not evaluated",
                self.queue.qsize(),
            )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            trace = await self.queue.get()
            try:
                await self.evaluate(trace)
            except Exception:  # noqa: BLE001 - one trace must not stop the worker
                log.exception("online evaluation of trace %s failed", trace.id)
            finally:
                self.queue.task_done()

    async def evaluate(self, trace: TraceRecord) -> list[Any]:
        """Score one trace with every evaluator and store the scores."""
        sample = trace_sample(trace, self.config.context_variable)
        if sample is None:
            return []
        rows = []
        scores = []
        for evaluator in self.evaluators:
            missing = evaluator.missing(sample.case)
            score = (
                evaluator.error(missing)
                if missing is not None
                else await evaluator.evaluate(sample, self.services)
            )
            scores.append(score)
            if score.status != "ok" or score.value is None:
                self.metrics.online_eval_results.labels(evaluator.name, "error").inc()
                log.info(
                    "online evaluator %s could not score trace %s: %s",
                    evaluator.name,
                    trace.id,
                    score.reason,
                )
                continue
            outcome = "pass" if score.passed else "fail"
            self.metrics.online_eval_results.labels(evaluator.name, outcome).inc()
            window = self.windows[evaluator.name]
            window.append(not score.passed)
            self.metrics.online_eval_failure_ratio.labels(evaluator.name).set(
                sum(window) / len(window)
            )
            rows.append(
                TraceScore(
                    id=uuid.uuid4().hex,
                    trace_id=trace.id,
                    name=evaluator.name[:100],
                    value=score.value,
                    source=SOURCE,
                    comment=score.reason[:MAX_REASON].replace("\x00", "\ufffd"),
                    author="online-eval",
                    created_at=datetime.now(UTC),
                )
            )
        if rows:
            await asyncio.to_thread(self._store, rows)
        return scores

    def _store(self, rows: list[TraceScore]) -> None:
        with self.database.session() as session, session.begin():
            session.add_all(rows)
