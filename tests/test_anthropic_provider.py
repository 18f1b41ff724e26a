"""Tests of AnthropicProvider against FakeAnthropic over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import anthropic
import pytest

from keelway.config import DeploymentConfig, Timeouts
from keelway.providers.anthropic import AnthropicChatStream, AnthropicProvider
from keelway.providers.base import ChatChunk
from keelway.providers.errors import (
    UnsupportedRequest,
    UpstreamInvalidResponse,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from keelway.tracing.usage import Usage
from tests.fakes.anthropic_upstream import FakeAnthropic

API_KEY = "sk-ant-test-secret-0123456789"
FULL_USAGE = Usage(
    input_tokens=100, cache_read_tokens=2000, cache_write_tokens=500, output_tokens=300
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}

Result = TypeVar("Result")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeAnthropic) -> FakeAnthropic:
    server.reset()
    return server


def deployment(base_url: str, **fields: Any) -> DeploymentConfig:
    settings: dict[str, Any] = {
        "provider": "anthropic",
        "model": "claude-fake-1",
        "base_url": base_url,
        "api_key": API_KEY,
        "timeout": Timeouts(connect=1.0, total=3.0),
    }
    settings.update(fields)
    return DeploymentConfig(**settings)


def chat_body(text: str = "Hello?", **fields: Any) -> dict[str, Any]:
    return {
        "model": "claude-public",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": text},
        ],
        **fields,
    }


def run(
    config: DeploymentConfig,
    work: Callable[[AnthropicProvider], Awaitable[Result]],
) -> Result:
    """Start a provider, run ``work`` with it on a fresh event loop, and close it."""

    async def main() -> Result:
        provider = AnthropicProvider(config)
        await provider.start()
        try:
            return await work(provider)
        finally:
            await provider.close()

    return asyncio.run(main())


async def collect(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    return [chunk async for chunk in stream]


def stream_all(fake: FakeAnthropic, body: dict[str, Any]) -> list[ChatChunk]:
    return run(deployment(fake.base_url), lambda p: collect(p.chat_stream(body)))


def stream_error(
    fake: FakeAnthropic, body: dict[str, Any]
) -> tuple[BaseException, AnthropicChatStream]:
    """Stream until the provider raises, returning the error and the stream."""

    async def work(provider: AnthropicProvider) -> tuple[BaseException, Any]:
        stream = provider.chat_stream(body)
        try:
            await collect(stream)
        except Exception as error:
            return error, stream
        raise AssertionError("the stream ended without an error")

    return run(deployment(fake.base_url), work)


def chat_error(config: DeploymentConfig, body: dict[str, Any]) -> BaseException:
    async def work(provider: AnthropicProvider) -> BaseException:
        try:
            await provider.chat(body)
        except Exception as error:
            return error
        raise AssertionError("chat returned without an error")

    return run(config, work)


def streamed_text(chunks: list[ChatChunk]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for chunk in chunks
        for choice in chunk.data["choices"]
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# Non-streamed calls


def test_chat_returns_translated_completion(fake: FakeAnthropic) -> None:
    result = run(deployment(fake.base_url), lambda p: p.chat(chat_body()))
    choice = result.body["choices"][0]
    assert result.body["object"] == "chat.completion"
    assert choice["message"]["content"] == fake.text
    assert choice["finish_reason"] == "stop"
    assert result.body["model"] == "claude-fake-1-20250101"
    assert result.body["id"].startswith("chatcmpl-fake")


def test_chat_usage_counts_cache_tokens(fake: FakeAnthropic) -> None:
    result = run(deployment(fake.base_url), lambda p: p.chat(chat_body()))
    assert result.usage == FULL_USAGE
    assert result.body["usage"]["prompt_tokens"] == 2600
    assert result.body["usage"]["prompt_tokens_details"]["cached_tokens"] == 2000
    assert result.body["usage"]["completion_tokens"] == 300


def test_request_headers_reach_upstream(fake: FakeAnthropic) -> None:
    config = deployment(fake.base_url, headers={"Anthropic-Beta": "tools-2099"})
    run(config, lambda p: p.chat(chat_body()))
    headers = fake.requests[-1].headers
    assert headers["x-api-key"] == API_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "tools-2099"
    assert headers["content-type"] == "application/json"


def test_api_version_setting_is_sent(fake: FakeAnthropic) -> None:
    config = deployment(fake.base_url, api_version="2099-01-01")
    run(config, lambda p: p.chat(chat_body()))
    assert fake.requests[-1].headers["anthropic-version"] == "2099-01-01"


def test_request_body_is_translated(fake: FakeAnthropic) -> None:
    run(deployment(fake.base_url), lambda p: p.chat(chat_body(stream=True, seed=1)))
    body = fake.requests[-1].body
    assert fake.requests[-1].path == "/v1/messages"
    assert body["model"] == "claude-fake-1"
    assert body["max_tokens"] == 4096
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "Hello?"}]
    assert "stream" not in body
    assert "seed" not in body


def test_default_max_tokens_option_applies(fake: FakeAnthropic) -> None:
    config = deployment(fake.base_url, options={"default_max_tokens": 64})
    run(config, lambda p: p.chat(chat_body()))
    assert fake.requests[-1].body["max_tokens"] == 64


def test_invalid_max_tokens_option_raises(fake: FakeAnthropic) -> None:
    with pytest.raises(ValueError, match="default_max_tokens"):
        AnthropicProvider(deployment(fake.base_url, options={"default_max_tokens": 0}))


def test_stop_sequence_maps_to_stop(fake: FakeAnthropic) -> None:
    body = chat_body(stop=["fake"])
    result = run(deployment(fake.base_url), lambda p: p.chat(body))
    assert result.body["choices"][0]["message"]["content"] == "Hello from the "
    assert result.body["choices"][0]["finish_reason"] == "stop"
    assert fake.requests[-1].body["stop_sequences"] == ["fake"]


def test_chat_returns_tool_call(fake: FakeAnthropic) -> None:
    body = chat_body("Please use the tool.", tools=[WEATHER_TOOL])
    result = run(deployment(fake.base_url), lambda p: p.chat(body))
    choice = result.body["choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert call["id"].startswith("toolu_fake_")
    assert call["function"]["name"] == "weather"
    assert json.loads(call["function"]["arguments"]) == fake.tool_input
    assert fake.requests[-1].body["tools"][0]["input_schema"]["type"] == "object"


def test_tool_result_turn_is_accepted(fake: FakeAnthropic) -> None:
    call = {
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    body = chat_body(tools=[WEATHER_TOOL])
    body["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
        {"role": "user", "content": "Is that warm?"},
    ]
    result = run(deployment(fake.base_url), lambda p: p.chat(body))
    sent = fake.requests[-1].body["messages"]
    assert result.body["choices"][0]["finish_reason"] == "stop"
    assert [message["role"] for message in sent] == ["user", "assistant", "user"]
    assert sent[2]["content"][0]["type"] == "tool_result"
    assert sent[2]["content"][1] == {"type": "text", "text": "Is that warm?"}


def test_unsupported_request_sends_nothing(fake: FakeAnthropic) -> None:
    error = chat_error(deployment(fake.base_url), chat_body(n=2))
    assert isinstance(error, UnsupportedRequest)
    assert error.param == "n"
    assert fake.requests == []


# Streamed calls


def test_stream_yields_text_chunks(fake: FakeAnthropic) -> None:
    chunks = stream_all(fake, chat_body())
    first = chunks[0].data["choices"][0]["delta"]
    assert first["role"] == "assistant"
    assert streamed_text(chunks) == fake.text
    assert fake.requests[-1].body["stream"] is True
    finishes = [c.data["choices"][0]["finish_reason"] for c in chunks[:-1]]
    assert finishes[-1] == "stop"
    assert all(chunk.data["object"] == "chat.completion.chunk" for chunk in chunks)


def test_stream_usage_from_start_and_delta(fake: FakeAnthropic) -> None:
    chunks = stream_all(fake, chat_body())
    last = chunks[-1]
    assert last.usage == FULL_USAGE
    assert last.data["choices"] == []
    assert last.data["usage"]["prompt_tokens"] == 2600
    assert last.data["usage"]["completion_tokens"] == 300
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_usage_chunk_forwarded_when_requested(fake: FakeAnthropic) -> None:
    asked = stream_all(fake, chat_body(stream_options={"include_usage": True}))
    unasked = stream_all(fake, chat_body())
    assert asked[-1].forward is True
    assert unasked[-1].forward is False
    assert all(chunk.forward for chunk in unasked[:-1])


def test_stream_model_is_upstream_model(fake: FakeAnthropic) -> None:
    chunks = stream_all(fake, chat_body())
    assert {chunk.data["model"] for chunk in chunks} == {"claude-fake-1-20250101"}


def test_stream_assembles_tool_call(fake: FakeAnthropic) -> None:
    chunks = stream_all(fake, chat_body("use the tool", tools=[WEATHER_TOOL]))
    calls = [
        call
        for chunk in chunks
        for choice in chunk.data["choices"]
        for call in choice["delta"].get("tool_calls") or []
    ]
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert {call["index"] for call in calls} == {0}
    assert calls[0]["id"].startswith("toolu_fake_")
    assert calls[0]["function"]["name"] == "weather"
    assert json.loads(arguments) == fake.tool_input
    assert chunks[-2].data["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_tolerates_crlf_lines(fake: FakeAnthropic) -> None:
    fake.line_ending = "\r\n"
    chunks = stream_all(fake, chat_body())
    assert streamed_text(chunks) == fake.text
    assert chunks[-1].usage == FULL_USAGE


def test_cut_stream_keeps_usage_so_far(fake: FakeAnthropic) -> None:
    error, stream = stream_error(fake, chat_body("[fail:cut]"))
    assert isinstance(error, UpstreamInvalidResponse)
    assert stream.usage == Usage(
        input_tokens=100,
        cache_read_tokens=2000,
        cache_write_tokens=500,
        output_tokens=1,
    )
    assert stream.finish_reason is None


def test_early_close_keeps_usage(fake: FakeAnthropic) -> None:
    async def work(provider: AnthropicProvider) -> AnthropicChatStream:
        stream = provider.chat_stream(chat_body())
        await stream.__anext__()
        await stream.__anext__()
        await stream.aclose()
        return stream

    stream = run(deployment(fake.base_url), work)
    assert stream.usage is not None
    assert stream.usage.input_tokens == 100
    assert stream.usage.cache_read_tokens == 2000


def test_cancelled_stream_keeps_usage(fake: FakeAnthropic) -> None:
    fake.failure = "stall"

    async def work(provider: AnthropicProvider) -> tuple[int, AnthropicChatStream]:
        stream = provider.chat_stream(chat_body())
        seen: list[ChatChunk] = []

        async def consume() -> None:
            async for chunk in stream:
                seen.append(chunk)

        task = asyncio.ensure_future(consume())
        for _ in range(100):
            if len(seen) >= 2:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return len(seen), stream

    seen, stream = run(deployment(fake.base_url), work)
    assert seen == 2
    assert stream.usage is not None
    assert stream.usage.input_tokens == 100
    assert stream.usage.output_tokens == 1


def test_error_event_raises_status_error(fake: FakeAnthropic) -> None:
    error, stream = stream_error(fake, chat_body("[fail:error_event]"))
    assert isinstance(error, UpstreamStatusError)
    assert error.status == 529
    assert error.message == "Overloaded"
    assert stream.usage is not None


def test_garbage_stream_is_invalid(fake: FakeAnthropic) -> None:
    error, _ = stream_error(fake, chat_body("[fail:garbage]"))
    assert isinstance(error, UpstreamInvalidResponse)


def test_stream_status_error_raised(fake: FakeAnthropic) -> None:
    error, stream = stream_error(fake, chat_body("[fail:overloaded]"))
    assert isinstance(error, UpstreamStatusError)
    assert error.status == 529
    assert stream.usage is None


# Failure modes


def test_wrong_key_is_authentication_error(fake: FakeAnthropic) -> None:
    config = deployment(fake.base_url, api_key="sk-ant-wrong-key")
    error = chat_error(config, chat_body())
    assert isinstance(error, UpstreamStatusError)
    assert error.status == 401
    assert error.error_type == "authentication_error"
    assert error.message == "invalid x-api-key"
    assert "sk-ant-wrong-key" not in str(error)


def test_rate_limit_reads_retry_after(fake: FakeAnthropic) -> None:
    error = chat_error(deployment(fake.base_url), chat_body("[fail:rate_limit]"))
    assert isinstance(error, UpstreamStatusError)
    assert error.status == 429
    assert error.retry_after == 7.0
    assert error.error_type == "rate_limit_error"
    assert "rate limit" in error.message


def test_overloaded_maps_to_status_error(fake: FakeAnthropic) -> None:
    fake.failure = "overloaded"
    error = chat_error(deployment(fake.base_url), chat_body())
    assert isinstance(error, UpstreamStatusError)
    assert error.status == 529
    assert error.error_type == "server_error"
    assert error.code == "overloaded"


def test_server_error_maps_to_status(fake: FakeAnthropic) -> None:
    error = chat_error(deployment(fake.base_url), chat_body("[fail:server_error]"))
    assert isinstance(error, UpstreamStatusError)
    assert error.status == 500
    assert error.retry_after is None


def test_garbage_body_is_invalid(fake: FakeAnthropic) -> None:
    error = chat_error(deployment(fake.base_url), chat_body("[fail:garbage]"))
    assert isinstance(error, UpstreamInvalidResponse)
    assert error.__cause__ is not None


def test_cut_body_is_invalid(fake: FakeAnthropic) -> None:
    error = chat_error(deployment(fake.base_url), chat_body("[fail:cut]"))
    assert isinstance(error, UpstreamInvalidResponse)
    assert isinstance(error.__cause__, aiohttp.ClientPayloadError)


def test_slow_upstream_times_out(fake: FakeAnthropic) -> None:
    config = deployment(fake.base_url, timeout=Timeouts(connect=1.0, total=0.3))
    error = chat_error(config, chat_body("[fail:slow]"))
    assert isinstance(error, UpstreamTimeout)
    assert isinstance(error.__cause__, TimeoutError)
    assert "0.3 s" in str(error)


def test_closed_port_is_unreachable() -> None:
    config = deployment(f"http://127.0.0.1:{free_port()}")
    error = chat_error(config, chat_body())
    assert isinstance(error, UpstreamUnreachable)
    assert isinstance(error.__cause__, aiohttp.ClientConnectionError)
    assert API_KEY not in str(error)


def test_unstarted_provider_is_unreachable(fake: FakeAnthropic) -> None:
    provider = AnthropicProvider(deployment(fake.base_url))
    with pytest.raises(UpstreamUnreachable):
        asyncio.run(provider.chat(chat_body()))


# Readiness


def test_check_ready_only_after_start(fake: FakeAnthropic) -> None:
    async def work() -> tuple[bool, bool, bool]:
        provider = AnthropicProvider(deployment(fake.base_url))
        before = (await provider.check()).ready
        await provider.start()
        during = (await provider.check()).ready
        await provider.close()
        after = (await provider.check()).ready
        return before, during, after

    before, during, after = asyncio.run(work())
    assert before is False
    assert during is True
    assert after is False
    assert fake.requests == []


# The fake itself


def test_fake_speaks_official_sdk_format(fake: FakeAnthropic) -> None:
    client = anthropic.Anthropic(base_url=fake.base_url, api_key=API_KEY, max_retries=0)
    messages: Any = [{"role": "user", "content": "use the tool"}]
    tools: Any = [{"name": "weather", "input_schema": {"type": "object"}}]
    message = client.messages.create(
        model="claude-fake-1", max_tokens=50, messages=messages, tools=tools
    )
    with client.messages.stream(
        model="claude-fake-1", max_tokens=50, messages=messages, tools=tools
    ) as stream:
        streamed = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    assert streamed.stop_reason == "tool_use"
    assert streamed.content[1].type == "tool_use"
    assert streamed.usage.cache_read_input_tokens == 2000
    assert streamed.usage.output_tokens == 300
