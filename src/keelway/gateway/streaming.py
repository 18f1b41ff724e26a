"""Relaying a provider's stream to the client, and tracing it even when cut short."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, Protocol

import anyio

from keelway.cache import completion_to_chunks
from keelway.gateway.caching import CacheHit
from keelway.gateway.errors import GatewayError
from keelway.gateway.pipeline import (
    Call,
    OpenStream,
    Pipeline,
    close_stream,
    estimate_stream_usage,
)
from keelway.gateway.responses import SSEResponse
from keelway.guardrails.stream import StreamGuard
from keelway.providers.base import ChatChunk
from keelway.providers.errors import ProviderError
from keelway.providers.openai import wants_usage
from keelway.tracing.stream import StreamAssembler
from keelway.tracing.usage import Usage

# The status nginx made common for a client that closed the connection.
CLIENT_CLOSED = 499


class StreamEncoder(Protocol):
    """Turns OpenAI chunks into the wire format of the route."""

    def chunk(self, chunk: ChatChunk) -> list[bytes]:
        """Encode one chunk for the client."""
        ...

    def end(self, usage: Usage | None) -> list[bytes]:
        """Encode the end of a stream that finished normally."""
        ...

    def error(self, failure: GatewayError) -> bytes:
        """Encode an error that happened after the headers were sent."""
        ...

    def response(self, assembler: StreamAssembler) -> dict[str, Any]:
        """Return the whole response, as the trace stores it."""
        ...


async def stream_response(
    pipeline: Pipeline, call: Call, encoder: StreamEncoder
) -> SSEResponse:
    """Start the provider's stream through routing and return an SSE response."""
    stream = await pipeline.open_stream(call)
    return SSEResponse(_relay(pipeline, call, encoder, stream), call.headers)


async def _relay(
    pipeline: Pipeline, call: Call, encoder: StreamEncoder, stream: OpenStream
) -> AsyncIterator[bytes]:
    trace = call.trace
    deployment = call.deployment
    assert deployment is not None
    chunks = stream.chunks
    assembler = StreamAssembler()
    guard = _stream_guard(pipeline, call)
    usage: Usage | None = None
    failure: GatewayError | None = None
    provider_error: ProviderError | None = None
    status = 200
    try:
        pending = [stream.first] if stream.first is not None else []
        while True:
            try:
                chunk = pending.pop() if pending else await anext(chunks)
            except StopAsyncIteration:
                break
            if chunk.usage is not None:
                usage = chunk.usage
            if assembler.add(chunk.data) and trace.ttft_ms is None:
                trace.ttft_ms = (time.perf_counter() - trace.started) * 1000
            if guard is None or not chunk.forward:
                for data in encoder.chunk(chunk):
                    yield data
                continue
            for piece in guard.feed(chunk.data):
                for data in encoder.chunk(replace(chunk, data=piece)):
                    yield data
            if guard.blocked is not None:
                # The rest of the answer is never read, let alone sent.
                break
        if guard is not None:
            for piece in guard.finish():
                for data in encoder.chunk(ChatChunk(piece)):
                    yield data
        # Backpressure from a full trace queue lands here, before the last bytes.
        await pipeline.writer.wait_for_room()
        for data in encoder.end(usage):
            yield data
    except ProviderError as error:
        provider_error = error
        failure = pipeline.translate(error, deployment)
        status = failure.status
        yield encoder.error(failure)
    except (asyncio.CancelledError, GeneratorExit):
        status = CLIENT_CLOSED
        trace.attributes = {**(trace.attributes or {}), "client_closed": True}
        raise
    finally:
        # The client may be gone: shield the clean-up from that cancellation
        # so the trace of an aborted stream is still completed and queued.
        with anyio.CancelScope(shield=True):
            await close_stream(chunks)
        pipeline.stream_ended(deployment, stream.started, provider_error)
        trace.span(
            "provider",
            stream.started,
            time.perf_counter(),
            status="ok" if failure is None else "error",
            error=failure.message if failure else None,
            attributes={"deployment": deployment.name, "stream": True},
        )
        stored = assembler
        if guard is not None:
            guard.record(trace)
            stored = FixedAnswer(guard.stored(assembler.completion()))
        pipeline.finish(
            trace,
            status=status,
            usage=usage or _usage_so_far(call, chunks, assembler),
            response=encoder.response(stored),
            error=failure,
            deployment=deployment,
        )
        await pipeline.settle(call)
        complete = status == 200 and (guard is None or guard.blocked is None)
        if complete and call.cache is not None:
            with anyio.CancelScope(shield=True):
                await pipeline.remember(
                    call, stored.completion(), usage, trace.cost_usd
                )
        pipeline.writer.enqueue(trace)
        if complete:
            pipeline.shadow(call, stored.completion())


class FixedAnswer(StreamAssembler):
    """An assembler that reports an answer built elsewhere (the stored form)."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__()
        self._answer = answer

    def completion(self) -> dict[str, Any]:
        return self._answer


def _stream_guard(pipeline: Pipeline, call: Call) -> StreamGuard | None:
    if pipeline.guard is None or call.guard is None:
        return None
    inputs = call.guard
    if not inputs.policy.output and not inputs.vault and not inputs.flagged:
        return None
    return StreamGuard(pipeline.guard, inputs, call.body)


def replay_response(
    pipeline: Pipeline, call: Call, encoder: StreamEncoder, hit: CacheHit
) -> SSEResponse:
    """Replay a cached response to a streamed request, as the provider streams."""
    return SSEResponse(_replay(pipeline, call, encoder, hit), call.headers)


async def _replay(
    pipeline: Pipeline, call: Call, encoder: StreamEncoder, hit: CacheHit
) -> AsyncIterator[bytes]:
    trace = call.trace
    body = hit.response.body
    chunks = completion_to_chunks(body, include_usage=wants_usage(call.body))
    status = 200
    try:
        for data in chunks:
            if trace.ttft_ms is None:
                trace.ttft_ms = (time.perf_counter() - trace.started) * 1000
            for encoded in encoder.chunk(ChatChunk(data)):
                yield encoded
        for encoded in encoder.end(hit.response.usage):
            yield encoded
    except (asyncio.CancelledError, GeneratorExit):
        status = CLIENT_CLOSED
        raise
    finally:
        pipeline.finish(trace, status=status, response=call.stored_answer or body)
        pipeline.writer.enqueue(trace)


def _usage_so_far(
    call: Call, chunks: AsyncIterator[ChatChunk], assembler: StreamAssembler
) -> Usage:
    """Estimate the usage of a stream that ended before the provider's report.

    Adapters that saw part of a report (Anthropic's ``message_start`` carries
    the exact input and cache counts) expose it as ``usage``; its output count
    is only what had been reported so far, so the estimate from the text wins
    when larger.
    """
    estimate = estimate_stream_usage(call, assembler)
    partial = getattr(chunks, "usage", None)
    if not isinstance(partial, Usage):
        return estimate
    output = max(partial.output_tokens, estimate.output_tokens)
    return replace(partial, output_tokens=output).estimated(estimate.tokenizer or "")
