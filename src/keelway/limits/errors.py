"""Errors shared by the rate limiters and the budgets."""

from __future__ import annotations


class LimitsError(Exception):
    """Base class of the errors that keelway.limits raises."""


class LimitsUnavailable(LimitsError):
    """The limits backend (Redis) could not be reached or returned an error.

    The caller decides whether to let the request through (fail open) or to
    reject it (fail closed); the limiters themselves never guess.
    """
