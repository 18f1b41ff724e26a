"""Translation between the OpenAI chat-completions and Anthropic Messages formats.

Everything here works on plain JSON dicts and does no I/O.
``chat_request_to_messages`` and ``messages_response_to_chat`` put an Anthropic
deployment behind keelway's OpenAI API. ``messages_request_to_chat`` and
``chat_response_to_messages`` serve keelway's own ``POST /v1/messages`` route in
front of any deployment. The two stream classes do the same for streamed events.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, TypeGuard

from keelway.providers.errors import (
    UnsupportedRequest,
    UpstreamInvalidResponse,
    UpstreamStatusError,
)
from keelway.tracing.usage import Usage

__all__ = [
    "ChatToMessagesStream",
    "MessagesToChatStream",
    "chat_request_to_messages",
    "chat_response_to_messages",
    "error_from_anthropic",
    "messages_request_to_chat",
    "messages_response_to_chat",
]

JSONObject = dict[str, Any]

DEFAULT_MAX_TOKENS = 4096

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Anthropic error type: (the HTTP status Anthropic sends with it, OpenAI error
# type, OpenAI error code). The statuses match the exception classes of the
# anthropic SDK 2.16 (anthropic/_exceptions.py).
_ERROR_TYPES: dict[str, tuple[int, str, str | None]] = {
    "invalid_request_error": (400, "invalid_request_error", None),
    "authentication_error": (401, "authentication_error", "invalid_api_key"),
    "billing_error": (402, "insufficient_quota", "insufficient_quota"),
    "permission_error": (403, "permission_error", None),
    "not_found_error": (404, "not_found_error", None),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit_error": (429, "rate_limit_error", "rate_limit_exceeded"),
    "api_error": (500, "server_error", None),
    "timeout_error": (504, "server_error", "timeout"),
    "overloaded_error": (529, "server_error", "overloaded"),
}

_DATA_URL = re.compile(
    r"data:(?P<media_type>[^;,]+)(?P<params>(?:;[^;,]*)*),(?P<data>.*)", re.DOTALL
)

# Shared helpers


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _chat_id(message_id: object) -> str:
    if isinstance(message_id, str) and message_id:
        return "chatcmpl-" + message_id.removeprefix("msg_")
    return "chatcmpl-" + uuid.uuid4().hex


def _message_id(chat_id: object) -> str:
    if isinstance(chat_id, str) and chat_id:
        return "msg_" + chat_id.removeprefix("chatcmpl-")
    return "msg_" + uuid.uuid4().hex


def _usage_from_anthropic(usage: Mapping[str, Any]) -> Usage:
    """Read an Anthropic usage object, including its thinking-token breakdown."""
    result = Usage.from_anthropic(usage)
    details = usage.get("output_tokens_details")
    if isinstance(details, Mapping):
        thinking = details.get("thinking_tokens")
        if _is_int(thinking) and thinking > 0:
            result = replace(
                result, reasoning_tokens=min(thinking, result.output_tokens)
            )
    return result


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def error_from_anthropic(
    status: int | None, body: object, *, retry_after: float | None = None
) -> UpstreamStatusError:
    """Build the error for an Anthropic error body, with OpenAI error types.

    ``body`` is the parsed ``{"type": "error", "error": {...}}`` object or the
    raw text of a body that did not parse. With no ``status``, as for an
    ``error`` event inside a stream, the status follows the error type.
    """
    anthropic_type: str | None = None
    message: str | None = None
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            if isinstance(error.get("type"), str):
                anthropic_type = error["type"]
            if isinstance(error.get("message"), str):
                message = error["message"]
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:500]

    known = _ERROR_TYPES.get(anthropic_type or "")
    if status is None:
        status = known[0] if known else 500
    if known:
        error_type: str | None = known[1]
        code = known[2]
    else:
        error_type = "server_error" if status >= 500 else "invalid_request_error"
        code = anthropic_type
    if not message:
        message = f"Anthropic returned HTTP {status} with no error message"
    return UpstreamStatusError(
        status, message, error_type=error_type, code=code, retry_after=retry_after
    )


# OpenAI request to Anthropic request


def _unsupported(message: str, param: str) -> UnsupportedRequest:
    return UnsupportedRequest(message, param=param)


def _text_blocks(content: object, param: str) -> list[JSONObject]:
    """Convert content that may only contain text into Anthropic text blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _unsupported(f"{param} must be a string or a list of parts", param)
    blocks: list[JSONObject] = []
    for index, part in enumerate(content):
        part_param = f"{param}[{index}]"
        block = _text_block(part, part_param)
        if block is not None:
            blocks.append(block)
    return blocks


