"""``keelway prompt``: version, review, label and sync prompts in the registry."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import click

from keelway.cli.identity import (
    echo_table,
    format_time,
    one_line,
    open_as_principal,
    service_errors,
)
from keelway.cli.options import config_option, resolve_config
from keelway.config import Config
from keelway.governance.audit import AuditLog
from keelway.governance.roles import Permission, Principal
from keelway.prompts.content import (
    PromptContent,
    dump_prompt_yaml,
    json_type_name,
    parse_prompt_yaml,
    validate_prompt_name,
)
from keelway.prompts.diff import diff_contents
from keelway.prompts.files import read_folder, write_folder
from keelway.prompts.registry import PromptRegistry, Resolved, VersionRecord
from keelway.prompts.render import Renderer
from keelway.prompts.versioning import (
    PromptReference,
    parse_reference,
    propose_bump,
    validate_label,
)
from keelway.store.database import Database

DEFAULT_FOLDER = Path("prompts")
BUMP_LEVELS = ("major", "minor", "patch")

FILE_OPTION = click.option(
    "--file",
    "file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Prompt YAML file; its name field must match NAME.",
)
MESSAGE_OPTION = click.option(
    "--message", "-m", default=None, help="What changed and why, kept with the version."
)


def _open(config_path: Path | None) -> tuple[PromptRegistry, Principal]:
    """Open the registry of the configured store and return it with the actor."""
    config = resolve_config(config_path)
    database, actor = open_as_principal(config)
    return _registry(config, database), actor


def _registry(config: Config, database: Database) -> PromptRegistry:
    return PromptRegistry.from_config(database, AuditLog(database), config.prompts)


def _require_reader(actor: Principal) -> None:
    """Reject principals without any role, since every role may read prompts."""
    if not actor.teams_with(Permission.READ_PROMPTS):
        roles = ", ".join(actor.roles) or "no roles"
        raise click.ClickException(
            f"{actor.name} ({roles}) lacks permission "
            f"{Permission.READ_PROMPTS.value} needed to read prompts; ask an "
            "admin for a role ('keelway users grant')"
        )


def _read_prompt_file(path: Path, name: str) -> PromptContent:
    """Parse a prompt YAML file and check that it names the prompt ``name``."""
    try:
        # utf-8-sig accepts a byte order mark, as `keelway prompt push` does.
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise click.ClickException(f"prompt file {path} not found") from None
    except UnicodeDecodeError as error:
        raise click.ClickException(
            f"prompt file {path} is not valid UTF-8 at byte {error.start}; save "
            "it as UTF-8"
        ) from None
    except OSError as error:
        raise click.ClickException(
            f"cannot read prompt file {path}: {error.strerror}"
        ) from None
    with service_errors():
        file_name, content = parse_prompt_yaml(text, where=str(path))
    if file_name != name:
        raise click.ClickException(
            f"{path} defines prompt {file_name!r}, not {name!r}; fix its name "
            "field or pass the matching NAME"
        )
    return content


def _reference(text: str) -> PromptReference:
    with service_errors():
        return parse_reference(text)


def _resolve(registry: PromptRegistry, name: str, ref: str) -> Resolved:
    """Resolve REF of prompt NAME: a version (1.2.0, 1.2) or a label."""
    reference = _reference(f"{name}@{ref}")
    with service_errors():
        return registry.resolve(reference)


def _json(value: Any) -> None:
    click.echo(json.dumps(value))


@click.group()
def prompt() -> None:
    """Manage versioned prompts: propose, review, label, roll back, sync."""


@prompt.command()
@click.argument("name")
@FILE_OPTION
@click.option("--team", default=None, help="The team that owns the prompt.")
@MESSAGE_OPTION
@config_option
def create(
    name: str,
    file: Path,
    team: str | None,
    message: str | None,
    config_path: Path | None,
) -> None:
    """Create prompt NAME from a YAML file; version 1.0.0 awaits review."""
    content = _read_prompt_file(file, name)
    registry, actor = _open(config_path)
    with service_errors():
        record = registry.create(actor, name, content, team=team, message=message)
    click.echo(f"created {record.reference} ({record.status})")


@prompt.command()
@click.argument("name")
@FILE_OPTION
@MESSAGE_OPTION
@click.option(
    "--bump",
    type=click.Choice(BUMP_LEVELS),
    default=None,
    help=(
        "Version part to raise [default: the one the change needs]. It may be "
        "higher than the change needs, never lower."
    ),
)
@config_option
def propose(
    name: str,
    file: Path,
    message: str | None,
    bump: str | None,
    config_path: Path | None,
) -> None:
    """Propose a new version of prompt NAME from a YAML file.

    Exits with status 0 and creates nothing when the file equals the newest
    version.
    """
    content = _read_prompt_file(file, name)
    registry, actor = _open(config_path)
    with service_errors():
        # The newest version before this proposal, to explain the bump.
        newest = registry.versions(name)[0]
        record = registry.propose(actor, name, content, message=message, bump=bump)
    if record is None:
        click.echo(f"{name} unchanged; no new version")
        return
    click.echo(f"proposed {record.reference} ({_bump_text(record, newest)})")


def _bump_text(record: VersionRecord, previous: VersionRecord) -> str:
    """Explain a proposed version's bump with the changes behind it."""
    needed = propose_bump(previous.content, record.content)
    if needed is None:
        return f"bump: {record.bump}"
    reasons = "; ".join(needed.reasons)
    if record.bump == needed.level:
        return f"bump: {record.bump}: {reasons}"
    return (
        f"bump: {record.bump} as requested; the change needs {needed.level}: {reasons}"
    )


