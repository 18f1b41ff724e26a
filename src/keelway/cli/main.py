"""Entry point and shared options of the ``keelway`` command.

Every failure the user can cause ends as one line on stderr and exit code 1
(2 for usage errors, from click), never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from keelway import __version__
from keelway.cli import keys, serve, traces
from keelway.cli.options import DEFAULT_CONFIG


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="keelway")
def cli() -> None:
    """keelway: an LLM gateway with traces, costs and virtual keys."""


@cli.command()
@click.argument(
    "path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CONFIG
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, force: bool) -> None:
    """Write a commented default config that serves the local models."""
    from keelway.config import default_config_text

    if path.exists() and not force:
        raise click.ClickException(
            f"{path} already exists; pass --force to overwrite it"
        )
    try:
        path.write_text(default_config_text(), encoding="utf-8")
    except OSError as error:
        raise click.ClickException(f"cannot write {path}: {error.strerror}") from None
    click.echo(f"wrote {path}")


cli.add_command(serve.serve)
cli.add_command(keys.keys)
cli.add_command(traces.traces)
cli.add_command(traces.usage)


def main() -> None:
    """Run the command line."""
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
