"""Validation of request bodies.

Only the fields keelway reads or that must be well-formed are declared; every
other field is allowed and passed through to OpenAI-compatible upstreams.
Validation is strict (no string-to-number coercion), as OpenAI's is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keelway.gateway.errors import InvalidField

JSONObject = dict[str, Any]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[JSONObject] | None = None
    name: str | None = None
    tool_calls: list[JSONObject] | None = None
    tool_call_id: str | None = None


class FunctionSpec(_Open):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: JSONObject | None = None


class ToolSpec(_Open):
    type: Literal["function"]
    function: FunctionSpec


class StreamOptions(_Open):
    include_usage: bool | None = None


class ChatCompletionRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=16)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: str | JSONObject | None = None
    response_format: JSONObject | None = None
    metadata: JSONObject | None = None


NonEmpty = Field(min_length=1)


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1)
    input: (
        Annotated[str, NonEmpty]
        | Annotated[list[str], NonEmpty]
        | Annotated[list[int], NonEmpty]
        | Annotated[list[list[int]], NonEmpty]
    )
    encoding_format: Literal["float", "base64"] | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, value: Any) -> Any:
        # One message for the whole union, rather than one per alternative.
        if value == "" or value == []:
            raise ValueError("input must not be empty")
        if not _is_embedding_input(value):
            raise ValueError(
                "expected a string, a list of strings, a list of token ids"
                " or a list of lists of token ids"
            )
        return value

    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    metadata: JSONObject | None = None


class ContentBlock(_Open):
    type: str = Field(min_length=1)


class AnthropicMessage(_Open):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]

    @field_validator("content", mode="before")
    @classmethod
    def _check_content(cls, value: Any) -> Any:
        if isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(b, dict) for b in value)
        ):
            return value
        raise ValueError("expected a string or a list of content block objects")


class AnthropicToolChoice(_Open):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class MessagesRequest(_Open):
    """An Anthropic Messages API request."""

    model: str = Field(min_length=1)
    messages: list[AnthropicMessage] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    system: str | list[JSONObject] | None = None
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    tools: list[JSONObject] | None = None
    tool_choice: AnthropicToolChoice | None = None
    metadata: JSONObject | None = None


def _is_embedding_input(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if not isinstance(value, list) or not value:
        return False
    if all(isinstance(item, str) for item in value):
        return True
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return True
    return all(
        isinstance(item, list)
        and item
        and all(isinstance(n, int) and not isinstance(n, bool) for n in item)
        for item in value
    )


def _location(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in (
            "str",
            "list[dict[str,any]]",
            "list[ContentBlock]",
            "function-after",
        ) or str(part).startswith(("constrained-", "list[")):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


def validate(schema: type[BaseModel], body: JSONObject) -> None:
    """Check ``body`` against ``schema``, raising InvalidField naming the field."""
    try:
        schema.model_validate(body)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False)
        # Within a union the deepest error is the most specific one.
        first = max(errors, key=lambda e: len(e["loc"]))
        param = _location(first["loc"])
        reason = first["msg"].removeprefix("Value error, ")
        given = _given(body, first["loc"])
        message = f"invalid value for {param!r}: {reason}" if param else reason
        if first["type"] == "missing":
            message = f"missing required field {param!r}"
        elif given is not None:
            message += f" (got {given})"
        count = error.error_count()
        if count > 1:
            message += f"; {count - 1} more error(s)"
        raise InvalidField(message, param=param or None) from None


def _given(body: Any, location: tuple[int | str, ...]) -> str | None:
    value = body
    for part in location:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return (
        type(value).__name__
        if not isinstance(value, bool | int | float)
        else repr(value)
    )