@prompt.command()
@click.argument(
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_FOLDER,
    metavar="[DIR]",
)
@click.option("--team", default=None, help="The team that owns prompts created now.")
@MESSAGE_OPTION
@config_option
def push(
    folder: Path, team: str | None, message: str | None, config_path: Path | None
) -> None:
    """Create or propose a version of each changed prompt file in DIR.

    DIR defaults to ./prompts. Prompts the registry does not know are created;
    files equal to their prompt's newest version are skipped.
    """
    try:
        with service_errors():
            contents = read_folder(folder)
    except OSError as error:
        raise click.ClickException(
            f"cannot read prompt folder {folder}: {error.strerror}"
        ) from None
    registry, actor = _open(config_path)
    # NOTE: registry.push writes prompt by prompt. When one fails, the prompts
    # before it stay created or proposed, and only the error is printed.
    with service_errors():
        results = registry.push(actor, contents, team=team, message=message)
    for result in results:
        if result.outcome == "unchanged":
            click.echo(f"unchanged {result.name}")
        elif result.version is not None:
            verb = "created" if result.outcome == "created" else "proposed"
            click.echo(f"{verb} {result.version.reference}")
    counts = Counter(result.outcome for result in results)
    new_versions = counts["new_version"]
    click.echo(
        f"{counts['created']} created, {new_versions} new "
        f"version{'' if new_versions == 1 else 's'}, {counts['unchanged']} unchanged"
    )


@prompt.command()
@click.argument(
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_FOLDER,
    metavar="[DIR]",
)
@click.option(
    "--label",
    default=None,
    help="Write the versions with this label [default: each prompt's newest].",
)
@config_option
def pull(folder: Path, label: str | None, config_path: Path | None) -> None:
    """Write each prompt's newest (or labelled) version into DIR as YAML.

    DIR defaults to ./prompts. With --label, prompts without that label are
    not written.
    """
    if label is not None:
        with service_errors():
            validate_label(label)
    registry, actor = _open(config_path)
    _require_reader(actor)
    contents = registry.pull(label, actor)
    try:
        with service_errors():
            written = write_folder(folder, contents)
    except OSError as error:
        raise click.ClickException(
            f"cannot write prompt folder {folder}: {error.strerror}"
        ) from None
    for path in written:
        click.echo(f"wrote {path}")
    count = len(contents)
    click.echo(
        f"{count} prompt{'' if count == 1 else 's'}, {len(written)} "
        f"file{'' if len(written) == 1 else 's'} changed"
    )


@prompt.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the prompts as JSON.")
@config_option
def list_prompts(as_json: bool, config_path: Path | None) -> None:
    """List prompts with their team, newest version and labels."""
    registry, actor = _open(config_path)
    _require_reader(actor)
    summaries = registry.prompts(actor)
    if as_json:
        _json([summary.as_dict() for summary in summaries])
        return
    rows = [
        [
            summary.name,
            summary.team or "-",
            summary.latest or "-",
            ", ".join(f"{k}={v}" for k, v in summary.labels.items()) or "-",
        ]
        for summary in summaries
    ]
    echo_table(["NAME", "TEAM", "LATEST", "LABELS"], rows)


