"""Options and helpers shared by the CLI's commands."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from keelway.config import Config, ConfigError, load_config
from keelway.home import HomeError
from keelway.store.database import Database, StoreError, open_database

DEFAULT_CONFIG = Path("keelway.yaml")

# The name load_config gives the built-in config in its errors.
DEFAULT_SOURCE = "default config"

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=(
        "Config file [default: ./keelway.yaml if it exists, else the built-in default]."
    ),
)


def _config_file(path: Path | None) -> Path | None:
    if path is None and DEFAULT_CONFIG.exists():
        return DEFAULT_CONFIG
    return path


def config_source(path: Path | None) -> str:
    """Return the name config errors start with: the file, or the default's name."""
    file = _config_file(path)
    return DEFAULT_SOURCE if file is None else str(file)


def resolve_config(path: Path | None) -> Config:
    """Load the config named on the command line, ./keelway.yaml, or the default."""
    file = _config_file(path)
    try:
        return load_config(file)
    except ConfigError as error:
        raise config_error(error, config_source(file)) from None


def config_error(error: ConfigError, source: str) -> click.ClickException:
    """Return a config error as one CLI line that starts with its source."""
    # load_config raises ConfigError while it handles the parser's exception,
    # so __context__ is that exception, with the line and column of the problem.
    cause = error.__context__
    if isinstance(cause, yaml.MarkedYAMLError) and cause.problem_mark is not None:
        problem = _yaml_problem(cause, cause.problem_mark)
        return click.ClickException(f"{source}: {problem}")
    if isinstance(cause, yaml.reader.ReaderError):
        # The reader rejects control characters before parsing and reports only
        # their offset. Its second line names "<unicode string>", so it is dropped.
        reason = str(cause).splitlines()[0]
        return click.ClickException(
            f"{source}: invalid YAML at character {cause.position + 1}: {reason}"
        )
    message = " ".join(line.strip() for line in str(error).splitlines())
    # Errors about a field carry only its path (models.x.api_key), but errors
    # about the file itself already name it.
    if source not in message:
        message = f"{source}: {message}"
    return click.ClickException(message)


def _yaml_problem(error: yaml.MarkedYAMLError, mark: yaml.Mark) -> str:
    message = f"invalid YAML at {_position(mark)}: {error.problem}"
    if error.context and error.context_mark is not None:
        message += f" ({error.context} at {_position(error.context_mark)})"
    return message


def _position(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def open_store(config: Config) -> Database:
    """Open and migrate the configured store, as a one-line CLI error on failure."""
    try:
        return open_database(config.database_url())
    except (StoreError, HomeError) as error:
        raise click.ClickException(str(error)) from None
