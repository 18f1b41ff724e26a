"""Whether a request may read from and write to the cache.

A request controls caching with any of:

- the ``Cache-Control`` header: ``no-cache`` (do not read, may write) or
  ``no-store`` (neither); other directives are ignored;
- the ``X-Keelway-Cache`` header: ``no-cache``, ``no-store`` or ``force``;
- ``metadata.cache`` in the body, with the same three values.

By default only deterministic requests are cached: ``temperature`` 0, or an
integer ``seed``. ``force`` opts any other request in. ``no-store`` wins over
everything, and ``no-cache`` over ``force``. Streamed requests and requests
with ``n`` > 1 are cacheable like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HEADER = "x-keelway-cache"
DIRECTIVES = ("no-store", "no-cache", "force")


class InvalidCacheDirective(ValueError):
    """A cache control value that keelway does not know.

    ``param`` names where the value came from (``metadata.cache`` or a header).
    """

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """A request's permission to read and write the cache, with the reason."""

    read: bool
    write: bool
    reason: str


def _from_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Map each directive found in the headers to the header that carried it."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "cache-control":
            for directive in value.split(","):
                token = directive.split("=", 1)[0].strip().lower()
                if token in ("no-cache", "no-store"):
                    found.setdefault(token, "Cache-Control header")
        elif lowered == HEADER:
            token = value.strip().lower()
            if token not in DIRECTIVES:
                raise InvalidCacheDirective(
                    f"X-Keelway-Cache must be 'no-store', 'no-cache' or 'force',"
                    f" not {value!r}",
                    param="X-Keelway-Cache",
                )
            found.setdefault(token, "X-Keelway-Cache header")
    return found


def _from_metadata(body: Mapping[str, Any]) -> str | None:
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping) or "cache" not in metadata:
        return None
    value = metadata["cache"]
    token = value.strip().lower() if isinstance(value, str) else None
    if token not in DIRECTIVES:
        raise InvalidCacheDirective(
            f"metadata.cache must be 'no-store', 'no-cache' or 'force', not {value!r}",
            param="metadata.cache",
        )
    return token


def _determinism(body: Mapping[str, Any]) -> str | None:
    """Say why a request is deterministic, or return None when it is not."""
    temperature = body.get("temperature")
    if (
        isinstance(temperature, int | float)
        and not isinstance(temperature, bool)
        and temperature == 0
    ):
        return "temperature is 0"
    seed = body.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return f"seed is {seed}"
    return None


def cache_policy(headers: Mapping[str, str], body: Mapping[str, Any]) -> CachePolicy:
    """Decide whether a request may read and write the cache.

    ``headers`` may be any mapping; names are matched case-insensitively.
    Raises InvalidCacheDirective for an unknown ``X-Keelway-Cache`` or
    ``metadata.cache`` value.
    """
    sources = _from_headers(headers)
    from_metadata = _from_metadata(body)
    if from_metadata is not None:
        sources.setdefault(from_metadata, "metadata.cache")

    if "no-store" in sources:
        return CachePolicy(False, False, f"no-store from {sources['no-store']}")
    deterministic = _determinism(body)
    if deterministic is None and "force" not in sources:
        temperature = body.get("temperature")
        temperature_text = (
            "unset (default 1)" if temperature is None else repr(temperature)
        )
        return CachePolicy(
            False,
            False,
            f"not deterministic: temperature {temperature_text} and no seed;"
            " send X-Keelway-Cache: force to cache it",
        )
    admitted = (
        f"forced by {sources['force']}"
        if deterministic is None
        else f"deterministic: {deterministic}"
    )
    if "no-cache" in sources:
        return CachePolicy(
            False,
            True,
            f"{admitted}; no-cache from {sources['no-cache']}, so write only",
        )
    return CachePolicy(True, True, admitted)
