"""Options and helpers shared by the CLI's commands."""

from __future__ import annotations

from pathlib import Path

import click

from keelway.config import Config, ConfigError, load_config
from keelway.store.database import Database, StoreError, open_database

DEFAULT_CONFIG = Path("keelway.yaml")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=(
        "Config file [default: ./keelway.yaml if it exists, else the built-in default]."
    ),
)


def resolve_config(path: Path | None) -> Config:
    """Load the config named on the command line, ./keelway.yaml, or the default."""
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    try:
        return load_config(path)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def open_store(config: Config) -> Database:
    """Open and migrate the configured store, as a one-line CLI error on failure."""
    try:
        return open_database(config.database_url())
    except StoreError as error:
        raise click.ClickException(str(error)) from None
