"""Anthropic's wire format through keelway, both ways.

The official ``anthropic`` SDK calls keelway's ``/v1/messages`` in front of
an OpenAI upstream, and the official ``openai`` SDK calls keelway in front
of an Anthropic upstream.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import anthropic
import openai
import orjson
import pytest

from tests.conftest import NO_RETRIES, openai_models
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import ANSWER, API_KEY, FakeOpenAI
from tests.servers import KeelwayServer
from tests.traces import wait_for_trace

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
OPENAI_WEATHER = {
    "type": "function",
    "function": {
        "name": WEATHER["name"],
        "description": WEATHER["description"],
        "parameters": WEATHER["input_schema"],
    },
}


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(
        api_key="sk-ant-fake-key", model="claude-sonnet-4-5-20250929"
    ) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    fake_openai: FakeOpenAI,
    fake_anthropic: FakeAnthropic,
) -> Iterator[KeelwayServer]:
    models = openai_models(fake_openai.base_url, ["gpt-4o"])
    models["claude-sonnet"] = {
        "deployments": [
            {
                "provider": "anthropic",
                "model": "claude-sonnet-4-5",
                "base_url": fake_anthropic.base_url,
                "api_key": "${FAKE_ANTHROPIC_KEY}",
            }
        ]
    }
    instance = KeelwayServer(
        tmp_path_factory.mktemp("anthropic"),
        database_url,
        models,
        settings={"routing": NO_RETRIES},
        env={"FAKE_OPENAI_KEY": API_KEY, "FAKE_ANTHROPIC_KEY": "sk-ant-fake-key"},
    )
    instance.start()
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def claude(server: KeelwayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=server.key, max_retries=0)


@pytest.fixture(scope="module")
def gpt(server: KeelwayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)


def rid() -> str:
    return f"anthropic-{uuid.uuid4().hex}"


def test_messages_sdk_over_openai_upstream(
    claude: anthropic.Anthropic, server: KeelwayServer, fake_openai: FakeOpenAI
) -> None:
    request_id = rid()
    message = claude.messages.create(
        model="gpt-4o",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Request-Id": request_id},
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == ANSWER
    assert message.stop_reason == "end_turn"
    # OpenAI's 1000 prompt tokens include 400 cached; Anthropic counts them apart.
    assert message.usage.input_tokens == 600
    assert message.usage.cache_read_input_tokens == 400
    assert message.usage.output_tokens == 200
    sent = fake_openai.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    trace = wait_for_trace(server, request_id)
    assert trace["route"] == "messages"
    assert trace["cost_usd"] == pytest.approx(0.004)


def test_messages_sdk_streams(
    claude: anthropic.Anthropic, server: KeelwayServer
) -> None:
    request_id = rid()
    with claude.messages.stream(
        model="gpt-4o",
        max_tokens=100,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Request-Id": request_id},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER
    assert final.usage.output_tokens == 200
    assert final.stop_reason == "end_turn"
    trace = wait_for_trace(server, request_id)
    assert trace["stream"] is True
    assert trace["ttft_ms"] is not None
    assert trace["output_tokens"] == 200


def test_messages_sdk_tool_use(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="gpt-4o",
        max_tokens=100,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    )
    block = message.content[-1]
    assert message.stop_reason == "tool_use"
    assert block.type == "tool_use"
    assert block.name == "get_weather"
    assert block.input == {"city": "Paris"}


def test_messages_sdk_streams_tool_use(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="gpt-4o",
        max_tokens=100,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    block = final.content[-1]
    assert block.type == "tool_use"
    assert block.input == {"city": "Paris"}


def test_messages_errors_use_anthropic_shape(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        claude.messages.create(
            model="no-such-model",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
        )
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "not_found_error"


def test_openai_sdk_over_anthropic_upstream(
    gpt: openai.OpenAI, server: KeelwayServer, fake_anthropic: FakeAnthropic
) -> None:
    request_id = rid()
    response = gpt.chat.completions.create(
        model="claude-sonnet",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
        max_tokens=50,
        extra_headers={"X-Request-Id": request_id},
    )
    assert response.choices[0].message.content == fake_anthropic.text
    assert response.usage is not None
    assert response.usage.prompt_tokens == 2600
    assert response.usage.prompt_tokens_details.cached_tokens == 2000
    sent = fake_anthropic.requests[-1]
    assert sent.body["system"] == "Be brief."
    assert sent.body["model"] == "claude-sonnet-4-5"
    assert sent.headers["x-api-key"] == "sk-ant-fake-key"

    trace = wait_for_trace(server, request_id)
    # claude-sonnet-4-5: 100 input at $3/M, 2000 cache reads at $0.30/M, 500
    # cache writes at $3.75/M and 300 output at $15/M:
    # 0.0003 + 0.0006 + 0.001875 + 0.0045 = $0.007275.
    assert trace["input_tokens"] == 100
    assert trace["cache_read_tokens"] == 2000
    assert trace["cache_write_tokens"] == 500
    assert trace["output_tokens"] == 300
    assert trace["cost_usd"] == pytest.approx(0.007275)


def test_openai_sdk_streams_from_anthropic(
    gpt: openai.OpenAI, server: KeelwayServer
) -> None:
    request_id = rid()
    stream = gpt.chat.completions.create(
        model="claude-sonnet",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Request-Id": request_id},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 2600
    trace = wait_for_trace(server, request_id)
    assert trace["cost_usd"] == pytest.approx(0.007275)
    assert trace["usage_source"] == "provider"


def test_openai_sdk_tool_call_via_anthropic(
    gpt: openai.OpenAI, fake_anthropic: FakeAnthropic
) -> None:
    response = gpt.chat.completions.create(
        model="claude-sonnet",
        messages=[{"role": "user", "content": "Please use the tool for Paris."}],
        tools=[OPENAI_WEATHER],
        max_tokens=50,
    )
    call = response.choices[0].message.tool_calls[0]
    assert response.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}
    assert (
        fake_anthropic.requests[-1].body["tools"][0]["input_schema"]
        == WEATHER["input_schema"]
    )


def test_anthropic_rate_limit_passes_through(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as raised:
        gpt.chat.completions.create(
            model="claude-sonnet",
            messages=[{"role": "user", "content": "hi [fail:rate_limit]"}],
            max_tokens=10,
        )
    assert raised.value.response.headers["retry-after"] == "7"


def test_anthropic_overload_is_502(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        gpt.chat.completions.create(
            model="claude-sonnet",
            messages=[{"role": "user", "content": "hi [fail:overloaded]"}],
            max_tokens=10,
        )
    assert raised.value.status_code == 502


def test_aborted_anthropic_stream_keeps_input_counts(server: KeelwayServer) -> None:
    import httpx

    request_id = rid()
    body = {
        "model": "claude-sonnet",
        "messages": [{"role": "user", "content": "hi [fail:stall]"}],
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {server.key}", "X-Request-Id": request_id}
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST", server.url + "/v1/chat/completions", json=body, headers=headers
        ) as response,
    ):
        for line in response.iter_lines():
            if '"content"' in line:
                break
    trace = wait_for_trace(server, request_id)
    assert trace["http_status"] == 499
    # message_start reported the exact input and cache counts before the cut.
    assert trace["input_tokens"] == 100
    assert trace["cache_read_tokens"] == 2000
    assert trace["cache_write_tokens"] == 500
    assert trace["usage_source"] == "estimated"