@prompt.command()
@click.argument("reference", metavar="NAME[@REF]")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@config_option
def show(reference: str, as_json: bool, config_path: Path | None) -> None:
    """Show a prompt and its versions, or one version (NAME@1.2.0, NAME@production).

    With a REF, the version's details are followed by its canonical YAML.
    """
    # parse_reference reads a bare NAME as NAME@production, but show lists
    # every version then.
    parsed: PromptReference | None = None
    if "@" in reference:
        parsed = _reference(reference)
    else:
        with service_errors():
            validate_prompt_name(reference)
    registry, actor = _open(config_path)
    _require_reader(actor)
    with service_errors():
        registry.authorize_read(actor, parsed.name if parsed else reference)
    if parsed is None:
        _show_prompt(registry, reference, as_json)
        return
    with service_errors():
        resolved = registry.resolve(parsed)
        record = registry.version(resolved.name, resolved.version)
    if as_json:
        _json({**record.as_dict(), "team": record.team, "label": resolved.label})
        return
    fields = [
        ("prompt", record.prompt),
        ("version", record.version),
        ("team", record.team or "-"),
        ("status", record.status),
        ("labels", ", ".join(record.labels) or "-"),
        ("author", record.author),
        ("created", format_time(record.created_at)),
        ("bump", record.bump or "-"),
        ("message", record.message or "-"),
        ("reviewed by", record.reviewed_by or "-"),
        ("reviewed", format_time(record.reviewed_at)),
        ("review comment", record.review_comment or "-"),
        ("content hash", record.content_hash),
    ]
    for key, value in fields:
        click.echo(f"{key + ':':16}{one_line(value) or '-'}")
    click.echo("")
    click.echo(dump_prompt_yaml(record.prompt, record.content), nl=False)


def _show_prompt(registry: PromptRegistry, name: str, as_json: bool) -> None:
    with service_errors():
        summary = registry.show(name)
        versions = registry.versions(name)
    if as_json:
        _json(
            {
                **summary.as_dict(),
                "versions": [record.as_dict(content=False) for record in versions],
            }
        )
        return
    labels = ", ".join(f"{k}={v}" for k, v in summary.labels.items()) or "-"
    click.echo(f"prompt:   {summary.name}")
    click.echo(f"team:     {summary.team or '-'}")
    click.echo(f"created:  {format_time(summary.created_at)} by {summary.created_by}")
    click.echo(f"labels:   {labels}")
    click.echo("")
    rows = [
        [
            record.version,
            record.status,
            record.author,
            format_time(record.created_at),
            ", ".join(record.labels) or "-",
            one_line(record.message or "") or "-",
        ]
        for record in versions
    ]
    echo_table(["VERSION", "STATUS", "AUTHOR", "CREATED", "LABELS", "MESSAGE"], rows)


def _diff_name(resolved: Resolved) -> str:
    name = f"{resolved.name}@{resolved.version}"
    return f"{name} ({resolved.label})" if resolved.label else name


@prompt.command()
@click.argument("name")
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@config_option
def diff(name: str, old: str, new: str, config_path: Path | None) -> None:
    """Show what changed between two versions or labels of prompt NAME.

    OLD and NEW are versions (1.0.0) or labels (production); added lines
    start with + and removed lines with -.
    """
    registry, actor = _open(config_path)
    _require_reader(actor)
    with service_errors():
        registry.authorize_read(actor, name)
    before = _resolve(registry, name, old)
    after = _resolve(registry, name, new)
    text = diff_contents(
        before.content, after.content, _diff_name(before), _diff_name(after)
    )
    for line in text.splitlines():
        # click.echo drops the colours when stdout is not a terminal.
        if line.startswith(("+++", "---")):
            click.echo(click.style(line, bold=True))
        elif line.startswith("+"):
            click.echo(click.style(line, fg="green"))
        elif line.startswith("-"):
            click.echo(click.style(line, fg="red"))
        elif line.startswith("@@"):
            click.echo(click.style(line, fg="cyan"))
        else:
            click.echo(line)


def _review(
    name: str,
    version: str,
    comment: str | None,
    config_path: Path | None,
    *,
    approve: bool,
) -> None:
    registry, actor = _open(config_path)
    with service_errors():
        record = registry.review(actor, name, version, approve=approve, comment=comment)
    click.echo(f"{record.status} {record.reference}")


@prompt.command()
@click.argument("name")
@click.argument("version")
@click.option("--comment", default=None, help="A note kept with the review.")
@config_option
def approve(
    name: str, version: str, comment: str | None, config_path: Path | None
) -> None:
    """Approve a proposed version; its author cannot approve it."""
    _review(name, version, comment, config_path, approve=True)


@prompt.command()
@click.argument("name")
@click.argument("version")
@click.option("--comment", default=None, help="Why it was rejected.")
@config_option
def reject(
    name: str, version: str, comment: str | None, config_path: Path | None
) -> None:
    """Reject a proposed version; its author cannot reject it."""
    _review(name, version, comment, config_path, approve=False)


