"""OpenAI-compatible routes: chat completions, embeddings and the model list."""

from __future__ import annotations

from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from keelway.gateway.caching import CacheHit
from keelway.gateway.errors import GatewayError
from keelway.gateway.pipeline import Call, Pipeline, provider_chat, provider_embed
from keelway.gateway.responses import error_response, json_response, sse
from keelway.gateway.schemas import ChatCompletionRequest, EmbeddingRequest, validate
from keelway.gateway.streaming import replay_response, stream_response
from keelway.providers.base import ChatChunk
from keelway.tracing.stream import StreamAssembler
from keelway.tracing.usage import Usage


def _pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


def _check_chat(body: dict[str, Any]) -> None:
    validate(ChatCompletionRequest, body)


def _check_embedding(body: dict[str, Any]) -> None:
    validate(EmbeddingRequest, body)


async def chat_completions(request: Request) -> Response:
    """POST /v1/chat/completions."""
    pipeline = _pipeline(request)
    trace = pipeline.begin(request, "chat")
    try:
        call = await pipeline.admit(request, trace, _check_chat, "chat")
        await pipeline.guard_input(call)
        hit = await pipeline.cached(call, request)
        if hit is not None:
            return _from_cache(pipeline, call, hit)
        if trace.stream:
            return await stream_response(pipeline, call, _OpenAIEncoder())
        result = await pipeline.call(call, provider_chat)
        delivered, stored = await pipeline.guard_output(call, result.body)
    except GatewayError as error:
        traced = pipeline.reject(trace, error)
        background = BackgroundTask(pipeline.submit, trace) if traced else None
        return error_response(error, background=background)
    pipeline.finish(
        trace, usage=result.usage, response=stored, deployment=call.deployment
    )
    after = BackgroundTask(pipeline.after_answer, call, stored, result.usage)
    return json_response(delivered, background=after, headers=call.headers)


def _from_cache(pipeline: Pipeline, call: Call, hit: CacheHit) -> Response:
    if call.trace.stream:
        return replay_response(pipeline, call, _OpenAIEncoder(), hit)
    pipeline.finish(call.trace, response=call.stored_answer or hit.response.body)
    background = BackgroundTask(pipeline.submit, call.trace)
    return json_response(hit.response.body, background=background, headers=call.headers)


class _OpenAIEncoder:
    """Chunks as OpenAI SSE events, ending with ``[DONE]``."""

    def chunk(self, chunk: ChatChunk) -> list[bytes]:
        return [sse(chunk.data)] if chunk.forward else []

    def end(self, usage: Usage | None) -> list[bytes]:
        return [b"data: [DONE]\n\n"]

    def error(self, failure: GatewayError) -> bytes:
        # Headers are sent, so the error travels as a final event, as OpenAI does.
        return sse(failure.openai_body())

    def response(self, assembler: StreamAssembler) -> dict[str, Any]:
        return assembler.completion()


async def embeddings(request: Request) -> Response:
    """POST /v1/embeddings."""
    pipeline = _pipeline(request)
    trace = pipeline.begin(request, "embeddings")
    try:
        call = await pipeline.admit(request, trace, _check_embedding, "embeddings")
        await pipeline.guard_input(call, "embeddings")
        result = await pipeline.call(call, provider_embed)
    except GatewayError as error:
        traced = pipeline.reject(trace, error)
        background = BackgroundTask(pipeline.submit, trace) if traced else None
        return error_response(error, background=background)
    pipeline.finish(
        trace,
        usage=result.usage,
        response=_without_vectors(result.body),
        deployment=call.deployment,
    )
    after = BackgroundTask(pipeline.after_answer, call, result.body, result.usage)
    return json_response(result.body, background=after, headers=call.headers)


def _without_vectors(body: dict[str, Any]) -> dict[str, Any]:
    """Keep an embeddings answer's shape for the trace, not its vectors."""
    data = body.get("data")
    if not isinstance(data, list):
        return body
    items = []
    for item in data:
        vector = item.get("embedding") if isinstance(item, dict) else None
        size = len(vector) if isinstance(vector, list | str) else 0
        items.append(
            {
                "index": item.get("index") if isinstance(item, dict) else None,
                "embedding_length": size,
            }
        )
    return {**body, "data": items}


async def list_models(request: Request) -> Response:
    """GET /v1/models: the models this key may use."""
    pipeline = _pipeline(request)
    try:
        caller = await pipeline.auth.authenticate(request)
    except GatewayError as error:
        return error_response(error)
    created = int(request.app.state.started_at)
    models = [
        {"id": name, "object": "model", "created": created, "owned_by": "keelway"}
        for name in [*pipeline.router.groups, *pipeline.complexity]
        if caller.allows(name)
    ]
    return json_response({"object": "list", "data": models})
