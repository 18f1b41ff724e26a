"""Tests of the OpenAI and Anthropic translations in anthropic_format.

The golden pairs live in tests/fixtures/anthropic. Outputs are also checked
against the official SDKs' response models, so a shape the SDKs reject fails.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import anthropic.types
import openai.types.chat
import pytest
from pydantic import TypeAdapter

from keelway.providers.anthropic_format import (
    ChatToMessagesStream,
    MessagesToChatStream,
    chat_request_to_messages,
    chat_response_to_messages,
    error_from_anthropic,
    messages_request_to_chat,
    messages_response_to_chat,
)
from keelway.providers.errors import (
    UnsupportedRequest,
    UpstreamInvalidResponse,
    UpstreamStatusError,
)
from keelway.tracing.usage import Usage

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"

STREAM_EVENT = TypeAdapter(anthropic.types.RawMessageStreamEvent)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def user_request(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


def anthropic_message(**fields: Any) -> dict[str, Any]:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    message.update(fields)
    return message


# OpenAI request to Anthropic request


def test_chat_request_matches_golden() -> None:
    pair = fixture("chat_request.json")
    assert chat_request_to_messages(pair["openai"]) == pair["anthropic"]


def test_chat_request_leaves_input_unchanged() -> None:
    pair = fixture("chat_request.json")
    original = copy.deepcopy(pair["openai"])
    chat_request_to_messages(pair["openai"])
    assert pair["openai"] == original


def test_max_tokens_default_applies() -> None:
    assert chat_request_to_messages(user_request())["max_tokens"] == 4096
    custom = chat_request_to_messages(user_request(), default_max_tokens=100)
    assert custom["max_tokens"] == 100


def test_max_tokens_falls_back() -> None:
    request = chat_request_to_messages(user_request(max_tokens=77))
    assert request["max_tokens"] == 77


def test_plain_user_text_stays_string() -> None:
    request = chat_request_to_messages(user_request())
    assert request["messages"] == [{"role": "user", "content": "hi"}]
    assert "system" not in request
    assert "stream" not in request


def test_consecutive_assistant_turns_merge() -> None:
    body = user_request()
    body["messages"] += [
        {"role": "assistant", "content": "one"},
        {"role": "assistant", "content": "two"},
    ]
    messages = chat_request_to_messages(body)["messages"]
    assert len(messages) == 2
    assert messages[1]["content"] == [
        {"type": "text", "text": "one"},
        {"type": "text", "text": "two"},
    ]


def test_tool_results_move_first() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "w"}}
                ],
            },
            {"role": "user", "content": "here it is"},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ]
    }
    turn = chat_request_to_messages(body)["messages"][2]
    assert turn["content"][0]["type"] == "tool_result"
    assert turn["content"][1] == {"type": "text", "text": "here it is"}


def test_empty_tool_arguments_give_empty_input() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "w", "arguments": ""}}
    body = user_request()
    body["messages"].append({"role": "assistant", "tool_calls": [call]})
    block = chat_request_to_messages(body)["messages"][1]["content"][0]
    assert block == {"type": "tool_use", "id": "c1", "name": "w", "input": {}}


def test_invalid_tool_arguments_raise() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{"}}
    body = user_request()
    body["messages"].append({"role": "assistant", "tool_calls": [call]})
    with pytest.raises(UnsupportedRequest) as caught:
        chat_request_to_messages(body)
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


def test_non_object_tool_arguments_raise() -> None:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "w", "arguments": "[]"},
    }
    body = user_request()
    body["messages"].append({"role": "assistant", "tool_calls": [call]})
    with pytest.raises(UnsupportedRequest) as caught:
        chat_request_to_messages(body)
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


def test_n_above_one_raises() -> None:
    with pytest.raises(UnsupportedRequest) as caught:
        chat_request_to_messages(user_request(n=2))
    assert caught.value.param == "n"


def test_n_of_one_accepted() -> None:
    assert "n" not in chat_request_to_messages(user_request(n=1))


def test_json_object_format_raises() -> None:
    with pytest.raises(UnsupportedRequest) as caught:
        chat_request_to_messages(user_request(response_format={"type": "json_object"}))
    assert caught.value.param == "response_format"


def test_json_schema_maps_to_output_config() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }
    request = chat_request_to_messages(user_request(response_format=response_format))
    assert request["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}
    }


def test_text_format_is_ignored() -> None:
    request = chat_request_to_messages(user_request(response_format={"type": "text"}))
    assert "output_config" not in request


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            {"type": "tool", "name": "weather"},
        ),
    ],
)
def test_tool_choice_maps_each_value(choice: object, expected: dict[str, Any]) -> None:
    assert chat_request_to_messages(user_request(tool_choice=choice))[
        "tool_choice"
    ] == (expected)


def test_parallel_false_disables_parallel_use() -> None:
    request = chat_request_to_messages(user_request(parallel_tool_calls=False))
    assert request["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_unknown_part_type_raises() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
    body = {"messages": [{"role": "user", "content": [audio]}]}
    with pytest.raises(UnsupportedRequest) as caught:
        chat_request_to_messages(body)
    assert caught.value.param == "messages[0].content[0].type"


def test_non_base64_data_url_raises() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}
    body = {"messages": [{"role": "user", "content": [image]}]}
    with pytest.raises(UnsupportedRequest) as caught:
        chat_request_to_messages(body)
    assert caught.value.param == "messages[0].content[0].image_url"


def test_cache_control_passes_through() -> None:
    marker = {"type": "ephemeral"}
    body = {
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": "rules", "cache_control": marker}],
            },
            {"role": "user", "content": "hi"},
        ]
    }
    request = chat_request_to_messages(body)
    assert request["system"] == [
        {"type": "text", "text": "rules", "cache_control": marker}
    ]


# Anthropic response to OpenAI response


def test_messages_response_matches_golden() -> None:
    pair = fixture("messages_response.json")
    chat, _ = messages_response_to_chat(
        pair["anthropic"], pair["anthropic"]["model"], created=1700000000
    )
    assert chat == pair["openai"]


def test_messages_response_fits_openai_sdk() -> None:
    pair = fixture("messages_response.json")
    chat, _ = messages_response_to_chat(pair["anthropic"], "claude-x")
    completion = openai.types.chat.ChatCompletion.model_validate(chat)
    assert completion.choices[0].message.tool_calls is not None


def test_cache_tokens_add_to_prompt() -> None:
    pair = fixture("messages_response.json")
    chat, usage = messages_response_to_chat(pair["anthropic"], "claude-x")
    assert usage == Usage(
        input_tokens=100,
        cache_read_tokens=2000,
        cache_write_tokens=500,
        output_tokens=300,
    )
    assert chat["usage"]["prompt_tokens"] == 2600
    assert chat["usage"]["prompt_tokens_details"]["cached_tokens"] == 2000
    assert chat["usage"]["completion_tokens"] == 300
    assert chat["usage"]["total_tokens"] == 2900


def test_thinking_tokens_become_reasoning() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 50,
        "output_tokens_details": {"thinking_tokens": 20},
    }
    _, result = messages_response_to_chat(anthropic_message(usage=usage), "claude-x")
    assert result.reasoning_tokens == 20


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reason_maps_to_finish(stop_reason: str, finish_reason: str) -> None:
    message = anthropic_message(stop_reason=stop_reason)
    chat, _ = messages_response_to_chat(message, "claude-x")
    assert chat["choices"][0]["finish_reason"] == finish_reason


def test_tool_only_message_has_null_content() -> None:
    block = {"type": "tool_use", "id": "t1", "name": "w", "input": {}}
    chat, _ = messages_response_to_chat(anthropic_message(content=[block]), "c")
    message = chat["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"]["arguments"] == "{}"


def test_message_without_usage_is_invalid() -> None:
    message = anthropic_message()
    del message["usage"]
    with pytest.raises(UpstreamInvalidResponse):
        messages_response_to_chat(message, "claude-x")


def test_message_without_content_is_invalid() -> None:
    with pytest.raises(UpstreamInvalidResponse):
        messages_response_to_chat({"type": "message"}, "claude-x")


# Anthropic request to OpenAI request


def test_messages_request_matches_golden() -> None:
    pair = fixture("messages_request.json")
    assert messages_request_to_chat(pair["anthropic"]) == pair["openai"]


def test_string_system_becomes_message() -> None:
    body = {"model": "m", "max_tokens": 5, "system": "be brief", "messages": []}
    request = messages_request_to_chat(body)
    assert request["messages"] == [{"role": "system", "content": "be brief"}]
    assert "stream_options" not in request


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "weather"},
            {"type": "function", "function": {"name": "weather"}},
        ),
    ],
)
def test_anthropic_tool_choice_maps(choice: dict[str, Any], expected: object) -> None:
    body = {"max_tokens": 5, "messages": [], "tool_choice": choice}
    request = messages_request_to_chat(body)
    assert request["tool_choice"] == expected
    assert "parallel_tool_calls" not in request


def test_server_tools_raise() -> None:
    tool = {"type": "web_search_20250305", "name": "web_search"}
    with pytest.raises(UnsupportedRequest) as caught:
        messages_request_to_chat({"max_tokens": 5, "messages": [], "tools": [tool]})
    assert caught.value.param == "tools[0].type"


def test_document_block_raises() -> None:
    document = {"type": "document", "source": {"type": "text", "data": "x"}}
    body = {"max_tokens": 5, "messages": [{"role": "user", "content": [document]}]}
    with pytest.raises(UnsupportedRequest) as caught:
        messages_request_to_chat(body)
    assert caught.value.param == "messages[0].content[0].type"


def test_output_format_becomes_response_format() -> None:
    schema = {"type": "object"}
    body = {
        "max_tokens": 5,
        "messages": [],
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }
    response_format = messages_request_to_chat(body)["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"] == schema


def test_request_round_trip_is_stable() -> None:
    original = fixture("messages_request.json")["anthropic"]
    original["messages"] = original["messages"][:3]
    original["system"] = "one system prompt"
    back = chat_request_to_messages(messages_request_to_chat(original))
    assert back["messages"][0] == original["messages"][0]
    assert back["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "18 C, sunny",
    }
    assert back["tools"][0] == original["tools"][0]
    assert back["tool_choice"] == original["tool_choice"]
    assert back["top_k"] == 40
    assert back["max_tokens"] == 512
    assert back["system"] == "one system prompt"


# OpenAI response to Anthropic response


def test_chat_response_matches_golden() -> None:
    pair = fixture("chat_response.json")
    assert (
        chat_response_to_messages(pair["openai"], "claude-public")
        == (pair["anthropic"])
    )


def test_chat_response_fits_anthropic_sdk() -> None:
    pair = fixture("chat_response.json")
    message = chat_response_to_messages(pair["openai"], "claude-public")
    parsed = anthropic.types.Message.model_validate(message)
    assert parsed.stop_reason == "tool_use"


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_finish_reason_maps_to_stop(
    finish_reason: str | None, stop_reason: str
) -> None:
    response = {
        "id": "chatcmpl-1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "x"},
                "finish_reason": finish_reason,
            }
        ],
    }
    assert chat_response_to_messages(response, "m")["stop_reason"] == stop_reason


def test_broken_upstream_arguments_are_invalid() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "w", "arguments": "{"}}
    response = {
        "choices": [{"message": {"role": "assistant", "tool_calls": [call]}}],
    }
    with pytest.raises(UpstreamInvalidResponse):
        chat_response_to_messages(response, "m")


def test_response_without_choices_is_invalid() -> None:
    with pytest.raises(UpstreamInvalidResponse):
        chat_response_to_messages({"choices": []}, "m")


# Anthropic stream to OpenAI chunks


def feed_all(
    stream: MessagesToChatStream, events: list[list[Any]]
) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    for name, data in events:
        chunks.extend(stream.feed(name, data))
    return chunks


def test_stream_chunks_match_golden() -> None:
    golden = fixture("stream_events.json")
    stream = MessagesToChatStream("fallback-model", created=1700000000)
    chunks = feed_all(stream, golden["events"])
    deltas = [
        [chunk["choices"][0]["delta"], chunk["choices"][0]["finish_reason"]]
        for chunk in chunks
    ]
    assert deltas == golden["deltas"]
    assert {chunk["id"] for chunk in chunks} == {"chatcmpl-01Str"}
    assert {chunk["model"] for chunk in chunks} == {"claude-sonnet-4-5-20250929"}
    assert stream.done


def test_stream_chunks_fit_openai_sdk() -> None:
    stream = MessagesToChatStream("m")
    chunks = feed_all(stream, fixture("stream_events.json")["events"])
    chunks.append(stream.usage_chunk())
    for chunk in chunks:
        openai.types.chat.ChatCompletionChunk.model_validate(chunk)


def test_stream_usage_combines_start_and_delta() -> None:
    stream = MessagesToChatStream("m")
    for name, data in fixture("stream_events.json")["events"]:
        stream.feed(name, data)
    usage_chunk = stream.usage_chunk()
    assert stream.usage == Usage(
        input_tokens=100,
        cache_read_tokens=2000,
        cache_write_tokens=500,
        output_tokens=300,
    )
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == 2600
    assert usage_chunk["usage"]["completion_tokens"] == 300


def test_stream_usage_ready_after_start() -> None:
    stream = MessagesToChatStream("m")
    assert stream.usage is None
    start = fixture("stream_events.json")["events"][0]
    stream.feed(*start)
    assert stream.usage is not None
    assert stream.usage.input_tokens == 100
    assert stream.usage.cache_read_tokens == 2000
    assert stream.usage.cache_write_tokens == 500
    assert stream.usage.output_tokens == 1


def test_ping_yields_no_chunks() -> None:
    assert MessagesToChatStream("m").feed("ping", {"type": "ping"}) == []


def test_error_event_raises_status_error() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Busy"}}
    with pytest.raises(UpstreamStatusError) as caught:
        MessagesToChatStream("m").feed("error", error)
    assert caught.value.message == "Busy"
    assert caught.value.status == 529
    assert caught.value.error_type == "server_error"


def test_json_delta_without_tool_is_invalid() -> None:
    delta = {"type": "input_json_delta", "partial_json": "{}"}
    data = {"type": "content_block_delta", "index": 3, "delta": delta}
    with pytest.raises(UpstreamInvalidResponse):
        MessagesToChatStream("m").feed("content_block_delta", data)


# OpenAI chunks to Anthropic stream


def chat_chunk(
    delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def tool_delta(index: int, arguments: str, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if name is not None:
        call["id"] = f"call_{index}"
        call["type"] = "function"
        call["function"]["name"] = name
    return {"tool_calls": [call]}


def run_chat_stream(
    chunks: list[dict[str, Any]], usage: Usage | None = None
) -> list[tuple[str, dict[str, Any]]]:
    stream = ChatToMessagesStream("claude-public")
    events: list[tuple[str, dict[str, Any]]] = []
    for chunk in chunks:
        events.extend(stream.feed(chunk))
    events.extend(stream.finish(usage))
    return events


TOOL_STREAM = [
    chat_chunk({"role": "assistant", "content": ""}),
    chat_chunk({"content": "Checking"}),
    chat_chunk({"content": "."}),
    chat_chunk(tool_delta(0, "", name="weather")),
    chat_chunk(tool_delta(0, '{"city":')),
    chat_chunk(tool_delta(0, '"Paris"}')),
    chat_chunk(tool_delta(1, '{"city":"Lyon"}', name="weather")),
    chat_chunk({}, "tool_calls"),
    {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {
            "prompt_tokens": 2600,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 2000},
        },
    },
]


def test_chat_stream_event_order() -> None:
    names = [name for name, _ in run_chat_stream(TOOL_STREAM)]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_chat_stream_tool_blocks() -> None:
    events = run_chat_stream(TOOL_STREAM)
    starts = [data for name, data in events if name == "content_block_start"]
    assert [start["index"] for start in starts] == [0, 1, 2]
    assert starts[1]["content_block"] == {
        "type": "tool_use",
        "id": "call_0",
        "name": "weather",
        "input": {},
    }
    json_pieces = [
        data["delta"]["partial_json"]
        for name, data in events
        if name == "content_block_delta" and data["index"] == 1
    ]
    assert "".join(json_pieces) == '{"city":"Paris"}'


def test_chat_stream_usage_in_message_delta() -> None:
    events = run_chat_stream(TOOL_STREAM)
    message_delta = dict(events)["message_delta"]
    assert message_delta["delta"]["stop_reason"] == "tool_use"
    assert message_delta["usage"] == {
        "output_tokens": 300,
        "input_tokens": 600,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2000,
    }


def test_chat_stream_start_has_zero_usage() -> None:
    message = dict(run_chat_stream(TOOL_STREAM))["message_start"]["message"]
    assert message["id"] == "msg_abc"
    assert message["usage"]["input_tokens"] == 0
    assert message["model"] == "claude-public"


def test_chat_stream_events_fit_anthropic_sdk() -> None:
    for _, data in run_chat_stream(TOOL_STREAM):
        STREAM_EVENT.validate_python(data)


def test_finish_usage_overrides_chunks() -> None:
    usage = Usage(input_tokens=5, output_tokens=9)
    events = run_chat_stream(TOOL_STREAM, usage)
    assert dict(events)["message_delta"]["usage"]["output_tokens"] == 9
    assert dict(events)["message_delta"]["usage"]["input_tokens"] == 5


def test_missing_finish_reason_ends_turn() -> None:
    events = run_chat_stream([chat_chunk({"content": "partial"})])
    message_delta = dict(events)["message_delta"]
    assert message_delta["delta"]["stop_reason"] == "end_turn"
    assert message_delta["usage"] == {"output_tokens": 0}
    assert events[-3][0] == "content_block_stop"
    assert events[-1] == ("message_stop", {"type": "message_stop"})


def test_empty_chat_stream_still_closes() -> None:
    names = [name for name, _ in run_chat_stream([])]
    assert names == ["message_start", "message_delta", "message_stop"]


def test_interleaved_tool_arguments_are_invalid() -> None:
    stream = ChatToMessagesStream("m")
    stream.feed(chat_chunk(tool_delta(0, "{", name="a")))
    stream.feed(chat_chunk(tool_delta(1, "{", name="b")))
    with pytest.raises(UpstreamInvalidResponse):
        stream.feed(chat_chunk(tool_delta(0, "}")))


# Errors


@pytest.mark.parametrize(
    ("status", "anthropic_type", "error_type"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "authentication_error"),
        (403, "permission_error", "permission_error"),
        (404, "not_found_error", "not_found_error"),
        (429, "rate_limit_error", "rate_limit_error"),
        (500, "api_error", "server_error"),
        (529, "overloaded_error", "server_error"),
    ],
)
def test_error_types_map_to_openai(
    status: int, anthropic_type: str, error_type: str
) -> None:
    body = {"type": "error", "error": {"type": anthropic_type, "message": "why"}}
    error = error_from_anthropic(status, body, retry_after=3.0)
    assert error.status == status
    assert error.error_type == error_type
    assert error.message == "why"
    assert error.retry_after == 3.0


def test_text_error_body_kept() -> None:
    error = error_from_anthropic(502, "Bad Gateway")
    assert error.status == 502
    assert error.message == "Bad Gateway"
    assert error.error_type == "server_error"
