"""``keelway audit``: read the audit log of administrative actions."""

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
from keelway.governance.audit import ALLOWED, DENIED, AuditLog
from keelway.governance.roles import Permission


@click.group()
def audit() -> None:
    """Read the audit log (needs the auditor or admin role)."""


@audit.command("list")
@click.option("--actor", default=None, help="Only events by this user name.")
@click.option("--action", default=None, help="Only this action, such as role.grant.")
@click.option("--target", default=None, help="Only this target, such as user:alice.")
@click.option(
    "--outcome",
    type=click.Choice([ALLOWED, DENIED]),
    default=None,
    help="Only allowed or only denied actions.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Maximum number of events to print.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
@config_option
def list_events(
    actor: str | None,
    action: str | None,
    target: str | None,
    outcome: str | None,
    limit: int,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """List audit events, newest first, filtered by exact values."""
    database, principal = open_as_principal(resolve_config(config_path))
    log = AuditLog(database)
    with service_errors():
        log.require(principal, Permission.READ_AUDIT, "audit.read", None)
    records = log.list(
        actor=actor, action=action, target=target, outcome=outcome, limit=limit
    )
    if as_json:
        click.echo(json.dumps([record.as_dict() for record in records]))
        return
    rows = [
        [
            format_time(record.at),
            record.actor,
            record.action,
            record.target or "-",
            record.outcome,
            record.reason or "",
        ]
        for record in records
    ]
    echo_table(["TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "REASON"], rows)
