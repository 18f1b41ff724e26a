"""The request pipeline shared by every route that reaches a model.

One request: authenticate the key, read and validate the body, pick a
deployment, call the provider, answer, and then (off the hot path) hand the
trace to the batch writer. Later steps (prompts, guardrails, retrieval,
caching, budgets) slot in between as spans of the same trace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request

from keelway.config import Config
from keelway.gateway.attribution import attribute
from keelway.gateway.auth import Authenticator, Caller
from keelway.gateway.body import read_json_object
from keelway.gateway.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotAllowed,
    ModelNotFound,
    from_provider_error,
)
from keelway.monitoring.metrics import Metrics
from keelway.providers.base import ChatChunk
from keelway.providers.errors import ProviderError
from keelway.routing import Deployment, Router
from keelway.routing import ModelNotFound as NoSuchGroup
from keelway.tracing.estimate import estimate_usage
from keelway.tracing.pricing import PriceTable
from keelway.tracing.records import TraceRecord, encode_payload
from keelway.tracing.stream import StreamAssembler
from keelway.tracing.usage import Usage
from keelway.tracing.writer import TraceWriter

log = logging.getLogger("keelway.requests")
errors_log = logging.getLogger(__name__)

JSONObject = dict[str, Any]
T = TypeVar("T")

# Fields keelway consumes itself and does not forward upstream.
KEELWAY_FIELDS = ("metadata",)


@dataclass(slots=True)
class Call:
    """One authenticated, validated request on its way to a deployment."""

    trace: TraceRecord
    caller: Caller
    body: JSONObject
    deployment: Deployment

    def upstream_body(self) -> JSONObject:
        """Return the body to send upstream, without keelway's own fields."""
        return {k: v for k, v in self.body.items() if k not in KEELWAY_FIELDS}


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
    ) -> None:
        self.config = config
        self.router = router
        self.auth = auth
        self.prices = prices
        self.metrics = metrics
        self.writer = writer
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
        self._record_request(trace, body)
        schema(body)
        attribute(trace, request, body)
        trace.stream = body.get("stream") is True

        deployment = self.resolve(str(body["model"]), caller, kind)
        trace.model = deployment.group
        trace.deployment = deployment.name
        trace.provider = deployment.config.provider
        trace.upstream_model = deployment.config.model
        return Call(trace, caller, body, deployment)

    def resolve(self, model: str, caller: Caller, kind: str) -> Deployment:
        """Return the deployment for ``model`` that this caller may use."""
        try:
            deployment = self.router.pick(model)
        except NoSuchGroup:
            raise ModelNotFound(
                f"model {model!r} not found; GET /v1/models lists the models served",
                param="model",
            ) from None
        if not caller.allows(model):
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
        return deployment

    def _record_request(self, trace: TraceRecord, body: JSONObject) -> None:
        if trace.payloads == "full":
            trace.request = encode_payload(body, self.config.tracing.max_payload_bytes)
        elif trace.payloads == "metadata_only":
            trace.attributes = {**(trace.attributes or {}), "request": _shape(body)}

    def _record_response(self, trace: TraceRecord, body: JSONObject) -> None:
        if trace.payloads == "full":
            trace.response = encode_payload(body, self.config.tracing.max_payload_bytes)
        elif trace.payloads == "metadata_only":
            trace.attributes = {**(trace.attributes or {}), "response": _shape(body)}

    async def call(self, call: Call, run: Callable[[JSONObject], Awaitable[T]]) -> T:
        """Run one provider call as a span, translating its errors."""
        started = time.perf_counter()
        attributes = {
            "deployment": call.deployment.name,
            "model": call.deployment.config.model,
        }
        try:
            result = await run(call.upstream_body())
        except ProviderError as error:
            gateway_error = self.translate(error, call.deployment)
            call.trace.span(
                "provider",
                started,
                time.perf_counter(),
                status="error",
                error=gateway_error.message,
                attributes=attributes,
            )
            raise gateway_error from None
        call.trace.span("provider", started, time.perf_counter(), attributes=attributes)
        return result

    def translate(self, error: ProviderError, deployment: Deployment) -> GatewayError:
        """Translate a provider error, with any upstream secret scrubbed out."""
        translated = from_provider_error(error, deployment.name)
        translated.message = self.scrub(translated.message)
        if not isinstance(translated, InvalidRequest):
            errors_log.warning(
                "deployment %s failed: %s: %s",
                deployment.name,
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

    async def first_chunk(
        self, call: Call, chunks: AsyncIterator[ChatChunk], started: float
    ) -> ChatChunk | None:
        """Wait for a stream's first chunk, so errors before it still get a status."""
        try:
            return await anext(chunks)
        except StopAsyncIteration:
            return None
        except ProviderError as error:
            gateway_error = self.translate(error, call.deployment)
            call.trace.span(
                "provider",
                started,
                time.perf_counter(),
                status="error",
                error=gateway_error.message,
                attributes={"deployment": call.deployment.name},
            )
            raise gateway_error from None

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
        """Count a request rejected before authentication; say whether to trace it."""
        if trace.key_name is None:
            trace.latency_ms = (time.perf_counter() - trace.started) * 1000
            trace.http_status = error.status
            trace.status = "error"
            trace.error_type = error.code or error.error_type
            self._observe(trace)
            return False
        self.finish(trace, status=error.status, error=error)
        return True


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
