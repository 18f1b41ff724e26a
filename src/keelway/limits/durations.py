"""OpenAI's duration format for rate limit reset headers (``1s``, ``6m0s``)."""

from __future__ import annotations

import math


def format_duration(seconds: float) -> str:
    """Format seconds as OpenAI does in ``x-ratelimit-reset-*`` headers.

    The format is Go's ``time.Duration`` string, rounded up to whole
    milliseconds so that a client never retries early: ``0s``, ``120ms``,
    ``1.5s``, ``6m0s``, ``1h0m0s``. Negative values format as ``0s``.
    """
    millis = max(0, math.ceil(round(seconds * 1000, 6)))
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    text = f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text
