"""``keelway keys``: create, list and revoke virtual API keys."""

from __future__ import annotations

import json
from pathlib import Path

import click

from keelway.cli.options import config_option, open_store, resolve_config
from keelway.store.keys import ApiKeyRecord, KeyNameTaken, KeyNotFound, KeyStore


def _store(config_path: Path | None) -> KeyStore:
    return KeyStore(open_store(resolve_config(config_path)))


def _as_dict(record: ApiKeyRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "team": record.team,
        "models": list(record.models) if record.models is not None else None,
        "payloads": record.payloads,
        "created_at": record.created_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


@click.group()
def keys() -> None:
    """Manage virtual API keys."""


@keys.command()
@click.option("--name", required=True, help="A unique name for the key.")
@click.option("--team", default=None, help="The team the key belongs to.")
@click.option(
    "--models",
    default=None,
    help="Comma-separated models the key may use [default: all].",
)
@click.option(
    "--payloads",
    type=click.Choice(["full", "metadata_only", "none"]),
    default=None,
    help="What traces keep of this key's requests [default: tracing.payloads].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key as JSON.")
@config_option
def create(
    name: str,
    team: str | None,
    models: str | None,
    payloads: str | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Create a key and print its secret, which is shown only this once."""
    allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None
    if models is not None and not allowed:
        raise click.BadParameter(
            "expected at least one model name", param_hint="--models"
        )
    try:
        record, secret = _store(config_path).create(
            name.strip(), team=team, models=allowed, payloads=payloads
        )
    except KeyNameTaken as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps({**_as_dict(record), "key": secret}))
        return
    click.echo(f"created key {record.name!r} (id {record.id})")
    click.echo(secret)
    click.echo(
        "Store it now: keelway keeps only its hash and cannot show it again.", err=True
    )


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
@config_option
def list_keys(as_json: bool, config_path: Path | None) -> None:
    """List keys (their prefixes, never their secrets)."""
    records = _store(config_path).list()
    if as_json:
        click.echo(json.dumps([_as_dict(r) for r in records]))
        return
    click.echo(f"{'NAME':24} {'PREFIX':12} {'TEAM':16} {'MODELS':24} STATUS")
    for r in records:
        models = ",".join(r.models) if r.models is not None else "*"
        status = "active" if r.active else f"revoked {r.revoked_at:%Y-%m-%d}"
        click.echo(f"{r.name:24} {r.prefix:12} {r.team or '-':16} {models:24} {status}")


@keys.command()
@click.argument("name")
@config_option
def revoke(name: str, config_path: Path | None) -> None:
    """Revoke the key with this name or id."""
    try:
        record = _store(config_path).revoke(name)
    except KeyNotFound as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"revoked key {record.name!r}")
