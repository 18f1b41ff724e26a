"""Provider adapters keyed by name, registered as ``keelway.providers`` entry points.

The built-in adapters register through the same entry points a third-party
package would use, so a new provider needs no change to keelway itself.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

GROUP = "keelway.providers"


class ProviderNotFound(Exception):
    """No installed adapter has this name."""


@cache
def _adapters() -> dict[str, Any]:
    return {entry.name: entry for entry in entry_points(group=GROUP)}


def available_providers() -> list[str]:
    """Return the names of all installed adapters."""
    return sorted(_adapters())


def load_provider_class(name: str) -> Any:
    """Import and return the adapter class registered as ``name``."""
    entry = _adapters().get(name)
    if entry is None:
        known = ", ".join(available_providers()) or "none"
        raise ProviderNotFound(
            f"unknown provider {name!r}; installed providers: {known}"
        )
    return entry.load()
