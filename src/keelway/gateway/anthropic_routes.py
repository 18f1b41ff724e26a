"""The Anthropic-compatible ``POST /v1/messages`` route.

Requests are translated to the OpenAI shape that every provider adapter
takes, so Anthropic's SDK can call any model keelway serves. Responses and
stream events are translated back.
"""

from __future__ import annotations

from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from keelway.gateway.caching import CacheHit
from keelway.gateway.errors import GatewayError
from keelway.gateway.pipeline import Call, Pipeline, provider_chat
from keelway.gateway.responses import error_response, json_response, sse
from keelway.gateway.schemas import MessagesRequest, validate
from keelway.gateway.streaming import replay_response, stream_response
from keelway.providers.anthropic_format import (
    ChatToMessagesStream,
    chat_response_to_messages,
    messages_request_to_chat,
)
from keelway.providers.base import ChatChunk
from keelway.providers.errors import ProviderError, UnsupportedRequest
from keelway.tracing.stream import StreamAssembler
from keelway.tracing.usage import Usage


def _check_messages(body: dict[str, Any]) -> None:
    validate(MessagesRequest, body)


def _translated(call: Call, pipeline: Pipeline) -> Call:
    try:
        chat_body = messages_request_to_chat(call.body)
    except UnsupportedRequest as error:
        raise pipeline.translate(error, None) from None
    return Call(
        call.trace,
        call.caller,
        chat_body,
        call.group,
        sticky=call.sticky,
        prompt=call.prompt,
        raw_request=call.raw_request,
    )


async def messages(request: Request) -> Response:
    """POST /v1/messages."""
    pipeline: Pipeline = request.app.state.pipeline
    trace = pipeline.begin(request, "messages")
    try:
        call = _translated(
            await pipeline.admit(request, trace, _check_messages, "chat"), pipeline
        )
        model = str(call.body["model"])
        await pipeline.guard_input(call)
        hit = await pipeline.cached(call, request)
        if hit is not None:
            return _from_cache(pipeline, call, hit, model)
        if trace.stream:
            return await stream_response(pipeline, call, _AnthropicEncoder(model))
        result = await pipeline.call(call, provider_chat)
        delivered, stored = await pipeline.guard_output(call, result.body)
        answer = _translated_answer(pipeline, call, delivered, model)
        stored_answer = _translated_answer(pipeline, call, stored, model)
    except GatewayError as error:
        traced = pipeline.reject(trace, error)
        background = BackgroundTask(pipeline.submit, trace) if traced else None
        return error_response(error, "anthropic", background=background)
    pipeline.finish(
        trace,
        usage=result.usage,
        response=stored_answer,
        deployment=call.deployment,
    )
    after = BackgroundTask(pipeline.after_answer, call, stored, result.usage)
    return json_response(answer, background=after, headers=call.headers)


def _translated_answer(
    pipeline: Pipeline, call: Call, body: dict[str, Any], model: str
) -> dict[str, Any]:
    """Translate an answer to Anthropic's shape, as a gateway error if it fails."""
    try:
        return chat_response_to_messages(body, model)
    except ProviderError as error:
        raise pipeline.translate(error, call.deployment) from None


def _from_cache(pipeline: Pipeline, call: Call, hit: CacheHit, model: str) -> Response:
    if call.trace.stream:
        return replay_response(pipeline, call, _AnthropicEncoder(model), hit)
    answer = chat_response_to_messages(hit.response.body, model)
    stored = call.stored_answer or hit.response.body
    pipeline.finish(call.trace, response=chat_response_to_messages(stored, model))
    return json_response(answer, background=BackgroundTask(pipeline.submit, call.trace))


class _AnthropicEncoder:
    """Chunks as Anthropic stream events."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.translator = ChatToMessagesStream(model)

    def chunk(self, chunk: ChatChunk) -> list[bytes]:
        return [sse(data, event) for event, data in self.translator.feed(chunk.data)]

    def end(self, usage: Usage | None) -> list[bytes]:
        return [sse(data, event) for event, data in self.translator.finish(usage)]

    def error(self, failure: GatewayError) -> bytes:
        return sse(failure.anthropic_body(), "error")

    def response(self, assembler: StreamAssembler) -> dict[str, Any]:
        return chat_response_to_messages(assembler.completion(), self.model)
