"""Errors raised by provider adapters.

Every adapter translates its transport and wire errors into this tree at the
boundary, so the gateway maps them to HTTP status codes in one place::

    ProviderError
    ├── UpstreamTimeout          no answer within the deployment's timeout
    ├── UpstreamUnreachable      connection refused, reset or DNS failure
    ├── UpstreamInvalidResponse  a body that does not parse or has the wrong shape
    ├── UpstreamStatusError      the provider answered with an HTTP error status
    ├── UnsupportedRequest       the request asks for something this provider lacks
    └── DeploymentAtCapacity     keelway's own rate limit of the deployment is reached
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base class of every error a provider adapter raises."""


class UpstreamTimeout(ProviderError):
    """The provider did not answer within the deployment's timeout."""


class UpstreamUnreachable(ProviderError):
    """The provider could not be reached."""


class UpstreamInvalidResponse(ProviderError):
    """The provider answered with a body keelway cannot read."""


class UpstreamStatusError(ProviderError):
    """The provider answered with an HTTP error status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.retry_after = retry_after


class UnsupportedRequest(ProviderError):
    """The request needs a feature this provider does not offer."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class DeploymentAtCapacity(ProviderError):
    """The deployment's configured rate limit is reached, so it was not called."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
