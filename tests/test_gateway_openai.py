"""The official OpenAI SDK through keelway to a fake OpenAI upstream."""

from __future__ import annotations

import uuid

import httpx
import openai
import orjson
import pytest

from tests.fakes.openai_upstream import ANSWER, FakeOpenAI
from tests.servers import KeelwayServer
from tests.traces import wait_for_trace

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def client(gateway: KeelwayServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=gateway.key, max_retries=0
    )


def rid() -> str:
    return f"req-{uuid.uuid4().hex}"


def test_completion_returns_upstream_answer(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert response.choices[0].message.content == ANSWER
    assert response.usage is not None
    assert response.usage.prompt_tokens == 1000
    assert response.usage.prompt_tokens_details.cached_tokens == 400


def test_completion_trace_has_cost_by_hand(
    client: openai.OpenAI, gateway: KeelwayServer
) -> None:
    request_id = rid()
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Request-Id": request_id},
    )
    trace = wait_for_trace(gateway, request_id)
    # gpt-4o: 600 uncached input at $2.50/M, 400 cached at $1.25/M and 200
    # output at $10/M (its 50 reasoning tokens are inside the 200):
    # 0.0015 + 0.0005 + 0.002 = $0.004.
    assert trace["input_tokens"] == 600
    assert trace["cache_read_tokens"] == 400
    assert trace["output_tokens"] == 200
    assert trace["reasoning_tokens"] == 50
    assert trace["cost_usd"] == pytest.approx(0.004)
    assert trace["usage_source"] == "provider"
    assert trace["price_table_version"]
    assert trace["status"] == "ok"
    assert trace["latency_ms"] > 0
    assert [span["name"] for span in trace["spans"]] == ["auth", "provider"]


def test_reasoning_tokens_not_priced_twice(
    client: openai.OpenAI, gateway: KeelwayServer
) -> None:
    request_id = rid()
    client.chat.completions.create(
        model="o4-mini",
        messages=[{"role": "user", "content": "think"}],
        extra_headers={"X-Request-Id": request_id},
    )
    trace = wait_for_trace(gateway, request_id)
    # o4-mini: 300 input at $1.10/M plus 900 output at $4.40/M, where the 700
    # reasoning tokens are a part of the 900: 0.00033 + 0.00396 = $0.00429.
    assert trace["output_tokens"] == 900
    assert trace["reasoning_tokens"] == 700
    assert trace["cost_usd"] == pytest.approx(0.00429)


def test_stream_with_usage_chunk(client: openai.OpenAI, gateway: KeelwayServer) -> None:
    request_id = rid()
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Request-Id": request_id},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 200
    trace = wait_for_trace(gateway, request_id)
    assert trace["stream"] is True
    assert trace["ttft_ms"] is not None
    assert trace["ttft_ms"] <= trace["latency_ms"]
    assert trace["cost_usd"] == pytest.approx(0.004)
    assert trace["usage_source"] == "provider"


def test_stream_without_usage_hides_chunk(
    client: openai.OpenAI, gateway: KeelwayServer
) -> None:
    request_id = rid()
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_headers={"X-Request-Id": request_id},
    )
    chunks = list(stream)
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    trace = wait_for_trace(gateway, request_id)
    # keelway asked the upstream for usage on its own behalf.
    assert trace["input_tokens"] == 600
    assert trace["usage_source"] == "provider"


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )
    call = response.choices[0].message.tool_calls[0]
    assert response.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}


def test_streamed_tool_call_assembles(
    client: openai.OpenAI, gateway: KeelwayServer
) -> None:
    request_id = rid()
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        stream=True,
        extra_headers={"X-Request-Id": request_id},
    )
    arguments = ""
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                arguments += call.function.arguments or ""
    assert orjson.loads(arguments) == {"city": "Paris"}
    trace = wait_for_trace(gateway, request_id)
    stored = orjson.loads(trace["response_body"])
    call = stored["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"] == '{"city": "Paris"}'