def _text_block(part: object, param: str) -> JSONObject | None:
    """Convert a text or refusal part into a text block, or None when it is empty."""
    kind = part.get("type") if isinstance(part, Mapping) else None
    if kind not in ("text", "refusal"):
        raise _unsupported(f"{param} must be a text part", param)
    assert isinstance(part, Mapping)
    text = part.get("text") if kind == "text" else part.get("refusal")
    if not isinstance(text, str):
        raise _unsupported(f"{param} has no text string", param)
    if not text:
        return None
    return _with_cache_control({"type": "text", "text": text}, part)


def _with_cache_control(block: JSONObject, part: Mapping[str, Any]) -> JSONObject:
    # OpenAI has no cache_control. Clients that target Anthropic through an
    # OpenAI-format gateway put it on parts and tools, so it is kept.
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _image_block(image_url: object, param: str) -> JSONObject:
    url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    if not isinstance(url, str) or not url:
        raise _unsupported(f"{param}.image_url.url is missing", f"{param}.image_url")
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if not match or ";base64" not in match["params"]:
            raise _unsupported(
                f"{param}.image_url.url must be a base64 data: URL or an http(s) URL",
                f"{param}.image_url",
            )
        source: JSONObject = {
            "type": "base64",
            "media_type": match["media_type"],
            "data": match["data"],
        }
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise _unsupported(
            f"{param}.image_url.url must be a base64 data: URL or an http(s) URL",
            f"{param}.image_url",
        )
    return {"type": "image", "source": source}


def _user_blocks(content: object, param: str) -> list[JSONObject]:
    if content is None or isinstance(content, str):
        return _text_blocks(content, param)
    if not isinstance(content, list):
        raise _unsupported(f"{param} must be a string or a list of parts", param)
    blocks: list[JSONObject] = []
    for index, part in enumerate(content):
        part_param = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            block = _text_block(part, part_param)
            if block is not None:
                blocks.append(block)
        elif kind == "image_url":
            assert isinstance(part, Mapping)
            image = _image_block(part.get("image_url"), part_param)
            blocks.append(_with_cache_control(image, part))
        else:
            raise _unsupported(
                f"{part_param} has type {kind!r}, but Anthropic deployments accept"
                " only text and image_url parts",
                f"{part_param}.type",
            )
    return blocks


def _tool_input(arguments: object, param: str) -> JSONObject:
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    if not isinstance(arguments, str):
        raise _unsupported(f"{param} must be a JSON string", param)
    try:
        parsed = json.loads(arguments)
    except ValueError as error:
        raise _unsupported(f"{param} is not valid JSON: {error}", param) from error
    if not isinstance(parsed, dict):
        raise _unsupported(f"{param} must be a JSON object", param)
    return parsed


def _assistant_blocks(message: Mapping[str, Any], param: str) -> list[JSONObject]:
    blocks = _text_blocks(message.get("content"), f"{param}.content")
    tool_calls = message.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise _unsupported(f"{param}.tool_calls must be a list", f"{param}.tool_calls")
    for index, call in enumerate(tool_calls):
        call_param = f"{param}.tool_calls[{index}]"
        if not isinstance(call, Mapping) or call.get("type", "function") != "function":
            raise _unsupported(f"{call_param} must be a function call", call_param)
        function = call.get("function")
        if not isinstance(function, Mapping):
            raise _unsupported(f"{call_param}.function is missing", call_param)
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": _tool_input(
                    function.get("arguments"), f"{call_param}.function.arguments"
                ),
            }
        )
    return blocks


