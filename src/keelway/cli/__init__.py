"""The ``keelway`` command."""

from keelway.cli.main import main

__all__ = ["main"]
