"""``keelway dataset``: import, export and list versioned eval datasets."""

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
from keelway.evals.cases import CaseError, dump_csv, dump_jsonl, dump_yaml, read_file
from keelway.evals.datasets import DatasetStore, parse_dataset_reference
from keelway.evals.from_traces import TRACE_FILTERS, cases_from_traces, parse_filters
from keelway.governance.audit import AuditLog
from keelway.governance.errors import NotFound
from keelway.governance.roles import Permission, Principal
from keelway.store.database import Database


def _open(config_path: Path | None) -> tuple[Database, DatasetStore, Principal]:
    database, actor = open_as_principal(resolve_config(config_path))
    return database, DatasetStore(database, AuditLog(database)), actor


def require_reader(actor: Principal) -> None:
    """Reject a principal with no role, since every role may read evals."""
    if not actor.teams_with(Permission.READ_EVALS):
        raise click.ClickException(
            f"{actor.name} has no role; any role may read datasets"
        )


@click.group()
def dataset() -> None:
    """Import, export and list versioned eval datasets."""


@dataset.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["yaml", "jsonl", "csv"]),
    default=None,
    help="File format [default: from the file's suffix].",
)
@click.option("--message", "-m", default=None, help="Why this version was made.")
@click.option("--team", default=None, help="Team that owns a new dataset.")
@config_option
def import_dataset(
    name: str,
    path: Path,
    file_format: str | None,
    message: str | None,
    team: str | None,
    config_path: Path | None,
) -> None:
    """Store the cases of PATH (YAML, JSONL or CSV) as a new version of NAME.

    Importing content equal to the newest version makes no new version.
    """
    try:
        loaded = read_file(path, file_format)
    except CaseError as error:
        raise click.ClickException(str(error)) from None
    _, store, actor = _open(config_path)
    with service_errors():
        record, created = store.save(
            actor,
            name,
            loaded.cases,
            evaluators=loaded.evaluators,
            description=loaded.description,
            team=team,
            message=message,
        )
    state = "new version" if created else "unchanged, no new version"
    click.echo(f"dataset {record.reference}: {record.case_count} cases ({state})")


@dataset.command("export")
@click.argument("reference", metavar="NAME[@VERSION]")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["yaml", "jsonl", "csv"]),
    default="yaml",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
@config_option
def export_dataset(
    reference: str, file_format: str, output: Path | None, config_path: Path | None
) -> None:
    """Write a dataset version's cases as YAML, JSONL or CSV."""
    _, store, actor = _open(config_path)
    require_reader(actor)
    with service_errors():
        name, version = parse_dataset_reference(reference)
        loaded = store.load(name, version)
    record = loaded.record
    try:
        if file_format == "yaml":
            text = dump_yaml(
                loaded.cases, record.name, record.description, record.evaluators
            )
        elif file_format == "jsonl":
            text = dump_jsonl(loaded.cases)
        else:
            text = dump_csv(loaded.cases)
    except CaseError as error:
        raise click.ClickException(str(error)) from None
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error.strerror}") from None
    click.echo(f"wrote {record.reference} ({record.case_count} cases) to {output}")


@dataset.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@config_option
def list_datasets(as_json: bool, config_path: Path | None) -> None:
    """List datasets with their newest version."""
    _, store, actor = _open(config_path)
    require_reader(actor)
    records = store.names()
    if as_json:
        for record in records:
            click.echo(json.dumps(record.as_dict()))
        return
    echo_table(
        ["NAME", "VERSION", "CASES", "CREATED", "DESCRIPTION"],
        [
            [
                record.name,
                str(record.version),
                str(record.case_count),
                format_time(record.created_at),
                (record.description or "").strip().replace("\n", " ")[:60],
            ]
            for record in records
        ],
    )


@dataset.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@config_option
def list_versions(name: str, as_json: bool, config_path: Path | None) -> None:
    """List every version of a dataset."""
    _, store, actor = _open(config_path)
    require_reader(actor)
    with service_errors():
        records = store.versions(name)
    if as_json:
        for record in records:
            click.echo(json.dumps(record.as_dict()))
        return
    echo_table(
        ["VERSION", "CASES", "CREATED", "BY", "MESSAGE"],
        [
            [
                str(record.version),
                str(record.case_count),
                format_time(record.created_at),
                record.created_by,
                record.message or "",
            ]
            for record in records
        ],
    )


@dataset.command("add-from-traces")
@click.argument("name")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="FIELD=VALUE",
    help=(
        "Keep traces whose FIELD equals VALUE; repeat to combine. Fields: "
        + ", ".join(TRACE_FILTERS)
        + ". 'since' takes a duration such as 24h or 7d."
    ),
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Maximum number of traces to add, newest first.",
)
@click.option(
    "--expected-from-output/--no-expected",
    default=False,
    help="Store each trace's answer as the case's expected output.",
)
@click.option("--message", "-m", default=None, help="Why this version was made.")
@config_option
def add_from_traces(
    name: str,
    filters: tuple[str, ...],
    limit: int,
    expected_from_output: bool,
    message: str | None,
    config_path: Path | None,
) -> None:
    """Add cases made from stored production traces to dataset NAME.

    Only traces stored with their payloads can become cases. Traces that
    the dataset already holds (by trace id) are skipped.
    """
    database, store, actor = _open(config_path)
    if not actor.teams_with(Permission.WRITE_DATASETS):
        roles = ", ".join(actor.roles) or "no roles"
        raise click.ClickException(
            f"{actor.name} ({roles}) lacks permission {Permission.WRITE_DATASETS.value}"
        )
    with service_errors():
        parsed = parse_filters(filters)
        try:
            existing = store.load(name).cases
        except NotFound:
            existing = []
        known = {case["id"] for case in existing}
        fresh, skipped = cases_from_traces(
            database, parsed, limit, expected_from_output, known
        )
        if not fresh:
            raise click.ClickException(
                f"no new trace matches; {skipped} matching traces had no stored "
                "payload and the rest are in the dataset already"
            )
        record, _ = store.save(
            actor,
            name,
            [*existing, *fresh],
            message=message or f"added {len(fresh)} cases from traces",
        )
    click.echo(
        f"dataset {record.reference}: added {len(fresh)} cases from traces "
        f"({record.case_count} in all; {skipped} traces without payloads skipped)"
    )
