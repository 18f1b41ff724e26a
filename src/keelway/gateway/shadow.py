"""Shadow calls: a candidate prompt version run on a copy of live traffic.

A shadow call starts only after the live answer has been sent, runs as a
task of its own, and its answer goes to the store, never to the client. It
waits a random delay of up to ``start_delay`` seconds first: a client's next
request tends to arrive just after its previous answer, and a shadow call
started at that moment would take CPU from it.
It passes the caller's budgets but not the caller's rate limits, so that
shadow traffic cannot turn live requests into 429s. When more than
``max_pending`` shadow calls are running, new ones are dropped and counted
rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from keelway.experiments.store import ExperimentStore, SampleRecord, sample_row
from keelway.gateway.errors import GatewayError
from keelway.gateway.pipeline import Call, Pipeline, provider_chat
from keelway.gateway.prompting import PromptStep, PromptUse
from keelway.tracing.records import TraceRecord

log = logging.getLogger(__name__)

JSONObject = dict[str, Any]


def answer_text(body: JSONObject | None) -> str | None:
    """Return the text of a chat completion's first choice, or None."""
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    calls = message.get("tool_calls")
    return str(calls) if calls else None


class ShadowRunner:
    """Runs shadow calls in the background and stores both outputs."""

    def __init__(
        self,
        pipeline: Pipeline,
        step: PromptStep,
        experiments: ExperimentStore,
        max_pending: int = 64,
        start_delay: float = 0.0,
    ) -> None:
        self.pipeline = pipeline
        self.step = step
        self.experiments = experiments
        self.max_pending = max_pending
        self.start_delay = start_delay
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def schedule(self, call: Call, live: JSONObject | None) -> None:
        """Start the shadow call of a live call that was sampled for one."""
        use = call.prompt
        if use is None or use.shadow is None or use.experiment is None:
            return
        if len(self._tasks) >= self.max_pending:
            self.dropped += 1
            self.pipeline.metrics.shadow_dropped.labels(use.experiment.name).inc()
            return
        task = asyncio.create_task(self._run(call, use, live))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, call: Call, use: PromptUse, live: JSONObject | None) -> None:
        assert use.shadow is not None and use.experiment is not None
        if self.start_delay > 0:
            await asyncio.sleep(random.uniform(0, self.start_delay))
        pipeline = self.pipeline
        trace = _shadow_trace(call.trace, use)
        status, error_text, result_body = "ok", None, None
        shadow_call: Call | None = None
        try:
            body = self.step.render_shadow(use)
            group = pipeline.resolve(str(body.get("model")), call.caller, "chat")
            trace.model = group
            shadow_call = Call(trace, call.caller, body, group, shadow=True)
            # The shadow version reads the same variables, so the same
            # guardrails apply before its text goes upstream.
            await pipeline.guard_input(shadow_call)
            result = await pipeline.call(shadow_call, provider_chat)
            _, stored = await pipeline.guard_output(shadow_call, result.body)
        except GatewayError as error:
            status, error_text = "error", error.message
            pipeline.finish(trace, status=error.status, error=error)
        except Exception as error:  # noqa: BLE001 - a shadow must never crash the app
            log.exception("shadow call of trace %s failed", call.trace.id)
            status, error_text = "error", error.__class__.__name__
            trace.status = "error"
        else:
            result_body = stored
            pipeline.finish(
                trace,
                usage=result.usage,
                response=stored,
                deployment=shadow_call.deployment,
            )
        if shadow_call is not None:
            await pipeline.settle(shadow_call)
        sample = SampleRecord(
            experiment_id=use.experiment.id,
            trace_id=call.trace.id,
            shadow_trace_id=trace.id,
            live_version=use.resolved.version,
            shadow_version=use.shadow.version,
            live_output=answer_text(live),
            shadow_output=answer_text(result_body),
            live_latency_ms=call.trace.latency_ms,
            shadow_latency_ms=trace.latency_ms,
            live_cost_usd=call.trace.cost_usd,
            shadow_cost_usd=trace.cost_usd,
            shadow_status=status,
            shadow_error=error_text,
        )
        # Written with the shadow's trace, in the writer's batched transaction.
        trace.samples.append(sample_row(sample))
        await pipeline.submit(trace)

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for running shadow calls, then cancel."""
        if not self._tasks:
            return
        done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("cancelled %d shadow calls at shutdown", len(pending))


def _shadow_trace(live: TraceRecord, use: PromptUse) -> TraceRecord:
    assert use.shadow is not None and use.experiment is not None
    trace = TraceRecord(route="shadow", request_id=live.request_id)
    trace.key_id, trace.key_name, trace.team = live.key_id, live.key_name, live.team
    trace.user, trace.use_case, trace.segment = live.user, live.use_case, live.segment
    trace.payloads = live.payloads
    trace.prompt = use.shadow.name
    trace.prompt_version = use.shadow.version
    trace.experiment = use.experiment.name
    trace.variant = "shadow"
    trace.attributes = {"shadow_of": live.id}
    trace.started = time.perf_counter()
    return trace
