"""Entry point and shared options of the ``keelway`` command.

Every failure the user can cause ends as one line on stderr and exit code 1
(2 for usage errors, from click), never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from keelway import __version__
from keelway.cli import (
    audit,
    datasets,
    evals,
    experiments,
    guard,
    keys,
    prompts,
    route,
    serve,
    traces,
    users,
)
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
cli.add_command(route.route)
cli.add_command(users.users)
cli.add_command(prompts.prompt)
cli.add_command(audit.audit)
cli.add_command(experiments.experiment)
cli.add_command(datasets.dataset)
cli.add_command(evals.eval_group)
cli.add_command(guard.guard)


def main() -> None:
    """Run the command line and exit with its status.

    Click's standalone mode would turn Ctrl-C into "Aborted!" and exit code 1,
    so errors are reported here instead. Ctrl-C exits 130, as shells report a
    command ended by SIGINT.
    """
    try:
        status = cli.main(standalone_mode=False)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        sys.exit(130)
    # Without standalone mode, click returns the code of --help, --version and
    # other early exits; every command itself returns None.
    sys.exit(status if isinstance(status, int) else 0)