@prompt.command()
@click.argument("name")
@click.argument("label_name", metavar="LABEL")
@click.argument("version", required=False)
@click.option("--remove", is_flag=True, help="Remove LABEL instead of moving it.")
@config_option
def label(
    name: str,
    label_name: str,
    version: str | None,
    remove: bool,
    config_path: Path | None,
) -> None:
    """Point LABEL of prompt NAME at VERSION, or remove it with --remove.

    Protected labels (production by default) take approved versions only.
    """
    if remove and version is not None:
        raise click.UsageError("pass either VERSION or --remove, not both")
    if not remove and version is None:
        raise click.UsageError("missing VERSION; pass --remove to remove the label")
    registry, actor = _open(config_path)
    if remove:
        with service_errors():
            previous = registry.remove_label(actor, name, label_name)
        click.echo(f"removed {name}#{label_name} (was {previous})")
        return
    assert version is not None
    with service_errors():
        before, after = registry.set_label(actor, name, label_name, version)
    click.echo(f"{name}#{label_name}: {before or '-'} -> {after}")


@prompt.command()
@click.argument("name")
@click.option(
    "--label",
    "label_name",
    default="production",
    show_default=True,
    help="The label to move back.",
)
@config_option
def rollback(name: str, label_name: str, config_path: Path | None) -> None:
    """Move a label back to the version it pointed at before."""
    registry, actor = _open(config_path)
    with service_errors():
        before, after = registry.rollback(actor, name, label_name)
    click.echo(f"rolled back {name}#{label_name}: {before} -> {after}")


@prompt.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
@config_option
def history(name: str, as_json: bool, config_path: Path | None) -> None:
    """List proposals, reviews and label moves of prompt NAME, oldest first."""
    registry, actor = _open(config_path)
    _require_reader(actor)
    with service_errors():
        registry.authorize_read(actor, name)
        entries = registry.history(name)
    if as_json:
        _json([entry.as_dict() for entry in entries])
        return
    rows = [
        [
            format_time(entry.at),
            entry.actor,
            entry.action,
            entry.version or "-",
            one_line(entry.detail),
        ]
        for entry in entries
    ]
    echo_table(["TIME", "ACTOR", "ACTION", "VERSION", "DETAIL"], rows)


def _vars_json(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.ClickException(
            f"--vars-json is not valid JSON: {error.msg} at character {error.pos + 1}"
        ) from None
    if not isinstance(loaded, dict):
        raise click.ClickException(
            f"--vars-json must be a JSON object, got {json_type_name(loaded)}"
        )
    return loaded


def _var_pairs(pairs: tuple[str, ...]) -> list[tuple[str, str]]:
    parsed = []
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise click.ClickException(f"--var expects KEY=VALUE, got {pair!r}")
        parsed.append((key, value))
    return parsed


def _typed_value(content: PromptContent, key: str, text: str) -> Any:
    """Read a --var value as JSON when the prompt declares a non-string type.

    A value that is not JSON stays a string, so the renderer reports the
    type mismatch with the variable's name.
    """
    types = {variable.name: variable.type for variable in content.variables}
    if types.get(key, "string") == "string":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@prompt.command()
@click.argument("reference", metavar="NAME[@REF]")
@click.option(
    "--var",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help=(
        "A template variable. Values of variables declared with a type other "
        "than string are read as JSON (count=3, tags='[\"a\"]'). Repeatable."
    ),
)
@click.option(
    "--vars-json",
    default=None,
    metavar="JSON",
    help="Template variables as a JSON object; --var overrides its keys.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the messages as JSON.")
@config_option
def render(
    reference: str,
    pairs: tuple[str, ...],
    vars_json: str | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Render a prompt's messages with variables, to check a version.

    REF is a version or a label; a bare NAME renders NAME@production.
    """
    variables = _vars_json(vars_json)
    pairs_parsed = _var_pairs(pairs)
    parsed = _reference(reference)
    registry, actor = _open(config_path)
    _require_reader(actor)
    with service_errors():
        registry.authorize_read(actor, parsed.name)
        resolved = registry.resolve(parsed)
        for key, text in pairs_parsed:
            variables[key] = _typed_value(resolved.content, key, text)
        rendered = Renderer().render(resolved.content, variables)
    if as_json:
        _json(
            {
                "prompt": resolved.name,
                "version": resolved.version,
                "messages": rendered.messages,
                "settings": rendered.settings,
            }
        )
        return
    click.echo(f"rendered {resolved.name}@{resolved.version}", err=True)
    for message in rendered.messages:
        click.echo(f"[{message['role']}]")
        click.echo(message["content"])
