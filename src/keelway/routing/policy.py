"""Classes of provider errors, what a request does after each, and backoff.

Every provider error falls into one class. The config's ``routing.policy``
maps each class to an action:

- ``retry``: wait with exponential backoff and full jitter (or the
  provider's Retry-After) and try the group again, preferring a deployment
  that has not failed this request yet;
- ``fallback``: give up on this group at once and move to its fallbacks;
- ``return``: return the error to the client.

By default a provider's content-policy refusal and a bad request are
returned, never routed around.
"""

from __future__ import annotations

import enum
import random

from keelway.config import ErrorPolicy, RetryConfig
from keelway.providers.errors import (
    DeploymentAtCapacity,
    ProviderError,
    UnsupportedRequest,
    UpstreamInvalidResponse,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)


class ErrorClass(enum.StrEnum):
    """The kind of failure a provider error is, for the policy table."""

    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    INVALID_RESPONSE = "invalid_response"
    CONTEXT_WINDOW_EXCEEDED = "context_window_exceeded"
    CONTENT_POLICY = "content_policy"
    AUTHENTICATION = "authentication"
    BAD_REQUEST = "bad_request"


# Classes that count against a deployment's circuit breaker: the deployment
# is unhealthy, rather than the request being at fault.
BREAKER_CLASSES = frozenset(
    {
        ErrorClass.RATE_LIMITED,
        ErrorClass.OVERLOADED,
        ErrorClass.SERVER_ERROR,
        ErrorClass.TIMEOUT,
        ErrorClass.CONNECTION,
        ErrorClass.INVALID_RESPONSE,
        ErrorClass.AUTHENTICATION,
    }
)

# Codes and message fragments that OpenAI, Azure OpenAI and Anthropic use
# for a prompt longer than the model's context window.
_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_CONTEXT_PHRASES = (
    "maximum context length",
    "context window",
    "prompt is too long",
    "too many tokens",
    "context_length_exceeded",
)
# Azure OpenAI reports its content filter as ``content_filter``; OpenAI as
# ``content_policy_violation``.
_POLICY_CODES = frozenset(
    {"content_filter", "content_policy_violation", "responsible_ai_policy_violation"}
)
_POLICY_PHRASES = ("content management policy", "content policy", "safety system")


def classify(error: ProviderError) -> ErrorClass:
    """Return the class of a provider error."""
    if isinstance(error, DeploymentAtCapacity):
        return ErrorClass.RATE_LIMITED
    if isinstance(error, UpstreamTimeout):
        return ErrorClass.TIMEOUT
    if isinstance(error, UpstreamUnreachable):
        return ErrorClass.CONNECTION
    if isinstance(error, UpstreamInvalidResponse):
        return ErrorClass.INVALID_RESPONSE
    if isinstance(error, UnsupportedRequest):
        return ErrorClass.BAD_REQUEST
    if isinstance(error, UpstreamStatusError):
        return _classify_status(error)
    return ErrorClass.SERVER_ERROR


def _classify_status(error: UpstreamStatusError) -> ErrorClass:
    status = error.status
    code = (error.code or "").lower()
    kind = (error.error_type or "").lower()
    message = error.message.lower()
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if status in (503, 529) or kind == "overloaded_error":
        return ErrorClass.OVERLOADED
    if status == 408:
        return ErrorClass.TIMEOUT
    if status in (401, 403):
        return ErrorClass.AUTHENTICATION
    if status == 409 or status >= 500:
        return ErrorClass.SERVER_ERROR
    if code in _CONTEXT_CODES or any(p in message for p in _CONTEXT_PHRASES):
        return ErrorClass.CONTEXT_WINDOW_EXCEEDED
    if code in _POLICY_CODES or any(p in message for p in _POLICY_PHRASES):
        return ErrorClass.CONTENT_POLICY
    return ErrorClass.BAD_REQUEST


def action_for(policy: ErrorPolicy, error_class: ErrorClass) -> str:
    """Return ``retry``, ``fallback`` or ``return`` for an error class."""
    action: str = getattr(policy, error_class.value)
    return action


def backoff_delay(
    config: RetryConfig,
    retry: int,
    retry_after: float | None,
    rng: random.Random | None = None,
) -> float | None:
    """Return seconds to wait before retry number ``retry`` (from 1), or None.

    None means the provider asked for a longer wait than ``max_retry_after``,
    so the request should move on rather than wait.
    """
    if retry_after is not None:
        return retry_after if retry_after <= config.max_retry_after else None
    ceiling = min(config.backoff_max, config.backoff_base * 2 ** (retry - 1))
    return (rng or random).uniform(0, ceiling)
