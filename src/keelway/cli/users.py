"""``keelway users``: create users and grant or revoke their roles."""

from __future__ import annotations

import json
from pathlib import Path

import click

from keelway.cli.identity import (
    echo_table,
    format_time,
    open_as_principal,
    service_errors,
)
from keelway.cli.options import config_option, resolve_config
from keelway.governance.audit import AuditLog
from keelway.governance.roles import ROLES
from keelway.governance.users import USER_KEY_ENV, UserRecord, UserStore

ROLE_HELP = (
    f"A role ({', '.join(ROLES)}), for every team, or for one team as ROLE@TEAM "
    "(approver@payments)."
)


def parse_role(text: str) -> tuple[str, str | None]:
    """Split ``ROLE@TEAM`` into role and team; a bare ``ROLE`` has no team.

    Role names never contain ``@``, so the first ``@`` ends the role and the
    rest is the team. The user store validates both parts.
    """
    role, separator, team = text.partition("@")
    return role, team if separator else None


def _roles_text(record: UserRecord) -> str:
    return ", ".join(str(grant) for grant in record.grants) or "-"


@click.group()
def users() -> None:
    """Manage the users of the CLI and admin API, and their roles."""


@users.command()
@click.argument("name")
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="ROLE[@TEAM]",
    help=ROLE_HELP + " Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the user and key as JSON.")
@config_option
def create(
    name: str, roles: tuple[str, ...], as_json: bool, config_path: Path | None
) -> None:
    """Create a user and print its key, which is shown only this once.

    On a store without users this needs no key, so that the first admin can
    be created: keelway users create NAME --role admin.
    """
    database, actor = open_as_principal(resolve_config(config_path))
    store = UserStore(database, AuditLog(database))
    with service_errors():
        record, secret = store.create(actor, name, [parse_role(r) for r in roles])
    if as_json:
        click.echo(json.dumps({**record.as_dict(), "key": secret}))
        return
    click.echo(f"created user {record.name!r} (roles: {_roles_text(record)})")
    click.echo(secret)
    click.echo(
        "Store it now: keelway keeps only its hash and cannot show it again. "
        f"Commands read it from {USER_KEY_ENV}.",
        err=True,
    )


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the users as JSON.")
@config_option
def list_users(as_json: bool, config_path: Path | None) -> None:
    """List users and their roles (key prefixes, never keys)."""
    database, actor = open_as_principal(resolve_config(config_path))
    with service_errors():
        records = UserStore(database, AuditLog(database)).list(actor)
    if as_json:
        click.echo(json.dumps([record.as_dict() for record in records]))
        return
    rows = [
        [
            record.name,
            _roles_text(record),
            format_time(record.created_at),
            format_time(record.disabled_at),
        ]
        for record in records
    ]
    echo_table(["NAME", "ROLES", "CREATED", "DISABLED"], rows)


@users.command()
@click.argument("name")
@click.argument("role", metavar="ROLE[@TEAM]")
@config_option
def grant(name: str, role: str, config_path: Path | None) -> None:
    """Give user NAME a role; granting a role the user already has changes nothing."""
    database, actor = open_as_principal(resolve_config(config_path))
    role_name, team = parse_role(role)
    with service_errors():
        record = UserStore(database, AuditLog(database)).grant(
            actor, name, role_name, team
        )
    click.echo(f"granted {role} to {record.name!r}; roles: {_roles_text(record)}")


@users.command()
@click.argument("name")
@click.argument("role", metavar="ROLE[@TEAM]")
@config_option
def revoke(name: str, role: str, config_path: Path | None) -> None:
    """Take a role from user NAME; exits with status 1 if the user lacks it."""
    database, actor = open_as_principal(resolve_config(config_path))
    role_name, team = parse_role(role)
    with service_errors():
        record = UserStore(database, AuditLog(database)).revoke(
            actor, name, role_name, team
        )
    click.echo(f"revoked {role} from {record.name!r}; roles: {_roles_text(record)}")
