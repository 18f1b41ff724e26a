"""The provider adapter for Anthropic's Messages API.

It sends keelway's OpenAI-format chat requests to ``POST {base_url}/v1/messages``
over one aiohttp session per deployment, translates both ways with
:mod:`keelway.providers.anthropic_format` and raises the errors of
:mod:`keelway.providers.errors` for transport and HTTP failures.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from keelway.config import DeploymentConfig
from keelway.providers.anthropic_format import (
    DEFAULT_MAX_TOKENS,
    MessagesToChatStream,
    chat_request_to_messages,
    error_from_anthropic,
    messages_response_to_chat,
)
from keelway.providers.base import ChatChunk, ChatResult, JSONObject, ProviderStatus
from keelway.providers.errors import (
    ProviderError,
    UpstreamInvalidResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from keelway.tracing.usage import Usage

__all__ = ["AnthropicChatStream", "AnthropicProvider"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_API_VERSION = "2023-06-01"

# A stream line longer than this is treated as an invalid response, so that a
# broken upstream cannot make keelway buffer without bound.
MAX_EVENT_BYTES = 16 * 1024 * 1024


class _EventParser:
    """Incremental parser of a ``text/event-stream`` body into (event, data) pairs."""

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        """Parse the complete lines in ``data`` and return the finished events."""
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > MAX_EVENT_BYTES:
            raise UpstreamInvalidResponse(
                f"Anthropic sent a stream line over {MAX_EVENT_BYTES} bytes"
            )
        events: list[tuple[str, str]] = []
        for line in lines:
            self._line(line, events)
        return events

    def close(self) -> list[tuple[str, str]]:
        """Parse what is left at the end of the body, ended or not by a blank line."""
        events: list[tuple[str, str]] = []
        if self._buffer:
            self._line(self._buffer, events)
            self._buffer = b""
        self._line(b"", events)
        return events

    def _line(self, raw: bytes, events: list[tuple[str, str]]) -> None:
        try:
            line = raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as error:
            raise UpstreamInvalidResponse(
                "Anthropic sent a stream line that is not UTF-8"
            ) from error
        if not line:
            if self._data:
                events.append((self._event, "\n".join(self._data)))
            self._event = ""
            self._data = []
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Read Retry-After as seconds, from either a number or an HTTP date."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - datetime.now(UTC)).total_seconds(), 0.0)


def _parse_event_data(text: str) -> JSONObject:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise UpstreamInvalidResponse(
            "Anthropic sent a stream event whose data is not JSON"
        ) from error
    if not isinstance(data, dict):
        raise UpstreamInvalidResponse(
            "Anthropic sent a stream event whose data is not an object"
        )
    return data


class AnthropicProvider:
    """Chat provider for one Anthropic deployment."""

    def __init__(self, deployment: DeploymentConfig) -> None:
        self.deployment = deployment
        self._url = f"{deployment.base_url or DEFAULT_BASE_URL}/v1/messages"
        self._label = deployment.name or deployment.model
        self._session: aiohttp.ClientSession | None = None
        max_tokens = deployment.options.get("default_max_tokens", DEFAULT_MAX_TOKENS)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise ValueError(
                "options.default_max_tokens of Anthropic deployment"
                f" {self._label} must be an integer, got {max_tokens!r}"
            )
        if max_tokens < 1:
            raise ValueError(
                "options.default_max_tokens of Anthropic deployment"
                f" {self._label} must be at least 1, got {max_tokens}"
            )
        self._default_max_tokens = max_tokens

    async def start(self) -> None:
        """Open the deployment's connection pool."""
        if self._session is not None:
            return
        timeout = aiohttp.ClientTimeout(
            total=self.deployment.timeout.total,
            sock_connect=self.deployment.timeout.connect,
        )
        connector = aiohttp.TCPConnector(limit=self.deployment.max_connections)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def close(self) -> None:
        """Close the connection pool."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def check(self) -> ProviderStatus:
        """Report ready once ``start`` has opened the pool, without any request."""
        if self._session is None or self._session.closed:
            return ProviderStatus(ready=False, detail="provider not started")
        return ProviderStatus(ready=True)

    async def chat(self, body: JSONObject) -> ChatResult:
        """Run a non-streamed chat completion."""
        request = self._request(body, stream=False)
        response = await self._open(request)
        try:
            raw = await self._read(response.read())
        finally:
            response.release()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise UpstreamInvalidResponse(
                f"Anthropic deployment {self._label} returned a body that is not JSON"
            ) from error
        if not isinstance(data, dict):
            raise UpstreamInvalidResponse(
                f"Anthropic deployment {self._label} returned JSON that is not a"
                " message object"
            )
        chat, usage = messages_response_to_chat(data, self._reported_model(data))
        return ChatResult(body=chat, usage=usage)

    def chat_stream(self, body: JSONObject) -> AnthropicChatStream:
        """Start a streamed chat completion and return its chunk iterator."""
        return AnthropicChatStream(self, body)

    def _request(self, body: JSONObject, *, stream: bool) -> JSONObject:
        request = chat_request_to_messages(body, self._default_max_tokens)
        request["model"] = self.deployment.model
        if stream:
            request["stream"] = True
        else:
            request.pop("stream", None)
        return request

    def _headers(self) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "anthropic-version": self.deployment.api_version or DEFAULT_API_VERSION,
        }
        for name, value in self.deployment.headers.items():
            headers[name.lower()] = value
        if self.deployment.api_key:
            headers["x-api-key"] = self.deployment.api_key
        return headers

    def _reported_model(self, message: Mapping[str, Any]) -> str:
        model = message.get("model")
        return model if isinstance(model, str) and model else self.deployment.model

    def _redact(self, text: str) -> str:
        key = self.deployment.api_key
        return text.replace(key, "[redacted]") if key else text

    def _transport_error(self, error: Exception) -> ProviderError:
        """Map an aiohttp or timeout exception to keelway's error tree."""
        if isinstance(error, TimeoutError):
            timeout = self.deployment.timeout
            return UpstreamTimeout(
                f"Anthropic deployment {self._label} timed out (connect timeout"
                f" {timeout.connect:g} s, total timeout {timeout.total:g} s)"
            )
        detail = self._redact(str(error) or type(error).__name__)
        if isinstance(error, aiohttp.ClientConnectionError | aiohttp.InvalidURL):
            return UpstreamUnreachable(
                f"connection to Anthropic deployment {self._label} at {self._url}"
                f" failed: {detail}"
            )
        return UpstreamInvalidResponse(
            f"Anthropic deployment {self._label} sent a broken response: {detail}"
        )

    async def _open(self, request: JSONObject) -> aiohttp.ClientResponse:
        """Send the request and return the response once its status is 2xx."""
        session = self._session
        if session is None or session.closed:
            raise UpstreamUnreachable(
                f"Anthropic deployment {self._label} is not started; call start()"
            )
        try:
            response = await session.post(
                self._url,
                data=orjson.dumps(request),
                headers=self._headers(),
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ClientError) as error:
            raise self._transport_error(error) from error
        if 200 <= response.status < 300:
            return response
        try:
            raw = await self._read(response.read())
        finally:
            response.release()
        raise self._status_error(response, raw)

    async def _read(self, pending: Awaitable[bytes]) -> bytes:
        """Await a body read, mapping transport errors."""
        try:
            return await pending
        except (TimeoutError, aiohttp.ClientError) as error:
            raise self._transport_error(error) from error

    def _status_error(
        self, response: aiohttp.ClientResponse, raw: bytes
    ) -> ProviderError:
        text = self._redact(raw.decode("utf-8", errors="replace"))
        body: object
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError:
            body = text
        return error_from_anthropic(
            response.status, body, retry_after=_retry_after(response.headers)
        )

    async def _stream_chunks(
        self, body: JSONObject, translator: MessagesToChatStream
    ) -> AsyncGenerator[ChatChunk, None]:
        stream_options = body.get("stream_options")
        forward_usage = (
            isinstance(stream_options, Mapping)
            and stream_options.get("include_usage") is True
        )
        response = await self._open(self._request(body, stream=True))
        try:
            parser = _EventParser()
            while not translator.done:
                data = await self._read(response.content.readany())
                events = parser.feed(data) if data else parser.close()
                for name, text in events:
                    for chunk in translator.feed(name, _parse_event_data(text)):
                        yield ChatChunk(data=chunk)
                if not data:
                    break
            if not translator.done:
                raise UpstreamInvalidResponse(
                    f"Anthropic deployment {self._label} ended the stream before"
                    " message_stop"
                )
            yield ChatChunk(
                data=translator.usage_chunk(),
                usage=translator.usage,
                forward=forward_usage,
            )
        finally:
            # On cancellation or an error this closes the connection, because
            # aiohttp reuses a connection only when its body was read to the end.
            response.release()


class AnthropicChatStream(AsyncIterator[ChatChunk]):
    """Chunks of one streamed call, with the usage seen so far.

    The last chunk carries the usage report and has ``forward`` set to whether
    the request asked for ``stream_options.include_usage``. When the stream
    breaks off or the caller stops early, ``usage`` still contains the usage
    reported so far.
    """

    def __init__(self, provider: AnthropicProvider, body: JSONObject) -> None:
        self._translator = MessagesToChatStream(provider.deployment.model)
        self._chunks = provider._stream_chunks(body, self._translator)

    @property
    def usage(self) -> Usage | None:
        """Usage reported so far, or None before Anthropic's message_start."""
        return self._translator.usage

    @property
    def finish_reason(self) -> str | None:
        """OpenAI finish reason, or None before Anthropic's message_delta."""
        return self._translator.finish_reason

    def __aiter__(self) -> AnthropicChatStream:
        return self

    async def __anext__(self) -> ChatChunk:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        """Stop the stream and release its connection."""
        await self._chunks.aclose()
