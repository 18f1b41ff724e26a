"""Errors raised by cache backends."""

from __future__ import annotations


class CacheError(Exception):
    """A cache backend failed, for example Redis could not be reached.

    Callers treat it as a miss and go on to the model, because a cache outage
    should not fail a request.
    """