def _tool_result_block(message: Mapping[str, Any], param: str) -> JSONObject:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise _unsupported(f"{param}.tool_call_id is missing", f"{param}.tool_call_id")
    content = message.get("content")
    result: str | list[JSONObject]
    if isinstance(content, str):
        result = content
    else:
        result = _text_blocks(content, f"{param}.content")
    return {"type": "tool_result", "tool_use_id": tool_call_id, "content": result}


def _append_turn(turns: list[JSONObject], role: str, blocks: list[JSONObject]) -> None:
    # Anthropic turns alternate between user and assistant, and tool results
    # belong to a user turn, so consecutive messages of one role join one turn.
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": list(blocks)})


def _finish_turn(turn: JSONObject) -> JSONObject:
    blocks: list[JSONObject] = turn["content"]
    if turn["role"] == "user":
        # Anthropic rejects a user turn whose tool_result blocks follow other blocks.
        results = [block for block in blocks if block["type"] == "tool_result"]
        others = [block for block in blocks if block["type"] != "tool_result"]
        blocks = results + others
    if (
        len(blocks) == 1
        and blocks[0]["type"] == "text"
        and "cache_control" not in blocks[0]
    ):
        return {"role": turn["role"], "content": blocks[0]["text"]}
    return {"role": turn["role"], "content": blocks}


def _system(parts: list[JSONObject]) -> str | list[JSONObject] | None:
    if not parts:
        return None
    if any("cache_control" in part for part in parts):
        return parts
    return "\n\n".join(part["text"] for part in parts)


def _tools(tools: object) -> list[JSONObject]:
    if not isinstance(tools, list):
        raise _unsupported("tools must be a list", "tools")
    converted: list[JSONObject] = []
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or tool.get("type") != "function":
            raise _unsupported(
                f"{param} must be a function tool, the only kind Anthropic"
                " deployments accept",
                f"{param}.type",
            )
        entry: JSONObject = {"name": function.get("name")}
        if function.get("description"):
            entry["description"] = function["description"]
        parameters = function.get("parameters")
        entry["input_schema"] = (
            parameters
            if isinstance(parameters, Mapping)
            else {"type": "object", "properties": {}}
        )
        converted.append(_with_cache_control(entry, tool))
    return converted


