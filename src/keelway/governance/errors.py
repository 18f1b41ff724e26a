"""Errors of administrative actions, each with the HTTP status the API gives it."""

from __future__ import annotations


class GovernanceError(Exception):
    """Base class; ``status`` is the HTTP status and ``code`` the error code."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(GovernanceError):
    """A request's values are invalid; the message names the value."""

    status = 422
    code = "invalid_value"


class Unauthenticated(GovernanceError):
    """No user key, or an unknown or disabled one."""

    status = 401
    code = "invalid_user_key"


class Forbidden(GovernanceError):
    """The caller lacks the role, or the action breaks a review rule."""

    status = 403
    code = "forbidden"


class NotFound(GovernanceError):
    """The named user, prompt, version, label or experiment does not exist."""

    status = 404
    code = "not_found"


class Conflict(GovernanceError):
    """The action clashes with the current state: a taken name, a reviewed version."""

    status = 409
    code = "conflict"
