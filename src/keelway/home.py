"""The data folder: ``$KEELWAY_HOME``, or ``~/.keelway`` when unset."""

from __future__ import annotations

import os
from pathlib import Path


class HomeError(Exception):
    """The data folder cannot be created or is not a folder."""


def keelway_home() -> Path:
    """Return the data folder, creating it if needed.

    Raises HomeError, naming the folder and KEELWAY_HOME, when the folder
    cannot be created or a file of that name is in the way.
    """
    configured = os.environ.get("KEELWAY_HOME")
    home = Path(configured or Path.home() / ".keelway").expanduser()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HomeError(_unusable_home(home, bool(configured), error)) from None
    return home


def _unusable_home(home: Path, configured: bool, error: OSError) -> str:
    if isinstance(error, FileExistsError):
        reason = "it exists and is not a folder"
    else:
        reason = error.strerror or str(error)
    origin = "KEELWAY_HOME" if configured else "the default, as KEELWAY_HOME is unset"
    return (
        f"cannot use the data folder {home} ({origin}): {reason}; "
        "set KEELWAY_HOME to a folder keelway can create and write"
    )
