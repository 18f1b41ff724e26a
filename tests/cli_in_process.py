"""Running ``keelway`` commands inside the test process.

A subprocess pays for Python's start and keelway's imports on every call;
in process a command takes a fraction of that. Exit codes follow
``keelway.cli.main.main``: a command's returned int, a ClickException's
exit code with its ``Error:`` line on stderr.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence

import click
from click.testing import CliRunner

from keelway.cli.main import cli

# Variables a command reads that the test process itself must not leak in.
ISOLATED = ("KEELWAY_HOME", "KEELWAY_USER_KEY", "KEELWAY_API_KEY", "FAKE_OPENAI_KEY")


def run_cli(
    args: Sequence[str], env: Mapping[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``keelway ARGS`` with ``env`` and return it like ``subprocess.run``."""
    variables: dict[str, str | None] = {name: env.get(name) for name in ISOLATED}
    result = CliRunner().invoke(
        cli, list(args), env=variables, standalone_mode=False, catch_exceptions=True
    )
    stderr = result.stderr
    error = result.exception
    if error is None:
        value = result.return_value
        code = value if isinstance(value, int) else 0
    elif isinstance(error, click.ClickException):
        stderr += f"Error: {error.format_message()}\n"
        code = error.exit_code
    elif isinstance(error, SystemExit):
        code = error.code if isinstance(error.code, int) else 1
    else:
        raise error
    done = subprocess.CompletedProcess(list(args), code, result.stdout, stderr)
    if check and code:
        raise subprocess.CalledProcessError(code, list(args), result.stdout, stderr)
    return done
