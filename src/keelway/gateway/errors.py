"""Errors the gateway returns, and their HTTP status codes, in one place.

Every error reaches the client as an OpenAI-style body::

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

or, on the Anthropic-compatible route, as Anthropic's
``{"type": "error", "error": {"type": ..., "message": ...}}``. Provider
errors are translated here too, so a client never sees a stack trace.
"""

from __future__ import annotations

from typing import Any

import orjson

from keelway.providers.errors import (
    DeploymentAtCapacity,
    ProviderError,
    UnsupportedRequest,
    UpstreamInvalidResponse,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)


class GatewayError(Exception):
    """An error returned to the client with a status code and an error body."""

    status = 500
    error_type = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type
        self.headers = headers or {}

    def openai_body(self) -> dict[str, Any]:
        """Return the error as OpenAI's error object."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def anthropic_body(self) -> dict[str, Any]:
        """Return the error as Anthropic's error object."""
        return {
            "type": "error",
            "error": {"type": _anthropic_type(self), "message": self.message},
        }


class InvalidRequest(GatewayError):
    """The body is not valid JSON, not UTF-8, or not a valid request."""

    status = 400
    error_type = "invalid_request_error"


class InvalidField(InvalidRequest):
    """A field is missing or has the wrong type or value."""

    status = 422
    code = "invalid_field"


class GuardrailBlocked(InvalidRequest):
    """A guardrail scanner blocked the request; the message names the scanner
    and what it found, never the text it found."""

    status = 400
    code = "guardrail_blocked"


class BodyTooLarge(InvalidRequest):
    """The body is larger than ``server.max_body_bytes``."""

    status = 413
    code = "request_too_large"


class BodyReadTimedOut(InvalidRequest):
    """The client sent its body too slowly or stopped sending it."""

    status = 408
    code = "request_timeout"


class ClientClosed(GatewayError):
    """The client closed the connection before the request was read."""

    status = 499
    code = "client_closed_request"


class AuthenticationFailed(GatewayError):
    """The API key is missing, unknown or revoked."""

    status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class ModelNotAllowed(GatewayError):
    """The key may not call this model."""

    status = 403
    error_type = "permission_error"
    code = "model_not_allowed"


class ModelNotFound(GatewayError):
    """No model group has this name."""

    status = 404
    error_type = "not_found_error"
    code = "model_not_found"


class RouteNotFound(GatewayError):
    """No route has this path."""

    status = 404
    error_type = "not_found_error"
    code = "route_not_found"


class MethodNotAllowed(GatewayError):
    """The route exists but not for this HTTP method."""

    status = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"


class UpstreamFailed(GatewayError):
    """The provider failed or returned something keelway cannot read."""

    status = 502
    error_type = "upstream_error"
    code = "upstream_error"


class UpstreamTimedOut(GatewayError):
    """The provider did not answer in time."""

    status = 504
    error_type = "timeout_error"
    code = "upstream_timeout"


class KeelwayLimitError(GatewayError):
    """An error keelway raises itself rather than relays from a provider.

    Its ``type`` is ``keelway_error``, so a client can tell it apart from a
    provider's own rate limit or outage.
    """

    error_type = "keelway_error"


class DeploymentsUnavailable(KeelwayLimitError):
    """Every deployment that could serve the request has an open circuit."""

    status = 503
    code = "deployments_unavailable"


class RateLimited(KeelwayLimitError):
    """A keelway rate limit (not a provider's) rejected the request."""

    status = 429
    code = "keelway_rate_limited"


class BudgetExhausted(KeelwayLimitError):
    """The request's maximum cost does not fit in a hard budget."""

    status = 429
    code = "keelway_budget_exceeded"


class LimitsDown(KeelwayLimitError):
    """The store of rate limits and budgets (Redis) cannot be reached."""

    status = 503
    code = "keelway_limits_unavailable"


class NotReady(GatewayError):
    """The gateway is starting or shutting down."""

    status = 503
    error_type = "api_error"
    code = "not_ready"


_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    405: "invalid_request_error",
    408: "timeout_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _anthropic_type(error: GatewayError) -> str:
    return _ANTHROPIC_TYPES.get(error.status, "api_error")


def from_provider_error(error: ProviderError, deployment: str) -> GatewayError:
    """Translate a provider adapter's error to the error the client receives."""
    if isinstance(error, UnsupportedRequest):
        return InvalidRequest(
            str(error), param=error.param, code="unsupported_parameter"
        )
    if isinstance(error, UpstreamTimeout):
        return UpstreamTimedOut(f"deployment {deployment!r}: {error}")
    if isinstance(error, UpstreamUnreachable):
        return UpstreamFailed(
            f"deployment {deployment!r}: {error}", code="upstream_unreachable"
        )
    if isinstance(error, UpstreamInvalidResponse):
        return UpstreamFailed(
            f"deployment {deployment!r}: {error}", code="upstream_invalid_response"
        )
    if isinstance(error, UpstreamStatusError):
        return _from_status(error, deployment)
    if isinstance(error, DeploymentAtCapacity):
        headers = {}
        if error.retry_after is not None:
            headers["Retry-After"] = f"{max(1, round(error.retry_after))}"
        return KeelwayLimitError(
            f"deployment {deployment!r}: {error}",
            status=429,
            code="keelway_rate_limited",
            headers=headers,
        )
    return UpstreamFailed(f"deployment {deployment!r}: {error}")


def _from_status(error: UpstreamStatusError, deployment: str) -> GatewayError:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = f"{error.retry_after:g}"
    if 400 <= error.status < 500 and error.status not in (401, 403, 404):
        # The client's request was at fault (or is rate limited): pass it on.
        return GatewayError(
            error.message,
            status=error.status,
            error_type=error.error_type or "invalid_request_error",
            code=error.code,
            headers=headers,
        )
    # A 401, 403 or 404 from the provider means keelway's own credentials or
    # deployment are wrong, which the client cannot fix: report a gateway error.
    return UpstreamFailed(
        f"deployment {deployment!r} failed with HTTP {error.status}: {error.message}",
        code=error.code or "upstream_error",
        headers=headers,
    )


def render(error: GatewayError, style: str = "openai") -> bytes:
    """Serialize the error body in the route's style."""
    body = error.anthropic_body() if style == "anthropic" else error.openai_body()
    return orjson.dumps(body)
