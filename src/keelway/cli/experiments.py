"""``keelway experiment``: A/B and shadow tests of prompt versions, and reports."""

from __future__ import annotations

import json
from pathlib import Path

import click

from keelway.cli.identity import format_time, open_as_principal, service_errors
from keelway.cli.options import config_option, resolve_config
from keelway.experiments.assign import Variant
from keelway.experiments.store import STICKY_UNITS, ExperimentRecord, ExperimentStore
from keelway.governance.audit import AuditLog
from keelway.governance.roles import Permission, Principal
from keelway.store.database import Database


def _open(
    config_path: Path | None,
) -> tuple[Database, ExperimentStore, Principal]:
    database, actor = open_as_principal(resolve_config(config_path))
    return database, ExperimentStore(database, AuditLog(database)), actor


def parse_variant(text: str) -> Variant:
    """Parse ``NAME=VERSION:WEIGHT`` such as ``control=1.0.0:50``."""
    name, equals, rest = text.partition("=")
    version, colon, weight = rest.rpartition(":")
    if not equals or not colon or not name or not version:
        raise click.BadParameter(
            f"{text!r} is not NAME=VERSION:WEIGHT, such as control=1.0.0:50",
            param_hint="--variant",
        )
    try:
        share = float(weight)
    except ValueError:
        raise click.BadParameter(
            f"weight {weight!r} in {text!r} is not a number", param_hint="--variant"
        ) from None
    return Variant(name, version, share)


def _row(record: ExperimentRecord) -> str:
    if record.kind == "ab":
        arms = ", ".join(
            f"{v.name}={v.version} ({v.weight:g}%)" for v in record.variants
        )
    else:
        arms = f"shadow {record.shadow_version} on {record.sample_rate:.0%}"
    return (
        f"{record.name:<24} {record.kind:<7} {record.prompt}@{record.label:<14} "
        f"{record.status:<8} {arms}"
    )


@click.group()
def experiment() -> None:
    """Run A/B and shadow tests on prompt versions and report on them."""


@experiment.command()
@click.argument("name")
@click.option("--prompt", "reference", required=True, help="PROMPT@LABEL to test.")
@click.option(
    "--variant",
    "variants",
    multiple=True,
    help="An A/B arm as NAME=VERSION:WEIGHT (percent); give two or more.",
)
@click.option("--shadow", "shadow", default=None, help="Candidate VERSION to shadow.")
@click.option(
    "--sample-rate",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="Share of the label's traffic a shadow test copies.",
)
@click.option(
    "--sticky",
    type=click.Choice(STICKY_UNITS),
    default="user",
    show_default=True,
    help="What an A/B assignment sticks to: the request's user or metadata.session_id.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Significance level of the report's tests.",
)
@click.option(
    "--min-samples",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Requests each variant needs before the report judges a metric.",
)
@click.option("--description", default=None, help="What the test is for.")
@click.option("--json", "as_json", is_flag=True, help="Print the experiment as JSON.")
@config_option
def create(
    name: str,
    reference: str,
    variants: tuple[str, ...],
    shadow: str | None,
    sample_rate: float,
    sticky: str,
    alpha: float,
    min_samples: int,
    description: str | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Start an A/B test (--variant ...) or a shadow test (--shadow VERSION)."""
    prompt, at, label = reference.partition("@")
    if not at or not prompt or not label:
        raise click.BadParameter(
            f"{reference!r} is not PROMPT@LABEL", param_hint="--prompt"
        )
    if bool(variants) == bool(shadow):
        raise click.UsageError("give either --variant (two or more) or --shadow")
    arms = [parse_variant(text) for text in variants]
    _, store, actor = _open(config_path)
    with service_errors():
        if shadow:
            record = store.create_shadow(
                actor,
                name,
                prompt,
                label,
                shadow,
                sample_rate=sample_rate,
                alpha=alpha,
                min_samples=min_samples,
                description=description,
            )
        else:
            record = store.create_ab(
                actor,
                name,
                prompt,
                label,
                arms,
                sticky=sticky,
                alpha=alpha,
                min_samples=min_samples,
                description=description,
            )
    if as_json:
        click.echo(json.dumps(record.as_dict(), indent=2))
        return
    click.echo(f"started {_row(record)}")


@experiment.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the experiments as JSON.")
@config_option
def list_experiments(as_json: bool, config_path: Path | None) -> None:
    """List experiments, oldest first."""
    _, store, _ = _open(config_path)
    records = store.all()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    if not records:
        click.echo("no experiments")
        return
    for record in records:
        click.echo(_row(record))


@experiment.command()
@click.argument("name")
@config_option
def stop(name: str, config_path: Path | None) -> None:
    """Stop an experiment; its label then serves its own version again."""
    _, store, actor = _open(config_path)
    with service_errors():
        record = store.stop(actor, name)
    click.echo(f"stopped {record.name} at {format_time(record.stopped_at)}")


@experiment.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of bootstrap resampling, so reports repeat exactly.",
)
@config_option
def report(name: str, as_json: bool, seed: int, config_path: Path | None) -> None:
    """Compare the variants and report which differences are significant."""
    database, store, actor = _open(config_path)
    if not actor.teams_with(Permission.READ_EXPERIMENTS):
        raise click.ClickException(
            f"{actor.name} has no role that may read experiments"
        )
    # Imported here: scipy takes a noticeable part of a second to load.
    from keelway.experiments.results import experiment_report

    with service_errors():
        record = store.get(name)
        result = experiment_report(database, store, name, seed=seed)
    if as_json:
        click.echo(
            json.dumps({"experiment": record.as_dict(), **result.to_dict()}, indent=2)
        )
        return
    click.echo(f"experiment {record.name}: {_row(record)}")
    click.echo(
        f"declared before the start: alpha {record.alpha:g}, at least "
        f"{record.min_samples} requests per variant"
    )
    click.echo(result.format_text())
