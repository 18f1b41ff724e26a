"""Run the ``keelway`` command as ``python -m keelway``."""

from keelway.cli import main

main()
