"""``keelway keys``: create, list and revoke virtual API keys."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click

from keelway.cli.identity import current_principal, service_errors
from keelway.cli.options import config_option, open_store, resolve_config
from keelway.config import Config
from keelway.governance.audit import AuditLog
from keelway.governance.roles import Permission, Principal
from keelway.store.keys import (
    BUDGET_PERIODS,
    MAX_PER_MINUTE,
    ApiKeyRecord,
    InvalidKey,
    KeyAlreadyRevoked,
    KeyNameTaken,
    KeyNotFound,
    KeyStore,
)


class UsdType(click.ParamType[Decimal]):
    """A positive USD amount such as ``12.50`` or ``0.005`` (a leading $ is allowed)."""

    name = "usd"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Decimal:
        if isinstance(value, Decimal):
            return value
        text = str(value).strip().removeprefix("$")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            self.fail(f"{value!r} is not a USD amount such as 12.50", param, ctx)
        if not amount.is_finite() or amount <= 0:
            self.fail(f"expected a positive USD amount, got {value!r}", param, ctx)
        return amount


USD = UsdType()


def _store(config: Config) -> tuple[KeyStore, AuditLog, Principal]:
    """Open the key store with the audit log and the principal acting on it."""
    database = open_store(config)
    return KeyStore(database), AuditLog(database), current_principal(database)


def _usd_text(amount: Decimal | None) -> str | None:
    """Format a stored amount without trailing zeros: ``5``, ``0.05``."""
    return None if amount is None else f"{amount.normalize():f}"


def _as_dict(record: ApiKeyRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "team": record.team,
        "models": list(record.models) if record.models is not None else None,
        "payloads": record.payloads,
        "rpm": record.rpm,
        "tpm": record.tpm,
        # Strings, so that amounts stay exact for JSON readers.
        "budget_usd": _usd_text(record.budget_usd),
        "budget_soft_usd": _usd_text(record.budget_soft_usd),
        "budget_period": record.budget_period,
        "created_at": record.created_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


def _budget_text(record: ApiKeyRecord) -> str:
    """Format a key's budgets for the table: ``$5/day``, ``$5 (soft $4)/month``."""
    hard, soft = _usd_text(record.budget_usd), _usd_text(record.budget_soft_usd)
    if hard is None and soft is None:
        return "-"
    period = f"/{record.budget_period or 'month'}"
    if hard is None:
        return f"soft ${soft}{period}"
    if soft is None:
        return f"${hard}{period}"
    return f"${hard} (soft ${soft}){period}"


@click.group()
def keys() -> None:
    """Manage virtual API keys."""


@keys.command()
@click.option("--name", required=True, help="A unique, non-empty name for the key.")
@click.option("--team", default=None, help="The team the key belongs to.")
@click.option(
    "--models",
    default=None,
    help=(
        "Comma-separated models the key may use [default: all]. Models the "
        "config does not serve are kept, with a warning."
    ),
)
@click.option(
    "--payloads",
    type=click.Choice(["full", "redacted", "metadata_only", "none"]),
    default=None,
    help="What traces keep of this key's requests [default: tracing.payloads].",
)
@click.option(
    "--rpm",
    type=click.IntRange(min=1, max=MAX_PER_MINUTE),
    default=None,
    help="Requests per minute the key may make [default: unlimited].",
)
@click.option(
    "--tpm",
    type=click.IntRange(min=1, max=MAX_PER_MINUTE),
    default=None,
    help="Tokens per minute the key may use [default: unlimited].",
)
@click.option(
    "--budget",
    type=USD,
    default=None,
    help="Hard budget in USD per period; requests past it are rejected.",
)
@click.option(
    "--budget-soft",
    type=USD,
    default=None,
    help=(
        "Soft budget in USD per period: reaching it is reported once, nothing "
        "is rejected. Must not exceed --budget."
    ),
)
@click.option(
    "--budget-period",
    type=click.Choice(BUDGET_PERIODS),
    default=None,
    help=(
        "Period of the budgets: calendar UTC day, calendar UTC month, or all "
        "time (total) [default: month]."
    ),
)
@click.option("--json", "as_json", is_flag=True, help="Print the key as JSON.")
@config_option
def create(
    name: str,
    team: str | None,
    models: str | None,
    payloads: str | None,
    rpm: int | None,
    tpm: int | None,
    budget: Decimal | None,
    budget_soft: Decimal | None,
    budget_period: str | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Create a key and print its secret, which is shown only this once."""
    allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None
    if models is not None and not allowed:
        raise click.BadParameter(
            "expected at least one model name", param_hint="--models"
        )
    config = resolve_config(config_path)
    store, audit, actor = _store(config)
    with service_errors():
        audit.require(
            actor, Permission.MANAGE_KEYS, "key.create", f"key:{name}", team=team
        )
    try:
        record, secret = store.create(
            name.strip(),
            team=team,
            models=allowed,
            payloads=payloads,
            rpm=rpm,
            tpm=tpm,
            budget_usd=budget,
            budget_soft_usd=budget_soft,
            budget_period=budget_period,
        )
    except (KeyNameTaken, InvalidKey) as error:
        raise click.ClickException(str(error)) from None
    audit.record(
        actor,
        "key.create",
        f"key:{record.name}",
        team=team,
        details={"id": record.id, "prefix": record.prefix},
    )
    unserved = [m for m in allowed or [] if m not in config.models]
    if unserved:
        names = ", ".join(repr(m) for m in unserved)
        click.echo(
            f"warning: the config serves no model named {names}; the key was "
            "created anyway and can use them once the config serves them",
            err=True,
        )
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
    """List keys (their prefixes, never their secrets) and their limits."""
    store, _, actor = _store(resolve_config(config_path))
    if not actor.grants:
        raise click.ClickException(f"{actor.name} has no role that may list keys")
    records = store.list()
    if as_json:
        click.echo(json.dumps([_as_dict(r) for r in records]))
        return
    click.echo(
        f"{'NAME':24} {'PREFIX':12} {'TEAM':16} {'MODELS':24} {'RPM':>7} "
        f"{'TPM':>9} {'BUDGET':24} STATUS"
    )
    for r in records:
        models = ",".join(r.models) if r.models is not None else "*"
        status = "active" if r.active else f"revoked {r.revoked_at:%Y-%m-%d}"
        rpm = str(r.rpm) if r.rpm is not None else "-"
        tpm = str(r.tpm) if r.tpm is not None else "-"
        click.echo(
            f"{r.name:24} {r.prefix:12} {r.team or '-':16} {models:24} {rpm:>7} "
            f"{tpm:>9} {_budget_text(r):24} {status}"
        )


@keys.command()
@click.argument("name")
@config_option
def revoke(name: str, config_path: Path | None) -> None:
    """Revoke the key with this name or id.

    Exits with status 1, changing nothing, if no key has this name or id or
    if the key was already revoked.
    """
    store, audit, actor = _store(resolve_config(config_path))
    known = [r for r in store.list() if name in (r.name, r.id)]
    team = known[0].team if known else None
    with service_errors():
        audit.require(
            actor, Permission.MANAGE_KEYS, "key.revoke", f"key:{name}", team=team
        )
    try:
        record = store.revoke(name)
    except (KeyNotFound, KeyAlreadyRevoked) as error:
        raise click.ClickException(str(error)) from None
    audit.record(actor, "key.revoke", f"key:{record.name}", team=team)
    click.echo(f"revoked key {record.name!r}")
