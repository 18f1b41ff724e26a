"""The request pipeline shared by every route that reaches a model.

One request: authenticate the key, read and validate the body, pick a
deployment, call the provider, answer, and then (off the hot path) hand the
trace to the batch writer. Later steps (prompts, guardrails, retrieval,
caching, budgets) slot in between as spans of the same trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import anyio
from starlette.requests import Request

from keelway.config import Config
from keelway.gateway.attribution import attribute, prompt_reference
from keelway.gateway.auth import Authenticator, Caller
from keelway.gateway.body import read_json_object
from keelway.gateway.caching import CacheHit, CacheState, ResponseCache, record_hit
from keelway.gateway.errors import (
    DeploymentsUnavailable,
    GatewayError,
    GuardrailBlocked,
    InvalidRequest,
    ModelNotAllowed,
    ModelNotFound,
    from_provider_error,
)
from keelway.gateway.limiting import Admission, RequestLimits, deployment_rule
from keelway.gateway.prompting import PromptStep, PromptUse
from keelway.guardrails.engine import (
    Blocked,
    GuardEngine,
    InputResult,
    with_canary,
)
from keelway.limits import RateLimitExceeded
from keelway.monitoring.metrics import Metrics
from keelway.providers.base import ChatChunk, ChatResult, EmbeddingResult
from keelway.providers.errors import (
    DeploymentAtCapacity,
    ProviderError,
    UpstreamTimeout,
)
from keelway.routing import (
    Attempt,
    Deployment,
    Executor,
    NoDeploymentAvailable,
    Outcome,
    Router,
    RoutingFailed,
    classify,
)
from keelway.routing import ModelNotFound as NoSuchGroup
from keelway.routing.complexity import ComplexityRouter
from keelway.routing.policy import BREAKER_CLASSES
from keelway.tracing.estimate import estimate_usage
from keelway.tracing.pricing import PriceTable
from keelway.tracing.records import Payload, TraceRecord, encode_payload
from keelway.tracing.stream import StreamAssembler
from keelway.tracing.usage import Usage
from keelway.tracing.writer import TraceWriter

if TYPE_CHECKING:
    from keelway.gateway.shadow import ShadowRunner

log = logging.getLogger("keelway.requests")
errors_log = logging.getLogger(__name__)

JSONObject = dict[str, Any]
T = TypeVar("T")

# Fields keelway consumes itself and does not forward upstream.
KEELWAY_FIELDS = ("metadata", "prompt", "variables")

# Response header naming the request's trace, for feedback on it.
TRACE_HEADER = "x-keelway-trace-id"


@dataclass(slots=True)
class Call:
    """One authenticated, validated request on its way to a model group.

    ``deployment`` is set once an attempt on one of the group's deployments
    (or a fallback group's) has succeeded.
    """

    trace: TraceRecord
    caller: Caller
    body: JSONObject
    group: str
    sticky: str | None = None
    deployment: Deployment | None = None
    cache: CacheState | None = None
    admission: Admission | None = None
    prompt: PromptUse | None = None
    # A shadow call passes budgets but not rate limits.
    shadow: bool = False
    # The request as received, kept back from the trace until the guardrail
    # policy is known, since a policy may require the masked form instead.
    raw_request: Payload | None = None
    # What the input guardrails sent upstream, and their pseudonyms.
    guard: InputResult | None = None
    # The answer as traces may keep it, when guardrails masked anything.
    stored_answer: JSONObject | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the call adds: trace id, prompt version, rate limits."""
        headers = dict(self.admission.headers) if self.admission is not None else {}
        headers[TRACE_HEADER] = self.trace.id
        if self.prompt is not None:
            headers["x-keelway-prompt-version"] = self.prompt.scope
            variant = self.prompt.variant
            if variant is not None and self.prompt.shadow is None:
                # Variant names are checked when an experiment starts; quoting
                # keeps any stored before that check a valid header value.
                headers["x-keelway-variant"] = quote(variant, safe="._-")
        return headers

    def upstream_body(self) -> JSONObject:
        """Return the body to send upstream, without keelway's own fields."""
        body = {k: v for k, v in self.body.items() if k not in KEELWAY_FIELDS}
        if self.guard is not None and self.guard.canary is not None:
            body = with_canary(body, self.guard.canary)
        return body


class Pipeline:
    """Everything a request needs: router, keys, prices, metrics and the writer."""

    def __init__(
        self,
        config: Config,
        router: Router,
        auth: Authenticator,
        prices: PriceTable,
        metrics: Metrics,
        writer: TraceWriter,
        complexity: dict[str, ComplexityRouter] | None = None,
        cache: ResponseCache | None = None,
        limits: RequestLimits | None = None,
        prompts: PromptStep | None = None,
        guard: GuardEngine | None = None,
    ) -> None:
        self.config = config
        self.router = router
        self.auth = auth
        self.prices = prices
        self.metrics = metrics
        self.writer = writer
        self.executor = Executor(router, config.routing)
        self.complexity = complexity or {}
        self.cache = cache
        self.limits = limits
        self.prompts = prompts
        self.guard = guard
        # Set by the app once built, since the runner calls back into the pipeline.
        self.shadows: ShadowRunner | None = None
        self._secrets = [
            d.config.api_key for d in router.deployments() if d.config.api_key
        ]

    def begin(self, request: Request, route: str) -> TraceRecord:
        """Start the trace of a request."""
        request_id = request.headers.get("x-request-id") or ""
        trace = TraceRecord(route=route, request_id="")
        trace.request_id = request_id[:64] or trace.id
        return trace

    async def admit(
        self,
        request: Request,
        trace: TraceRecord,
        schema: Callable[[JSONObject], None],
        kind: str,
    ) -> Call:
        """Authenticate, read and validate the body, and pick the deployment."""
        started = time.perf_counter()
        caller = await self.auth.authenticate(request)
        trace.span(
            "auth", started, time.perf_counter(), attributes={"key": caller.key_name}
        )
        trace.key_id, trace.key_name, trace.team = (
            caller.key_id,
            caller.key_name,
            caller.team,
        )
        trace.payloads = caller.payloads or self.config.tracing.payloads

        server = self.config.server
        body = await read_json_object(
            request, server.max_body_bytes, server.body_timeout
        )
        raw_request = None
        if self.guard is not None and self.guard.may_apply(trace.payloads):
            # Stored only once the policy decides whether it must be masked.
            raw_request = encode_payload(body, self.config.tracing.max_payload_bytes)
        else:
            self._record_request(trace, body)
        attribute(trace, request, body)
        use = None
        if self.prompts is not None:
            style = "anthropic" if trace.route == "messages" else "openai"
            use = await self.prompts.apply(request, body, trace, caller, style)
            if use is not None:
                self.metrics.prompt_requests.labels(
                    use.resolved.name, use.resolved.version, use.variant or ""
                ).inc()
        schema(body)
        trace.stream = body.get("stream") is True

        model = str(body["model"])
        if model in self.complexity:
            model = await self._decide(model, caller, kind, body, trace)
            group = self.resolve(model, caller, kind, check_allowed=False)
        else:
            group = self.resolve(model, caller, kind)
        trace.model = group
        return Call(
            trace,
            caller,
            body,
            group,
            sticky=self._sticky(group, body),
            prompt=use,
            raw_request=raw_request,
        )

    async def guard_input(self, call: Call, kind: str = "chat") -> None:
        """Run the input guardrails of the call's policy (pipeline step 3).

        A blocking verdict raises :class:`GuardrailBlocked`. Otherwise the
        call's body becomes what the upstream may see, and the trace keeps
        the masked form.
        """
        guard = self.guard
        if guard is None:
            return
        trace = call.trace
        prompt = call.prompt.resolved.name if call.prompt is not None else None
        policy = guard.policy_for(
            call.caller.key_name, prompt, call.caller.team, call.group, trace.payloads
        )
        if policy is None:
            if call.raw_request is not None and trace.payloads == "full":
                trace.request = call.raw_request
            return
        try:
            inputs = await guard.check_input(
                policy, call.body, trace, self.guard_complete, kind=kind
            )
        except Blocked as blocked:
            self._record_request(trace, blocked.stored)
            raise GuardrailBlocked(
                f"request blocked by {blocked.verdict.summary()}",
                param="messages",
            ) from None
        call.guard = inputs
        call.body = inputs.body
        self._record_request(trace, inputs.stored)

    async def guard_complete(self, group: str, messages: list[JSONObject]) -> str:
        """Run a scanner's judge request on a model group and return its text.

        The request goes straight through routing (retries and fallbacks
        apply) but not through guardrails, which would judge the judge, and
        it is not traced or charged on its own: its time shows in the
        scanner's span.
        """
        if group not in self.router.groups:
            raise ValueError(f"no model group named {group!r} for the judge")
        body: JSONObject = {
            "model": group,
            "messages": messages,
            "temperature": 0,
            "max_tokens": 256,
        }

        async def attempt(current: Attempt) -> ChatResult:
            return await current.deployment.provider.chat(body)

        outcome = await self.executor.run(group, attempt)
        choices = outcome.value.body.get("choices") or [{}]
        message = choices[0].get("message") or {}
        content = message.get("content")
        return content if isinstance(content, str) else ""

    async def guard_output(
        self, call: Call, answer: JSONObject
    ) -> tuple[JSONObject, JSONObject]:
        """Run the output guardrails (pipeline step 7) on a whole answer.

        Returns the answer as the caller gets it and as traces and caches
        keep it.
        """
        if self.guard is None or call.guard is None:
            return answer, answer
        result = await self.guard.check_output(
            call.guard, answer, call.trace, call.body
        )
        call.stored_answer = result.stored
        return result.delivered, result.stored

    async def cached(self, call: Call, request: Request) -> CacheHit | None:
        """Look the request up in the response cache; record a hit on the trace."""
        if self.cache is None or not self.cache.applies(call.group):
            return None
        if call.guard is not None and call.guard.raw_upstream:
            # The cache would keep, and a semantic hit's reason quote, values
            # the guardrails only flagged.
            return None
        started = time.perf_counter()
        caller = call.caller
        access = f"team:{caller.team}" if caller.team else f"key:{caller.key_id}"
        # The whole body, since metadata.cache carries the caller's directive,
        # and the whole prompt reference: the trace's copy is cut short.
        scope: str | None = None
        if call.prompt is not None:
            scope = call.prompt.scope
        else:
            scope = prompt_reference(request, call.body)
        call.cache = self.cache.prepare(request, call.body, call.group, access, scope)
        hit = await self.cache.lookup(call.cache, call.group)
        if hit is not None and call.guard is not None:
            delivered, _ = await self.guard_output(call, hit.response.body)
            hit = replace(hit, response=replace(hit.response, body=delivered))
        if hit is not None:
            record_hit(call.trace, hit, started)
            self.metrics.cache_hits.labels(call.group, hit.kind).inc()
            if hit.response.cost_usd:
                self.metrics.cache_saved.labels(call.group).inc(hit.response.cost_usd)
        return hit

    async def remember(
        self, call: Call, body: JSONObject, usage: Usage | None, cost: float | None
    ) -> None:
        """Store a provider's response in the cache, if the call allows."""
        if call.guard is not None and call.guard.raw_upstream:
            # The request went upstream with values only flagged, and the
            # cache would keep the request's text; such answers stay out.
            return
        if self.cache is not None and call.cache is not None:
            await self.cache.store(call.cache, body, usage, cost)

    async def after_answer(
        self, call: Call, body: JSONObject, usage: Usage | None
    ) -> None:
        """Settle limits, cache the response and queue the trace after sending it."""
        await self.settle(call)
        await self.remember(call, body, usage, call.trace.cost_usd)
        await self.submit(call.trace)
        self.shadow(call, body)

    def shadow(self, call: Call, live: JSONObject | None) -> None:
        """Start the call's shadow version in the background, if it was sampled."""
        if self.shadows is not None and call.prompt is not None:
            self.shadows.schedule(call, live)

    def _sticky(self, group: str, body: JSONObject) -> str | None:
        """Return the value that pins this request to a deployment, if any."""
        field = self.router.specs[group].sticky
        if field is None:
            return None
        if field.startswith("metadata."):
            metadata = body.get("metadata")
            value = metadata.get(field[9:]) if isinstance(metadata, dict) else None
        else:
            value = body.get(field)
        return str(value) if isinstance(value, str | int) and value != "" else None

    async def _decide(
        self,
        name: str,
        caller: Caller,
        kind: str,
        body: JSONObject,
        trace: TraceRecord,
    ) -> str:
        """Send a request for a complexity router to its simple or complex group."""
        if not caller.allows(name):
            raise ModelNotAllowed(
                f"this API key may not use model {name!r}", param="model"
            )
        if kind != "chat":
            raise InvalidRequest(
                f"model {name!r} routes chat requests only",
                param="model",
                code="wrong_model_kind",
            )
        started = time.perf_counter()
        decision = await self.complexity[name].decide(body)
        details = decision.attributes()
        trace.span("complexity", started, time.perf_counter(), attributes=details)
        trace.attributes = {**(trace.attributes or {}), "complexity": details}
        return decision.target

    def resolve(
        self, model: str, caller: Caller, kind: str, *, check_allowed: bool = True
    ) -> str:
        """Return the model group ``model`` names, checking this caller may use it."""
        try:
            deployment = self.router.first(model)
        except NoSuchGroup:
            raise ModelNotFound(
                f"model {model!r} not found; GET /v1/models lists the models served",
                param="model",
            ) from None
        if check_allowed and not caller.allows(model):
            raise ModelNotAllowed(
                f"this API key may not use model {model!r}", param="model"
            )
        serves = (
            deployment.serves_chat if kind == "chat" else deployment.serves_embeddings
        )
        if not serves:
            raise InvalidRequest(
                f"model {model!r} does not serve {kind}",
                param="model",
                code="wrong_model_kind",
            )
        return model

    def _record_request(self, trace: TraceRecord, body: JSONObject) -> None:
        if trace.payloads in ("full", "redacted"):
            trace.request = encode_payload(body, self.config.tracing.max_payload_bytes)
        elif trace.payloads == "metadata_only":
            trace.attributes = {**(trace.attributes or {}), "request": _shape(body)}

    def _record_response(self, trace: TraceRecord, body: JSONObject) -> None:
        if trace.payloads in ("full", "redacted"):
            trace.response = encode_payload(body, self.config.tracing.max_payload_bytes)
        elif trace.payloads == "metadata_only":
            trace.attributes = {**(trace.attributes or {}), "response": _shape(body)}

    async def call(
        self, call: Call, run: Callable[[Deployment, JSONObject], Awaitable[T]]
    ) -> T:
        """Run a provider call through routing: one span per attempt."""
        body = call.upstream_body()

        async def attempt(current: Attempt) -> T:
            started = time.perf_counter()
            try:
                await self.take_slot(call, current.deployment)
                result = await run(current.deployment, body)
            except ProviderError as error:
                self._attempt_span(call, current, started, error)
                raise
            self._attempt_span(call, current, started, None)
            return result

        started = time.perf_counter()
        outcome = await self.route(call, attempt)
        self.router.finish(outcome.attempt.deployment, time.perf_counter() - started)
        return outcome.value

    async def route(
        self, call: Call, attempt: Callable[[Attempt], Awaitable[T]]
    ) -> Outcome[T]:
        """Check limits, then run attempts until one succeeds, translating failures."""
        if self.limits is not None:
            call.admission = await self.limits.admit(
                call.body,
                call.group,
                call.caller.record,
                call.caller.team,
                call.trace.user,
                rate=not call.shadow,
            )
        try:
            outcome = await self.executor.run(call.group, attempt, sticky=call.sticky)
        except RoutingFailed as failed:
            await self._release(call)
            self._enter(call.trace, failed.attempt)
            raise self.translate(failed.error, failed.attempt.deployment) from None
        except NoDeploymentAvailable as error:
            await self._release(call)
            raise DeploymentsUnavailable(
                str(error), headers={"Retry-After": f"{self._cooldown():g}"}
            ) from None
        except BaseException:
            await self._release(call)
            raise
        call.deployment = outcome.attempt.deployment
        self._enter(call.trace, outcome.attempt)
        return outcome

    async def _release(self, call: Call) -> None:
        if self.limits is not None:
            with anyio.CancelScope(shield=True):
                await self.limits.release(call.admission)

    async def settle(self, call: Call) -> None:
        """Charge the call's real cost to its budgets and correct its tokens."""
        if self.limits is not None and call.admission is not None:
            with anyio.CancelScope(shield=True):
                await self.limits.settle(call.admission, call.trace)

    async def take_slot(self, call: Call, deployment: Deployment) -> None:
        """Count an attempt against the deployment's own rate limit, if it has one."""
        rule = deployment_rule(deployment)
        if rule is None or self.limits is None:
            return
        tokens = call.admission.tokens if call.admission is not None else 0
        try:
            await self.limits.rate.acquire([rule], tokens)
        except RateLimitExceeded as error:
            raise DeploymentAtCapacity(error.message, error.retry_after) from None

    def _cooldown(self) -> float:
        return self.config.routing.circuit_breaker.cooldown_seconds

    def _enter(self, trace: TraceRecord, attempt: Attempt) -> None:
        """Record the deployment of the final attempt on the trace."""
        deployment = attempt.deployment
        trace.deployment = deployment.name
        trace.provider = deployment.config.provider
        trace.upstream_model = deployment.config.model
        if attempt.number > 1 or attempt.group != trace.model:
            routing = {"attempts": attempt.number, "group": attempt.group}
            trace.attributes = {**(trace.attributes or {}), "routing": routing}

    def _attempt_span(
        self,
        call: Call,
        attempt: Attempt,
        started: float,
        error: ProviderError | None,
    ) -> None:
        deployment = attempt.deployment
        attributes: dict[str, Any] = {
            "deployment": deployment.name,
            "model": deployment.config.model,
            "group": attempt.group,
            "attempt": attempt.number,
        }
        if error is None:
            call.trace.span(
                "provider", started, time.perf_counter(), attributes=attributes
            )
            return
        attributes["error_class"] = classify(error).value
        message = self.scrub(from_provider_error(error, deployment.name).message)
        call.trace.span(
            "provider",
            started,
            time.perf_counter(),
            status="error",
            error=message,
            attributes=attributes,
        )

    def translate(
        self, error: ProviderError, deployment: Deployment | None
    ) -> GatewayError:
        """Translate a provider error, with any upstream secret scrubbed out."""
        name = deployment.name if deployment else "-"
        translated = from_provider_error(error, name)
        translated.message = self.scrub(translated.message)
        if not isinstance(translated, InvalidRequest):
            errors_log.warning(
                "deployment %s failed: %s: %s",
                name,
                error.__class__.__name__,
                translated.message,
            )
        return translated

    def scrub(self, text: str) -> str:
        """Remove configured provider keys from text bound for a client or log."""
        for secret in self._secrets:
            if secret and secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    async def open_stream(self, call: Call) -> OpenStream:
        """Start the stream on the first deployment that yields a first chunk.

        The first chunk is awaited before the response starts, so failures
        up to it are retried and fall back like any other call, and one that
        fails them all still gets a proper HTTP status.
        """
        body = call.upstream_body()

        async def attempt(current: Attempt) -> OpenStream:
            started = time.perf_counter()
            try:
                await self.take_slot(call, current.deployment)
            except ProviderError as error:
                self._attempt_span(call, current, started, error)
                raise
            chunks = current.deployment.provider.chat_stream(body)
            timeout = current.deployment.config.timeout.first_token
            try:
                first = await _first_chunk(chunks, timeout)
            except ProviderError as error:
                await close_stream(chunks)
                self._attempt_span(call, current, started, error)
                raise
            except BaseException:
                await close_stream(chunks)
                raise
            return OpenStream(first, chunks, started)

        outcome = await self.route(call, attempt)
        return outcome.value

    def stream_ended(
        self, deployment: Deployment, started: float, error: ProviderError | None
    ) -> None:
        """Record the end of a stream on the deployment's health and latency."""
        if error is None:
            self.router.finish(deployment, time.perf_counter() - started)
            return
        self.router.finish(deployment, None)
        if classify(error) in BREAKER_CLASSES:
            deployment.breaker.fail()

    def finish(
        self,
        trace: TraceRecord,
        *,
        status: int = 200,
        usage: Usage | None = None,
        response: JSONObject | None = None,
        error: GatewayError | None = None,
        deployment: Deployment | None = None,
    ) -> None:
        """Complete the trace: cost, payload, metrics and the request log line."""
        trace.latency_ms = (time.perf_counter() - trace.started) * 1000
        trace.http_status = status
        if response is not None:
            self._record_response(trace, response)
        if error is not None:
            trace.status = "error"
            trace.error_type = error.code or error.error_type
            trace.error_message = error.message
        if usage is not None:
            trace.usage = usage
            self._price(trace, usage, deployment)
        self._observe(trace)

    def _price(
        self, trace: TraceRecord, usage: Usage, deployment: Deployment | None
    ) -> None:
        override = deployment.config.price if deployment else None
        model = trace.upstream_model or trace.model or ""
        trace.cost_usd = self.prices.cost(model, usage, override)
        trace.price_table_version = self.prices.version
        self.metrics.record_usage(
            trace.model or "", trace.deployment or "", usage, trace.cost_usd
        )

    def _observe(self, trace: TraceRecord) -> None:
        model, deployment = trace.model or "", trace.deployment or ""
        labels = (trace.route, model, deployment)
        self.metrics.requests.labels(*labels, str(trace.http_status)).inc()
        self.metrics.latency.labels(*labels).observe(trace.latency_ms / 1000)
        if trace.ttft_ms is not None:
            self.metrics.ttft.labels(*labels).observe(trace.ttft_ms / 1000)
        if trace.status != "ok":
            self.metrics.errors.labels(*labels, trace.error_type or "error").inc()
        log.info(
            "request",
            extra={
                "request_id": trace.request_id,
                "trace_id": trace.id,
                "route": trace.route,
                "key": trace.key_name,
                "model": trace.model,
                "deployment": trace.deployment,
                "status": trace.http_status,
                "latency_ms": round(trace.latency_ms, 2),
            },
        )

    async def submit(self, trace: TraceRecord) -> None:
        """Hand the trace to the writer, waiting for room if the queue is full."""
        await self.writer.submit(trace)

    def reject(self, trace: TraceRecord, error: GatewayError) -> bool:
        """Count a rejected request and return whether it gets a trace."""
        if trace.key_name is None:
            trace.latency_ms = (time.perf_counter() - trace.started) * 1000
            trace.http_status = error.status
            trace.status = "error"
            trace.error_type = error.code or error.error_type
            self._observe(trace)
            return False
        self.finish(trace, status=error.status, error=error)
        return True


async def provider_chat(deployment: Deployment, body: JSONObject) -> ChatResult:
    """Run a non-streamed chat completion on one deployment."""
    result: ChatResult = await deployment.provider.chat(body)
    return result


async def provider_embed(deployment: Deployment, body: JSONObject) -> EmbeddingResult:
    """Run an embeddings request on one deployment."""
    result: EmbeddingResult = await deployment.provider.embed(body)
    return result


@dataclass(slots=True)
class OpenStream:
    """A provider stream whose first chunk has arrived (None: it was empty)."""

    first: ChatChunk | None
    chunks: AsyncIterator[ChatChunk]
    started: float


async def _first_chunk(
    chunks: AsyncIterator[ChatChunk], timeout: float | None
) -> ChatChunk | None:
    try:
        if timeout is None:
            return await anext(chunks)
        return await asyncio.wait_for(anext(chunks), timeout)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        raise UpstreamTimeout(
            f"upstream sent no first chunk within {timeout:g}s"
        ) from None


async def close_stream(chunks: AsyncIterator[ChatChunk]) -> None:
    """Close a provider stream, ignoring one that already failed or never began."""
    close = getattr(chunks, "aclose", None)
    if close is None:
        return
    try:
        await close()
    except (ProviderError, RuntimeError):
        return


def _shape(body: JSONObject) -> JSONObject:
    """Summarize a payload without its content: counts, roles and sizes."""
    shape: JSONObject = {}
    messages = body.get("messages")
    if isinstance(messages, list):
        shape["messages"] = len(messages)
        shape["roles"] = [m.get("role") for m in messages if isinstance(m, dict)][:50]
    choices = body.get("choices")
    if isinstance(choices, list):
        shape["choices"] = len(choices)
        shape["finish_reasons"] = [
            c.get("finish_reason") for c in choices if isinstance(c, dict)
        ]
    if isinstance(body.get("tools"), list):
        shape["tools"] = len(body["tools"])
    if isinstance(body.get("data"), list):
        shape["items"] = len(body["data"])
    return shape


def estimate_stream_usage(call: Call, assembler: StreamAssembler) -> Usage:
    """Estimate usage for a stream that ended before the provider reported it."""
    messages = call.body.get("messages")
    return estimate_usage(
        messages if isinstance(messages, list) else [], assembler.text()
    )
