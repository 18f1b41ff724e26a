"""The principal behind a CLI command, and helpers the governance commands share.

Commands act as the user whose key is in ``KEELWAY_USER_KEY``. A store with
no users yet accepts commands without a key, as a local admin, so that the
first admin can be created. Once it has users, every command needs a key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import click

from keelway.cli.options import open_store
from keelway.config import Config
from keelway.governance.audit import AuditLog
from keelway.governance.errors import GovernanceError, Unauthenticated
from keelway.governance.roles import Principal
from keelway.governance.users import USER_KEY_ENV, UserStore
from keelway.prompts.errors import PromptError
from keelway.store.database import Database


def current_principal(database: Database) -> Principal:
    """Return who runs this command, from ``KEELWAY_USER_KEY`` or the bootstrap.

    Raises click.ClickException when the key is invalid, or when it is unset
    and the store already has users. No message ever contains the key.
    """
    users = UserStore(database, AuditLog(database))
    # An empty value counts as unset, as `KEELWAY_USER_KEY= keelway ...` means.
    key = os.environ.get(USER_KEY_ENV, "").strip()
    if key:
        try:
            return users.authenticate(key)
        except Unauthenticated as error:
            raise click.ClickException(
                f"{USER_KEY_ENV} is not a valid user key ({error.message})"
            ) from None
    if not users.has_users():
        return Principal.local()
    raise click.ClickException(
        f"set {USER_KEY_ENV} to your user key; this store has users, so commands "
        "need one (an admin creates users with 'keelway users create')"
    )


def open_as_principal(config: Config) -> tuple[Database, Principal]:
    """Open the configured store and return it with the principal acting on it.

    The store's connections are closed when the command's context closes.
    """
    database = open_store(config)
    click.get_current_context().call_on_close(database.close)
    return database, current_principal(database)


def one_line(text: str) -> str:
    """Join a possibly multi-line message into the single line CLI errors use."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


@contextmanager
def service_errors() -> Iterator[None]:
    """Turn governance and prompt errors into one-line CLI errors (exit 1)."""
    try:
        yield
    except GovernanceError as error:
        raise click.ClickException(one_line(error.message)) from None
    except PromptError as error:
        raise click.ClickException(one_line(str(error))) from None


def format_time(moment: datetime | None) -> str:
    """Format a stored time in UTC to the second, or ``-`` when there is none."""
    if moment is None:
        return "-"
    if moment.tzinfo is None:
        # SQLite returns naive datetimes; the store writes them in UTC.
        moment = moment.replace(tzinfo=UTC)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows under headers, each column as wide as its widest cell.

    The last column is not padded, so long free text (reasons, messages)
    ends the line instead of pushing trailing spaces.
    """
    widths = [len(header) for header in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        cells[-1] = row[-1]
        click.echo("  ".join(cells))