def _tool_choice(choice: object, parallel_tool_calls: object) -> JSONObject | None:
    result: JSONObject | None
    if choice is None:
        result = None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "none":
        result = {"type": "none"}
    elif choice == "required":
        result = {"type": "any"}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str):
            raise _unsupported("tool_choice.function.name is missing", "tool_choice")
        result = {"type": "tool", "name": name}
    else:
        raise _unsupported(
            f"tool_choice {choice!r} is not supported; use auto, none, required"
            ' or {"type": "function", ...}',
            "tool_choice",
        )
    if parallel_tool_calls is False:
        if result is None:
            result = {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    return result


def _output_config(response_format: object) -> JSONObject | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_schema":
        # Anthropic's structured outputs (``output_config.format`` in the
        # anthropic SDK 2.16 types) constrain the output to a JSON schema, as
        # OpenAI's strict json_schema does. Models without structured outputs
        # reject the request upstream, which keelway passes on.
        assert isinstance(response_format, Mapping)
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise _unsupported(
                "response_format.json_schema.schema is missing",
                "response_format",
            )
        return {"format": {"type": "json_schema", "schema": dict(schema)}}
    if kind == "json_object":
        # Anthropic has no mode that forces some JSON object without a schema.
        raise _unsupported(
            "response_format json_object is not supported by Anthropic deployments;"
            " send a json_schema response_format instead",
            "response_format",
        )
    raise _unsupported(
        f"response_format type {kind!r} is not supported", "response_format"
    )


def chat_request_to_messages(
    body: Mapping[str, Any], default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> JSONObject:
    """Translate an OpenAI chat request into an Anthropic Messages request."""
    n = body.get("n")
    if n is not None and n != 1:
        raise _unsupported(
            f"n={n!r} is not supported by Anthropic deployments; omit n or send 1",
            "n",
        )

    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _unsupported("messages must be a list", "messages")
    system_parts: list[JSONObject] = []
    turns: list[JSONObject] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        role = message.get("role") if isinstance(message, Mapping) else None
        if role in ("system", "developer"):
            system_parts.extend(
                _text_blocks(message.get("content"), f"{param}.content")
            )
        elif role == "user":
            content = _user_blocks(message.get("content"), f"{param}.content")
            _append_turn(turns, "user", content)
        elif role == "assistant":
            _append_turn(turns, "assistant", _assistant_blocks(message, param))
        elif role == "tool":
            _append_turn(turns, "user", [_tool_result_block(message, param)])
        else:
            raise _unsupported(
                f"{param}.role {role!r} is not supported; use system, developer,"
                " user, assistant or tool",
                f"{param}.role",
            )

    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    request: JSONObject = {}
    # Fields not read here (seed, penalties, logprobs, logit_bias, store,
    # stream_options and the like) have no Anthropic counterpart and are dropped.
    if body.get("model") is not None:
        request["model"] = body["model"]
    request["max_tokens"] = default_max_tokens if max_tokens is None else max_tokens
    system = _system(system_parts)
    if system is not None:
        request["system"] = system
    request["messages"] = [_finish_turn(turn) for turn in turns]

    stop = body.get("stop")
    if isinstance(stop, str):
        request["stop_sequences"] = [stop]
    elif isinstance(stop, list):
        request["stop_sequences"] = list(stop)
    elif stop is not None:
        raise _unsupported("stop must be a string or a list of strings", "stop")
    # OpenAI allows temperature up to 2 and Anthropic up to 1. Values above 1
    # pass through, so Anthropic rejects them instead of keelway changing them.
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            request[name] = body[name]
    if isinstance(body.get("user"), str):
        request["metadata"] = {"user_id": body["user"]}
    if body.get("tools"):
        request["tools"] = _tools(body["tools"])
    tool_choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if tool_choice is not None:
        request["tool_choice"] = tool_choice
    output_config = _output_config(body.get("response_format"))
    if output_config is not None:
        request["output_config"] = output_config
    if body.get("stream") is True:
        request["stream"] = True
    return request


# Anthropic response to OpenAI response


def _finish_reason(stop_reason: object) -> str | None:
    if stop_reason is None:
        return None
    return _FINISH_REASONS.get(str(stop_reason), "stop")


def messages_response_to_chat(
    resp: Mapping[str, Any], model: str, *, created: int | None = None
) -> tuple[JSONObject, Usage]:
    """Translate an Anthropic message into an OpenAI ``chat.completion``."""
    content = resp.get("content") if isinstance(resp, Mapping) else None
    raw_usage = resp.get("usage") if isinstance(resp, Mapping) else None
    if not isinstance(content, list) or not isinstance(raw_usage, Mapping):
        raise UpstreamInvalidResponse(
            "Anthropic response is not a message with content and usage"
        )

    texts: list[str] = []
    thinking: list[str] = []
    tool_calls: list[JSONObject] = []
    for block in content:
        if not isinstance(block, Mapping):
            raise UpstreamInvalidResponse("Anthropic message has a non-object block")
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "thinking":
            thinking.append(str(block.get("thinking", "")))
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": _dumps(block.get("input", {})),
                    },
                }
            )
        # Other blocks (redacted_thinking, server tool calls and their results)
        # have no place in a chat.completion message and are left out.

    message: JSONObject = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    usage = _usage_from_anthropic(raw_usage)
    chat: JSONObject = {
        "id": _chat_id(resp.get("id")),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(resp.get("stop_reason")) or "stop",
            }
        ],
        "usage": usage.to_openai(),
    }
    return chat, usage


# Anthropic request to OpenAI request