def test_parameters_pass_through(
    client: openai.OpenAI, fake_openai: FakeOpenAI
) -> None:
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.3,
        seed=7,
        stop=["END"],
        max_completion_tokens=64,
        n=2,
        user="user-42",
        response_format={"type": "json_object"},
        metadata={"use_case": "search"},
        extra_body={"logit_bias": {"50256": -100}, "vendor_option": {"x": 1}},
    )
    sent = fake_openai.requests[-1]
    assert sent["model"] == "gpt-4o"
    assert sent["temperature"] == 0.3
    assert sent["seed"] == 7
    assert sent["stop"] == ["END"]
    assert sent["max_completion_tokens"] == 64
    assert sent["n"] == 2
    assert sent["user"] == "user-42"
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["logit_bias"] == {"50256": -100}
    assert sent["vendor_option"] == {"x": 1}
    assert "metadata" not in sent


def test_upstream_receives_deployment_key(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert fake_openai.headers[-1]["Authorization"].startswith(
        "Bearer sk-fake-upstream"
    )


def test_attribution_fields_on_trace(
    client: openai.OpenAI, gateway: KeelwayServer
) -> None:
    request_id = rid()
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        user="alice",
        metadata={"use_case": "support", "segment": "enterprise", "ticket": "T-1"},
        extra_headers={"X-Request-Id": request_id, "X-Keelway-Tags": "beta, eu"},
    )
    trace = wait_for_trace(gateway, request_id)
    assert trace["user"] == "alice"
    assert trace["use_case"] == "support"
    assert trace["segment"] == "enterprise"
    assert trace["tags"] == ["beta", "eu"]
    assert trace["attributes"]["metadata"] == {"ticket": "T-1"}
    assert trace["key_name"].startswith("test-")
    assert trace["team"] == "tests"


def test_unpriced_model_has_null_cost(
    client: openai.OpenAI, gateway: KeelwayServer
) -> None:
    request_id = rid()
    client.chat.completions.create(
        model="unpriced-model",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Request-Id": request_id},
    )
    trace = wait_for_trace(gateway, request_id)
    assert trace["input_tokens"] == 12
    assert trace["cost_usd"] is None
    metrics = httpx.get(gateway.url + "/metrics").text
    assert (
        'keelway_unpriced_requests_total{deployment="unpriced-model/0",model="unpriced-model"}'
        in metrics
    )


def test_usage_missing_is_estimated(
    client: openai.OpenAI, gateway: KeelwayServer
) -> None:
    request_id = rid()
    stream = client.chat.completions.create(
        model="no-usage",
        messages=[{"role": "user", "content": "x" * 400}],
        stream=True,
        extra_headers={"X-Request-Id": request_id},
    )
    list(stream)
    trace = wait_for_trace(gateway, request_id)
    assert trace["usage_source"] == "estimated"
    assert trace["usage_tokenizer"] == "heuristic:4-chars-per-token"
    # 400 characters are 100 tokens plus 4 for the message's framing.
    assert trace["input_tokens"] == 104


def test_aborted_stream_still_traced(gateway: KeelwayServer) -> None:
    request_id = rid()
    body = {
        "model": "long-answer",
        "messages": [{"role": "user", "content": "talk"}],
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {gateway.key}", "X-Request-Id": request_id}
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST", gateway.url + "/v1/chat/completions", json=body, headers=headers
        ) as response,
    ):
        received = 0
        for line in response.iter_lines():
            if line.startswith("data: "):
                received += 1
            if received >= 20:
                break
    trace = wait_for_trace(gateway, request_id)
    assert trace["http_status"] == 499
    assert trace["attributes"]["client_closed"] is True
    assert trace["usage_source"] == "estimated"
    assert 15 <= trace["output_tokens"] < 400
    assert trace["cost_usd"] is None or trace["cost_usd"] >= 0


def test_models_lists_configured_names(client: openai.OpenAI) -> None:
    names = {model.id for model in client.models.list()}
    assert {"gpt-4o", "o4-mini", "slow"} <= names


def test_key_limited_to_models(gateway: KeelwayServer) -> None:
    _, secret = gateway.keys.create(
        f"limited-{uuid.uuid4().hex[:6]}", models=["o4-mini"]
    )
    limited = openai.OpenAI(base_url=gateway.url + "/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as raised:
        limited.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.status_code == 403
    assert {m.id for m in limited.models.list()} == {"o4-mini"}
