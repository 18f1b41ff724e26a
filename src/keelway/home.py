"""The data folder: ``$KEELWAY_HOME``, or ``~/.keelway`` when unset."""

from __future__ import annotations

import os
from pathlib import Path


def keelway_home() -> Path:
    """Return the data folder, creating it if needed."""
    home = Path(os.environ.get("KEELWAY_HOME") or Path.home() / ".keelway").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home
