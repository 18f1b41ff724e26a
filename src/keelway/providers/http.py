"""A pooled HTTP client for OpenAI-compatible upstreams, with errors translated.

aiohttp rather than httpx: on a 2-core machine httpx spent several times the
CPU per request of aiohttp under concurrency, and this client is on the hot
path of every proxied call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from keelway.providers.errors import (
    UpstreamInvalidResponse,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)

log = logging.getLogger(__name__)

JSONObject = dict[str, Any]

# OpenAI error types by HTTP status, for upstreams that send no usable body.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def _status_error(
    status: int, body: bytes, headers: Mapping[str, str]
) -> UpstreamStatusError:
    message = f"upstream returned HTTP {status}"
    error_type = _TYPE_BY_STATUS.get(status, "upstream_error")
    code = None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or message)
        error_type = str(error.get("type") or error_type)
        code = str(error["code"]) if error.get("code") is not None else None
    elif isinstance(error, str):
        message = error
    return UpstreamStatusError(
        status,
        message,
        error_type=error_type,
        code=code,
        retry_after=_retry_after(headers),
    )


class HTTPUpstream:
    """One connection pool to one base URL."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        connect_timeout: float,
        total_timeout: float,
        max_connections: int,
        params: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Content-Type": "application/json", **headers}
        self.params = dict(params or {})
        self.timeout = aiohttp.ClientTimeout(
            total=total_timeout, sock_connect=connect_timeout, connect=connect_timeout
        )
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, ttl_dns_cache=300, keepalive_timeout=30
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                headers=self.headers,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    async def get_json(self, path: str, timeout: float) -> Any:
        """GET ``path`` and parse the JSON answer."""
        try:
            async with self.session.get(
                self._url(path),
                params=self.params,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                body = await response.read()
                if response.status >= 400:
                    raise _status_error(response.status, body, response.headers)
                return orjson.loads(body)
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise UpstreamTimeout(f"upstream timed out after {timeout:g}s") from error
        except aiohttp.ClientConnectionError as error:
            raise UpstreamUnreachable(
                f"cannot reach upstream: {error.__class__.__name__}"
            ) from error
        except orjson.JSONDecodeError as error:
            raise UpstreamInvalidResponse(
                "upstream returned a body that is not JSON"
            ) from error

    async def post_json(self, path: str, body: JSONObject) -> JSONObject:
        """POST a JSON body and return the parsed JSON object answer."""
        try:
            async with self.session.post(
                self._url(path), data=orjson.dumps(body), params=self.params
            ) as response:
                data = await response.read()
                if response.status >= 400:
                    raise _status_error(response.status, data, response.headers)
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise UpstreamTimeout(
                f"upstream did not answer within {self.timeout.total:g}s"
            ) from error
        except aiohttp.ClientPayloadError as error:
            raise UpstreamInvalidResponse(
                "upstream closed the connection mid-body"
            ) from error
        except aiohttp.ClientConnectionError as error:
            raise UpstreamUnreachable(
                f"cannot reach upstream: {error.__class__.__name__}"
            ) from error
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise UpstreamInvalidResponse(
                "upstream returned a body that is not JSON"
            ) from error
        if not isinstance(parsed, dict):
            raise UpstreamInvalidResponse(
                "upstream returned JSON that is not an object"
            )
        return parsed

    async def post_stream(
        self, path: str, body: JSONObject
    ) -> AsyncIterator[JSONObject]:
        """POST a JSON body and yield each ``data:`` event of the SSE answer."""
        try:
            async with self.session.post(
                self._url(path), data=orjson.dumps(body), params=self.params
            ) as response:
                if response.status >= 400:
                    data = await response.read()
                    raise _status_error(response.status, data, response.headers)
                async for event in _sse_data(response):
                    yield event
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise UpstreamTimeout(
                f"upstream stream did not finish within {self.timeout.total:g}s"
            ) from error
        except aiohttp.ClientPayloadError as error:
            raise UpstreamInvalidResponse(
                "upstream closed the stream mid-event"
            ) from error
        except aiohttp.ClientConnectionError as error:
            raise UpstreamUnreachable(
                f"cannot reach upstream: {error.__class__.__name__}"
            ) from error


async def _sse_data(response: aiohttp.ClientResponse) -> AsyncIterator[JSONObject]:
    content_type = response.headers.get("Content-Type", "")
    if "text/event-stream" not in content_type:
        body = await response.content.read(4096)
        # Some upstreams answer a stream request with a plain JSON error.
        raise UpstreamInvalidResponse(
            "upstream answered a stream request with "
            f"{content_type or 'no content type'}" + (" and a body" if body else "")
        )
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError as error:
            raise UpstreamInvalidResponse(
                "upstream sent a stream event that is not JSON"
            ) from error
        if not isinstance(event, dict):
            raise UpstreamInvalidResponse(
                "upstream sent a stream event that is not an object"
            )
        if "error" in event and "choices" not in event:
            raise _status_error(502, orjson.dumps(event), {})
        yield event