def _anthropic_text(content: object, param: str, separator: str = "") -> str:
    """Join a string or a list of Anthropic text blocks into one string."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _unsupported(f"{param} must be a string or a list of text blocks", param)
    texts: list[str] = []
    for index, block in enumerate(content):
        block_param = f"{param}[{index}]"
        if not isinstance(block, Mapping) or block.get("type") != "text":
            kind = block.get("type") if isinstance(block, Mapping) else None
            raise _unsupported(
                f"{block_param} has type {kind!r}, but only text blocks are"
                " supported here",
                f"{block_param}.type",
            )
        texts.append(str(block.get("text", "")))
    return separator.join(texts)


def _image_part(block: Mapping[str, Any], param: str) -> JSONObject:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, Mapping) else None
    if kind == "base64":
        assert isinstance(source, Mapping)
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif kind == "url":
        assert isinstance(source, Mapping)
        url = str(source.get("url"))
    else:
        raise _unsupported(
            f"{param}.source has type {kind!r}; only base64 and url images are"
            " supported",
            f"{param}.source",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_message(block: Mapping[str, Any], param: str) -> JSONObject:
    content = block.get("content")
    text = "" if content is None else _anthropic_text(content, f"{param}.content")
    if block.get("is_error") is True:
        # OpenAI tool messages have no error flag, so the text carries it.
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}


def _user_messages(content: list[Any], param: str) -> list[JSONObject]:
    tool_messages: list[JSONObject] = []
    parts: list[JSONObject] = []
    for index, block in enumerate(content):
        block_param = f"{param}[{index}]"
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image_part(block, block_param))
        elif kind == "tool_result":
            tool_messages.append(_tool_message(block, block_param))
        else:
            raise _unsupported(
                f"{block_param} has type {kind!r}; user turns may contain text,"
                " image and tool_result blocks",
                f"{block_param}.type",
            )
    messages = tool_messages
    if len(parts) == 1 and parts[0]["type"] == "text":
        messages.append({"role": "user", "content": parts[0]["text"]})
    elif parts:
        messages.append({"role": "user", "content": parts})
    return messages


def _assistant_message(content: list[Any], param: str) -> JSONObject:
    texts: list[str] = []
    tool_calls: list[JSONObject] = []
    for index, block in enumerate(content):
        block_param = f"{param}[{index}]"
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": _dumps(block.get("input", {})),
                    },
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            # NOTE: OpenAI chat requests have no field for earlier thinking, so
            # it is dropped together with its signature.
            continue
        else:
            raise _unsupported(
                f"{block_param} has type {kind!r}; assistant turns may contain"
                " text, tool_use and thinking blocks",
                f"{block_param}.type",
            )
    message: JSONObject = {"role": "assistant"}
    message["content"] = "".join(texts) if texts or not tool_calls else None
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _chat_tools(tools: object) -> list[JSONObject]:
    if not isinstance(tools, list):
        raise _unsupported("tools must be a list", "tools")
    converted: list[JSONObject] = []
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        kind = tool.get("type") if isinstance(tool, Mapping) else "invalid"
        if kind not in (None, "custom"):
            raise _unsupported(
                f"{param} has type {kind!r}; only custom tools with an"
                " input_schema can be forwarded",
                f"{param}.type",
            )
        assert isinstance(tool, Mapping)
        function: JSONObject = {"name": tool.get("name")}
        if tool.get("description"):
            function["description"] = tool["description"]
        function["parameters"] = tool.get("input_schema") or {
            "type": "object",
            "properties": {},
        }
        converted.append({"type": "function", "function": function})
    return converted


def _chat_tool_choice(choice: object) -> tuple[object, bool | None]:
    """Return the OpenAI tool_choice and parallel_tool_calls for a tool_choice."""
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind == "auto":
        result: object = "auto"
    elif kind == "any":
        result = "required"
    elif kind == "none":
        result = "none"
    elif kind == "tool":
        assert isinstance(choice, Mapping)
        result = {"type": "function", "function": {"name": choice.get("name")}}
    else:
        raise _unsupported(
            f"tool_choice {choice!r} is not supported; use auto, any, tool or none",
            "tool_choice",
        )
    assert isinstance(choice, Mapping)
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    return result, parallel


def messages_request_to_chat(body: Mapping[str, Any]) -> JSONObject:
    """Translate an Anthropic Messages request into an OpenAI chat request."""
    # NOTE: cache_control marks are dropped, because OpenAI-compatible upstreams
    # may reject unknown keys. An Anthropic deployment behind this route
    # therefore gets no prompt-caching breakpoints.
    messages: list[JSONObject] = []
    system = body.get("system")
    if system is not None:
        text = _anthropic_text(system, "system", separator="\n\n")
        if text:
            messages.append({"role": "system", "content": text})

    turns = body.get("messages")
    if not isinstance(turns, list):
        raise _unsupported("messages must be a list", "messages")
    for index, turn in enumerate(turns):
        param = f"messages[{index}]"
        role = turn.get("role") if isinstance(turn, Mapping) else None
        if role not in ("user", "assistant"):
            raise _unsupported(
                f"{param}.role {role!r} is invalid; use user or assistant",
                f"{param}.role",
            )
        content = turn.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
        elif not isinstance(content, list):
            raise _unsupported(
                f"{param}.content must be a string or a list of blocks",
                f"{param}.content",
            )
        elif role == "user":
            messages.extend(_user_messages(content, f"{param}.content"))
        else:
            messages.append(_assistant_message(content, f"{param}.content"))

    request: JSONObject = {}
    if body.get("model") is not None:
        request["model"] = body["model"]
    request["messages"] = messages
    # max_completion_tokens is OpenAI's current name, and the only one that
    # OpenAI's reasoning models accept.
    if body.get("max_tokens") is not None:
        request["max_completion_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        request["stop"] = list(body["stop_sequences"])
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            request[name] = body[name]
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping) and isinstance(metadata.get("user_id"), str):
        request["user"] = metadata["user_id"]
    if body.get("tools"):
        request["tools"] = _chat_tools(body["tools"])
    if body.get("tool_choice") is not None:
        choice, parallel = _chat_tool_choice(body["tool_choice"])
        request["tool_choice"] = choice
        if parallel is not None:
            request["parallel_tool_calls"] = parallel
    output_config = body.get("output_config")
    output_format = (
        output_config.get("format") if isinstance(output_config, Mapping) else None
    )
    if (
        isinstance(output_format, Mapping)
        and output_format.get("type") == "json_schema"
    ):
        request["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": "response",
                "schema": output_format.get("schema"),
                "strict": True,
            },
        }
    if body.get("stream") is True:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request


# OpenAI response to Anthropic response


def _stop_reason(finish_reason: object) -> str:
    return _STOP_REASONS.get(str(finish_reason), "end_turn")


def _parse_arguments(arguments: object) -> JSONObject:
    try:
        return _tool_input(arguments, "tool_calls.function.arguments")
    except UnsupportedRequest as error:
        raise UpstreamInvalidResponse(
            f"upstream returned tool call arguments that are not a JSON object: {error}"
        ) from error


def chat_response_to_messages(resp: Mapping[str, Any], model: str) -> JSONObject:
    """Translate an OpenAI ``chat.completion`` into an Anthropic message."""
    choices = resp.get("choices") if isinstance(resp, Mapping) else None
    if not isinstance(choices, list) or not choices:
        raise UpstreamInvalidResponse("upstream response has no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, Mapping) else None
    if not isinstance(message, Mapping):
        raise UpstreamInvalidResponse("upstream response choice has no message")

    content: list[JSONObject] = []
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(
            str(part.get("text", ""))
            for part in text
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    refusal = message.get("refusal")
    if not text and isinstance(refusal, str) and refusal:
        text = refusal
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            raise UpstreamInvalidResponse("upstream tool call has no function")
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": _parse_arguments(function.get("arguments")),
            }
        )

    raw_usage = resp.get("usage")
    usage = Usage.from_openai(raw_usage if isinstance(raw_usage, Mapping) else {})
    return {
        "id": _message_id(resp.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": usage.to_anthropic(),
    }


# Streams


class MessagesToChatStream:
    """Converter of Anthropic stream events into OpenAI ``chat.completion.chunk``s."""

    def __init__(self, model: str, *, created: int | None = None) -> None:
        self._model = model
        self._created = int(time.time()) if created is None else created
        self._id = _chat_id(None)
        self._raw_usage: JSONObject | None = None
        self._tool_indexes: dict[int, int] = {}
        self._finish_reason: str | None = None
        self._done = False

    @property
    def model(self) -> str:
        """Model name, as Anthropic reports it once message_start has arrived."""
        return self._model

    @property
    def usage(self) -> Usage | None:
        """Usage seen so far, or None before message_start."""
        if self._raw_usage is None:
            return None
        return _usage_from_anthropic(self._raw_usage)

    @property
    def finish_reason(self) -> str | None:
        """OpenAI finish reason from message_delta, or None before it."""
        return self._finish_reason

    @property
    def done(self) -> bool:
        """Whether message_stop has arrived."""
        return self._done

    def _chunk(self, delta: JSONObject, finish_reason: str | None = None) -> JSONObject:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
        }

    def feed(self, event: str, data: Mapping[str, Any]) -> list[JSONObject]:
        """Translate one event into zero or more chunks.

        Raises UpstreamStatusError for an ``error`` event and
        UpstreamInvalidResponse for an event of the wrong shape.
        """
        kind = event or str(data.get("type", ""))
        if kind == "message_start":
            return self._message_start(data)
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            self._done = True
        elif kind == "error":
            raise error_from_anthropic(None, data)
        # ping, content_block_stop and event types added later need no chunk.
        return []

    def _message_start(self, data: Mapping[str, Any]) -> list[JSONObject]:
        message = data.get("message")
        if not isinstance(message, Mapping):
            raise UpstreamInvalidResponse("Anthropic message_start has no message")
        self._id = _chat_id(message.get("id"))
        if isinstance(message.get("model"), str) and message["model"]:
            self._model = message["model"]
        usage = message.get("usage")
        self._raw_usage = dict(usage) if isinstance(usage, Mapping) else {}
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, data: Mapping[str, Any]) -> list[JSONObject]:
        block = data.get("content_block")
        index = data.get("index")
        if not isinstance(block, Mapping) or not _is_int(index):
            raise UpstreamInvalidResponse("Anthropic content_block_start is malformed")
        kind = block.get("type")
        if kind == "tool_use":
            tool_index = len(self._tool_indexes)
            self._tool_indexes[index] = tool_index
            call = {
                "index": tool_index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if kind == "thinking" and block.get("thinking"):
            return [self._chunk({"reasoning_content": block["thinking"]})]
        return []

    def _block_delta(self, data: Mapping[str, Any]) -> list[JSONObject]:
        delta = data.get("delta")
        if not isinstance(delta, Mapping):
            raise UpstreamInvalidResponse("Anthropic content_block_delta has no delta")
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        if kind == "input_json_delta" and delta.get("partial_json"):
            block_index = data.get("index")
            tool_index = (
                self._tool_indexes.get(block_index) if _is_int(block_index) else None
            )
            if tool_index is None:
                raise UpstreamInvalidResponse(
                    "Anthropic sent input_json_delta for a block that is not tool_use"
                )
            call = {
                "index": tool_index,
                "function": {"arguments": delta["partial_json"]},
            }
            return [self._chunk({"tool_calls": [call]})]
        # signature_delta and citations_delta have no chat.completion field.
        return []

    def _message_delta(self, data: Mapping[str, Any]) -> list[JSONObject]:
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            if self._raw_usage is None:
                self._raw_usage = {}
            # message_delta counts are cumulative, so they replace earlier ones.
            for key, value in usage.items():
                if value is not None:
                    self._raw_usage[key] = value
        delta = data.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, Mapping) else None
        if stop_reason is None:
            return []
        self._finish_reason = _finish_reason(stop_reason)
        return [self._chunk({}, self._finish_reason)]

    def usage_chunk(self) -> JSONObject:
        """Build the final OpenAI chunk that carries usage and no choices."""
        usage = self.usage
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [],
            "usage": usage.to_openai() if usage is not None else None,
        }


class ChatToMessagesStream:
    """Converter of OpenAI ``chat.completion.chunk``s into Anthropic stream events."""

    def __init__(self, model: str, *, message_id: str | None = None) -> None:
        self._model = model
        self._message_id = message_id
        self._started = False
        self._next_index = 0
        # The open content block: its index and kind ("text" or "tool_use").
        self._open_index: int | None = None
        self._open_kind: str | None = None
        self._open_tool: int | None = None
        self._tool_calls_seen: set[int] = set()
        self._stop_reason: str | None = None
        self._usage: Usage | None = None

    @property
    def usage(self) -> Usage | None:
        """Usage from the last chunk that carried it, or None."""
        return self._usage

    def _start(self, chunk: Mapping[str, Any]) -> list[tuple[str, JSONObject]]:
        self._started = True
        if self._message_id is None:
            self._message_id = _message_id(chunk.get("id"))
        usage = self._usage.to_anthropic() if self._usage else Usage().to_anthropic()
        message: JSONObject = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _close_block(self) -> list[tuple[str, JSONObject]]:
        if self._open_index is None:
            return []
        index = self._open_index
        self._open_index = self._open_kind = self._open_tool = None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _open_block(self, kind: str, block: JSONObject) -> list[tuple[str, JSONObject]]:
        events = self._close_block()
        self._open_index = self._next_index
        self._open_kind = kind
        self._next_index += 1
        data = {
            "type": "content_block_start",
            "index": self._open_index,
            "content_block": block,
        }
        events.append(("content_block_start", data))
        return events

    def _delta(self, delta: JSONObject) -> tuple[str, JSONObject]:
        data = {
            "type": "content_block_delta",
            "index": self._open_index,
            "delta": delta,
        }
        return ("content_block_delta", data)

    def _text(self, text: str) -> list[tuple[str, JSONObject]]:
        events: list[tuple[str, JSONObject]] = []
        if self._open_kind != "text":
            events = self._open_block("text", {"type": "text", "text": ""})
        events.append(self._delta({"type": "text_delta", "text": text}))
        return events

    def _tool_call(self, call: Mapping[str, Any]) -> list[tuple[str, JSONObject]]:
        events: list[tuple[str, JSONObject]] = []
        tool_index = call.get("index", 0)
        if not _is_int(tool_index):
            raise UpstreamInvalidResponse("upstream tool call delta has no index")
        function = call.get("function")
        function = function if isinstance(function, Mapping) else {}
        if tool_index not in self._tool_calls_seen:
            block: JSONObject = {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + uuid.uuid4().hex,
                "name": function.get("name") or "",
                "input": {},
            }
            events = self._open_block("tool_use", block)
            self._open_tool = tool_index
            self._tool_calls_seen.add(tool_index)
        elif self._open_tool != tool_index:
            # NOTE: upstreams stream tool calls one after another. An Anthropic
            # block cannot reopen, so arguments for an earlier call are rejected.
            raise UpstreamInvalidResponse(
                f"upstream sent arguments for tool call {tool_index} after the"
                " next tool call had started"
            )
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            events.append(self._delta(delta))
        return events

    def feed(self, chunk: Mapping[str, Any]) -> list[tuple[str, JSONObject]]:
        """Translate one chunk into zero or more (event name, data) pairs."""
        raw_usage = chunk.get("usage")
        if isinstance(raw_usage, Mapping):
            self._usage = Usage.from_openai(raw_usage)
        events: list[tuple[str, JSONObject]] = []
        if not self._started:
            events.extend(self._start(chunk))
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                for name in ("content", "refusal"):
                    text = delta.get(name)
                    if isinstance(text, str) and text:
                        events.extend(self._text(text))
                for call in delta.get("tool_calls") or []:
                    if isinstance(call, Mapping):
                        events.extend(self._tool_call(call))
            if choice.get("finish_reason") is not None:
                self._stop_reason = _stop_reason(choice["finish_reason"])
        return events

    def finish(self, usage: Usage | None = None) -> list[tuple[str, JSONObject]]:
        """Close the message: the last content_block_stop, message_delta and stop.

        ``usage`` overrides the usage seen in chunks. A stream that ended with
        no finish_reason gets the stop reason ``end_turn``.
        """
        events: list[tuple[str, JSONObject]] = []
        if not self._started:
            events.extend(self._start({}))
        events.extend(self._close_block())
        final = usage if usage is not None else self._usage
        usage_data: JSONObject = {"output_tokens": final.output_tokens if final else 0}
        if final is not None:
            usage_data["input_tokens"] = final.input_tokens
            usage_data["cache_creation_input_tokens"] = final.cache_write_tokens
            usage_data["cache_read_input_tokens"] = final.cache_read_tokens
        delta = {"stop_reason": self._stop_reason or "end_turn", "stop_sequence": None}
        message_delta = {"type": "message_delta", "delta": delta, "usage": usage_data}
        events.append(("message_delta", message_delta))
        events.append(("message_stop", {"type": "message_stop"}))
        return events
