"""``keelway prompt``: review flow, labels, push and pull, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from keelway.cli.main import cli as keelway

KEY_ENV = "KEELWAY_USER_KEY"
FIXTURES = Path(__file__).parent / "fixtures" / "prompts"

SYSTEM = "You answer questions about {{ topic }}."
REWORDED = "You briefly answer questions about {{ topic }} for beginners."


class CLI:
    """Runs ``keelway`` commands in this process on this module's store."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder = folder
        self.runner = CliRunner()
        self.config = folder / "keelway.yaml"
        self.config.write_text(yaml.safe_dump({"database": {"url": database_url}}))
        self.home = str(folder / "home")

    def run(self, *args: str, key: str | None = None, color: bool = False) -> Result:
        """Run as the user with ``key``, or with no key set at all."""
        # None unsets the variable, so a key in the outer environment is unused.
        env = {"KEELWAY_HOME": self.home, KEY_ENV: key}
        result = self.runner.invoke(
            keelway, [*args, "--config", str(self.config)], env=env, color=color
        )
        # A user error ends in SystemExit; anything else would be a traceback.
        if result.exception is not None and not isinstance(
            result.exception, SystemExit
        ):
            raise result.exception
        return result


@dataclass
class Team:
    """The module's store with one user per role that the tests act as."""

    cli: CLI
    keys: dict[str, str] = field(default_factory=dict)

    def run(self, user: str, *args: str) -> Result:
        return self.cli.run(*args, key=self.keys[user])

    def ok(self, user: str, *args: str) -> str:
        """Run a command that must succeed and return its stdout."""
        result = self.run(user, *args)
        assert result.exit_code == 0, result.stderr
        return result.stdout

    def json(self, user: str, *args: str) -> Any:
        return json.loads(self.ok(user, *args, "--json"))

    def create_user(self, name: str, *roles: str) -> None:
        options = [part for role in roles for part in ("--role", role)]
        created = json.loads(
            self.ok("root", "users", "create", name, *options, "--json")
        )
        self.keys[name] = created["key"]


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Team:
    cli = CLI(tmp_path_factory.mktemp("prompts"), database_url)
    # The store is empty, so the first admin needs no key.
    bootstrap = cli.run("users", "create", "root", "--role", "admin", "--json")
    assert bootstrap.exit_code == 0, bootstrap.stderr
    team = Team(cli, {"root": json.loads(bootstrap.stdout)["key"]})
    team.create_user("eng", "prompt_engineer")
    team.create_user("app", "approver")
    team.create_user("vera", "viewer")
    team.create_user("audrey", "auditor")
    # Holds both roles, so only the rule against self-review stops them.
    team.create_user("solo", "prompt_engineer", "approver")
    team.create_user("nobody")
    return team


def _prompt_file(folder: Path, name: str, system: str = SYSTEM) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "name": name,
        "variables": {"topic": "string"},
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "Tell me something."},
        ],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _create(team: Team, tmp_path: Path, name: str, *, approve: bool = True) -> None:
    """Create NAME@1.0.0 as eng, approved by app unless ``approve`` is false."""
    team.ok(
        "eng", "prompt", "create", name, "--file", str(_prompt_file(tmp_path, name))
    )
    if approve:
        team.ok("app", "prompt", "approve", name, "1.0.0")


def _propose_reworded(team: Team, tmp_path: Path, name: str) -> str:
    path = _prompt_file(tmp_path / "v2", name, REWORDED)
    return team.ok("eng", "prompt", "propose", name, "--file", str(path))


def _one_line_error(result: Result | subprocess.CompletedProcess[str]) -> str:
    code = result.exit_code if isinstance(result, Result) else result.returncode
    assert code == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _denied(team: Team, actor: str, action: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = team.json(
        "audrey", "audit", "list", "--actor", actor, "--action", action,
        "--outcome", "denied",
    )  # fmt: skip
    return events


# The review flow


def test_review_flow_end_to_end(team: Team, tmp_path: Path) -> None:
    path = _prompt_file(tmp_path, "flow")
    created = team.ok("eng", "prompt", "create", "flow", "--file", str(path))
    assert created.strip() == "created flow@1.0.0 (proposed)"
    approved = team.ok("app", "prompt", "approve", "flow", "1.0.0", "--comment", "ok")
    assert approved.strip() == "approved flow@1.0.0"
    labelled = team.ok("app", "prompt", "label", "flow", "production", "1.0.0")
    assert labelled.strip() == "flow#production: - -> 1.0.0"

    proposed = _propose_reworded(team, tmp_path, "flow")
    assert proposed.strip() == (
        "proposed flow@1.1.0 (bump: minor: messages[0] wording changed)"
    )
    assert team.ok("app", "prompt", "approve", "flow", "1.1.0")
    moved = team.ok("app", "prompt", "label", "flow", "production", "1.1.0")
    assert moved.strip() == "flow#production: 1.0.0 -> 1.1.0"

    rolled = team.ok("app", "prompt", "rollback", "flow")
    assert rolled.strip() == "rolled back flow#production: 1.1.0 -> 1.0.0"
    production = team.json("vera", "prompt", "show", "flow@production")
    assert production["version"] == "1.0.0"

    history = team.json("vera", "prompt", "history", "flow")
    steps = [(entry["actor"], entry["action"], entry["version"]) for entry in history]
    assert steps == [
        ("eng", "propose", "1.0.0"),
        ("app", "approve", "1.0.0"),
        ("app", "set", "1.0.0"),
        ("eng", "propose", "1.1.0"),
        ("app", "approve", "1.1.0"),
        ("app", "set", "1.1.0"),
        ("app", "rollback", "1.0.0"),
    ]


def test_history_table_oldest_first(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "chronicle")
    _propose_reworded(team, tmp_path, "chronicle")
    header, *rows = team.ok("vera", "prompt", "history", "chronicle").splitlines()
    assert header.split() == ["TIME", "ACTOR", "ACTION", "VERSION", "DETAIL"]
    assert [row.split()[2:4] for row in rows] == [
        ["eng", "propose"],
        ["app", "approve"],
        ["eng", "propose"],
    ]


def test_author_cannot_approve_own(team: Team, tmp_path: Path) -> None:
    path = _prompt_file(tmp_path, "selfie")
    team.ok("solo", "prompt", "create", "selfie", "--file", str(path))
    line = _one_line_error(team.run("solo", "prompt", "approve", "selfie", "1.0.0"))
    assert "solo wrote selfie@1.0.0 and cannot review it" in line
    denials = _denied(team, "solo", "prompt.approve")
    assert [event["target"] for event in denials] == ["prompt:selfie@1.0.0"]
    status = team.json("vera", "prompt", "show", "selfie@1.0.0")["status"]
    assert status == "proposed"


def test_engineer_cannot_approve(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "unreviewed", approve=False)
    line = _one_line_error(team.run("eng", "prompt", "approve", "unreviewed", "1.0.0"))
    assert "lacks permission prompts.review" in line


def test_reject_blocks_labels(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "rejected", approve=False)
    rejected = team.ok("app", "prompt", "reject", "rejected", "1.0.0")
    assert rejected.strip() == "rejected rejected@1.0.0"
    line = _one_line_error(
        team.run("app", "prompt", "label", "rejected", "staging", "1.0.0")
    )
    assert line == (
        "Error: rejected@1.0.0 was rejected in review and cannot take a label"
    )


def test_second_review_fails(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "twice")
    line = _one_line_error(team.run("app", "prompt", "reject", "twice", "1.0.0"))
    assert line == "Error: twice@1.0.0 is already approved"


# Labels


def test_unapproved_production_label_fails(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "hasty", approve=False)
    line = _one_line_error(
        team.run("app", "prompt", "label", "hasty", "production", "1.0.0")
    )
    assert "label 'production' is protected" in line
    assert "hasty@1.0.0 is proposed" in line
    assert team.json("vera", "prompt", "show", "hasty")["labels"] == {}


def test_unprotected_label_takes_proposed(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "canary", approve=False)
    moved = team.ok("eng", "prompt", "label", "canary", "staging", "1.0.0")
    assert moved.strip() == "canary#staging: - -> 1.0.0"


def test_viewer_cannot_label(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "watched")
    line = _one_line_error(
        team.run("vera", "prompt", "label", "watched", "staging", "1.0.0")
    )
    assert "lacks permission prompts.label" in line
    assert _denied(team, "vera", "prompt.label")


def test_label_remove(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "removable")
    team.ok("app", "prompt", "label", "removable", "staging", "1.0.0")
    removed = team.ok("app", "prompt", "label", "removable", "staging", "--remove")
    assert removed.strip() == "removed removable#staging (was 1.0.0)"
    assert team.json("vera", "prompt", "show", "removable")["labels"] == {}


def test_label_version_and_remove_conflict(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "either")
    result = team.run(
        "app", "prompt", "label", "either", "staging", "1.0.0", "--remove"
    )
    assert result.exit_code == 2
    assert "pass either VERSION or --remove, not both" in result.stderr


def test_label_without_version_fails(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "neither")
    result = team.run("app", "prompt", "label", "neither", "staging")
    assert result.exit_code == 2
    assert "missing VERSION" in result.stderr


def test_version_like_label_fails(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "ambiguous")
    line = _one_line_error(
        team.run("app", "prompt", "label", "ambiguous", "v2", "1.0.0")
    )
    assert "invalid label 'v2'" in line
    assert "ambiguous with a version" in line


def test_rollback_without_history_fails(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "fresh")
    team.ok("app", "prompt", "label", "fresh", "production", "1.0.0")
    line = _one_line_error(team.run("app", "prompt", "rollback", "fresh"))
    assert "has no earlier version to roll back to" in line


# Proposals


def test_propose_unchanged_creates_nothing(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "steady")
    path = _prompt_file(tmp_path / "again", "steady")
    result = team.ok("eng", "prompt", "propose", "steady", "--file", str(path))
    assert result.strip() == "steady unchanged; no new version"
    versions = team.json("vera", "prompt", "show", "steady")["versions"]
    assert len(versions) == 1


def test_propose_raised_bump(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "raised")
    path = _prompt_file(tmp_path / "v2", "raised", REWORDED)
    result = team.ok(
        "eng", "prompt", "propose", "raised", "--file", str(path), "--bump", "major"
    )
    assert result.strip() == (
        "proposed raised@2.0.0 (bump: major as requested; the change needs "
        "minor: messages[0] wording changed)"
    )


def test_propose_lower_bump_fails(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "lowered")
    path = _prompt_file(tmp_path / "v2", "lowered", REWORDED)
    line = _one_line_error(
        team.run(
            "eng",
            "prompt",
            "propose",
            "lowered",
            "--file",
            str(path),
            "--bump",
            "patch",
        )
    )
    assert "cannot lower the bump from minor to patch" in line


def test_propose_unknown_bump_fails(team: Team, tmp_path: Path) -> None:
    path = _prompt_file(tmp_path, "bumpy")
    result = team.run(
        "eng", "prompt", "propose", "bumpy", "--file", str(path), "--bump", "huge"
    )
    assert result.exit_code == 2
    assert "'huge' is not one of 'major', 'minor', 'patch'" in result.stderr


def test_viewer_cannot_propose(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "guarded")
    path = _prompt_file(tmp_path / "v2", "guarded", REWORDED)
    line = _one_line_error(
        team.run("vera", "prompt", "propose", "guarded", "--file", str(path))
    )
    assert "lacks permission prompts.write" in line


# Push and pull


def test_push_pull_round_trip(team: Team, tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(FIXTURES, source)
    names = sorted(path.stem for path in FIXTURES.glob("*.yaml"))
    pushed = team.ok("eng", "prompt", "push", str(source), "-m", "import")
    assert (
        pushed.splitlines()[-1] == f"{len(names)} created, 0 new versions, 0 unchanged"
    )

    # The pull writes every prompt in the module's store, not only these.
    pulled_folder = tmp_path / "pulled"
    pulled = team.ok("vera", "prompt", "pull", str(pulled_folder))
    files = sorted(path.stem for path in pulled_folder.glob("*.yaml"))
    assert set(names) <= set(files)
    assert pulled.splitlines()[-1] == (
        f"{len(files)} prompts, {len(files)} files changed"
    )
    for name in names:
        pulled_bytes = (pulled_folder / f"{name}.yaml").read_bytes()
        assert pulled_bytes == (FIXTURES / f"{name}.yaml").read_bytes(), name

    again = team.ok("eng", "prompt", "push", str(pulled_folder))
    assert (
        again.splitlines()[-1] == f"0 created, 0 new versions, {len(files)} unchanged"
    )
    for name in names:
        versions = team.json("vera", "prompt", "show", name)["versions"]
        assert [v["version"] for v in versions] == ["1.0.0"], name

    repeated = team.ok("vera", "prompt", "pull", str(pulled_folder))
    assert repeated.strip() == f"{len(files)} prompts, 0 files changed"


def test_push_changed_file_proposes(team: Team, tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    _prompt_file(folder, "pushed-a")
    _prompt_file(folder, "pushed-b")
    team.ok("eng", "prompt", "push", str(folder))
    _prompt_file(folder, "pushed-b", REWORDED)
    result = team.ok("eng", "prompt", "push", str(folder))
    assert result.splitlines() == [
        "unchanged pushed-a",
        "proposed pushed-b@1.1.0",
        "0 created, 1 new version, 1 unchanged",
    ]


def test_pull_by_label(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "labelled-pull")
    team.ok("app", "prompt", "label", "labelled-pull", "pull-test", "1.0.0")
    folder = tmp_path / "by-label"
    result = team.ok("vera", "prompt", "pull", str(folder), "--label", "pull-test")
    assert result.splitlines() == [
        f"wrote {folder / 'labelled-pull.yaml'}",
        "1 prompt, 1 file changed",
    ]


def test_push_missing_folder_fails(team: Team, tmp_path: Path) -> None:
    line = _one_line_error(team.run("eng", "prompt", "push", str(tmp_path / "none")))
    assert "not found" in line


def test_push_invalid_file_fails(team: Team, tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("name: broken\nmessages: [\n")
    line = _one_line_error(team.run("eng", "prompt", "push", str(tmp_path)))
    assert line.startswith("Error: broken.yaml: invalid YAML")


def test_pull_without_roles_fails(team: Team, tmp_path: Path) -> None:
    line = _one_line_error(team.run("nobody", "prompt", "pull", str(tmp_path)))
    assert "nobody (no roles) lacks permission prompts.read" in line
    assert list(tmp_path.iterdir()) == []


# Reading


def test_list_shows_labels(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "listed")
    team.ok("app", "prompt", "label", "listed", "production", "1.0.0")
    team.ok("app", "prompt", "label", "listed", "staging", "1.0.0")
    listed = {p["name"]: p for p in team.json("vera", "prompt", "list")}
    assert listed["listed"]["labels"] == {"production": "1.0.0", "staging": "1.0.0"}
    row = next(
        line
        for line in team.ok("vera", "prompt", "list").splitlines()
        if line.startswith("listed ")
    )
    assert row.endswith("production=1.0.0, staging=1.0.0")


def test_show_lists_versions(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "shown")
    _propose_reworded(team, tmp_path, "shown")
    text = team.ok("vera", "prompt", "show", "shown")
    assert "VERSION  STATUS    AUTHOR" in text
    details = team.json("vera", "prompt", "show", "shown")
    assert [(v["version"], v["status"]) for v in details["versions"]] == [
        ("1.1.0", "proposed"),
        ("1.0.0", "approved"),
    ]


def test_show_version_prints_yaml(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "detailed")
    text = team.ok("vera", "prompt", "show", "detailed@1.0.0")
    yaml_text = text[text.index("name: detailed") :]
    assert yaml.safe_load(yaml_text)["messages"][0]["content"] == SYSTEM
    assert "reviewed by:    app" in text


def test_diff_shows_changed_lines(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "diffed")
    team.ok("app", "prompt", "label", "diffed", "production", "1.0.0")
    _propose_reworded(team, tmp_path, "diffed")
    lines = team.ok(
        "vera", "prompt", "diff", "diffed", "production", "1.1.0"
    ).splitlines()
    assert lines[0] == "--- diffed@1.0.0 (production)"
    assert lines[1] == "+++ diffed@1.1.0"
    assert f"-{SYSTEM}" in lines
    assert f"+{REWORDED}" in lines


def test_diff_colours_only_terminals(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "coloured")
    _propose_reworded(team, tmp_path, "coloured")
    args = ("prompt", "diff", "coloured", "1.0.0", "1.1.0")
    plain = team.cli.run(*args, key=team.keys["vera"])
    coloured = team.cli.run(*args, key=team.keys["vera"], color=True)
    assert "\x1b[" not in plain.stdout
    assert f"\x1b[32m+{REWORDED}" in coloured.stdout
    assert f"\x1b[31m-{SYSTEM}" in coloured.stdout


def test_render_with_variables(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "rendered")
    text = team.ok("vera", "prompt", "render", "rendered@1.0.0", "--var", "topic=tides")
    assert text.splitlines()[:2] == ["[system]", "You answer questions about tides."]
    rendered = team.json(
        "vera", "prompt", "render", "rendered@1", "--vars-json", '{"topic": "moons"}'
    )
    assert rendered["messages"][0]["content"] == "You answer questions about moons."


def test_render_types_var_values(team: Team, tmp_path: Path) -> None:
    document = {
        "name": "typed",
        "variables": {"count": "integer", "label": "string"},
        "messages": [{"role": "user", "content": "List {{ count + 1 }} {{ label }}."}],
    }
    path = tmp_path / "typed.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    team.ok("eng", "prompt", "create", "typed", "--file", str(path))
    rendered = team.json(
        "vera",
        "prompt",
        "render",
        "typed@1.0.0",
        "--var",
        "count=3",
        "--var",
        "label=7",
    )
    assert rendered["messages"][0]["content"] == "List 4 7."


def test_render_non_json_integer_fails(team: Team, tmp_path: Path) -> None:
    document = {
        "name": "typed-bad",
        "variables": {"count": "integer"},
        "messages": [{"role": "user", "content": "List {{ count }}."}],
    }
    path = tmp_path / "typed-bad.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    team.ok("eng", "prompt", "create", "typed-bad", "--file", str(path))
    line = _one_line_error(
        team.run("vera", "prompt", "render", "typed-bad@1.0.0", "--var", "count=ten")
    )
    assert line == "Error: variable 'count' must be an integer, got string"


def test_render_missing_variable_fails(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "needy")
    line = _one_line_error(team.run("vera", "prompt", "render", "needy@1.0.0"))
    assert line == "Error: missing variable 'topic'"


def test_render_bad_vars_json_fails(team: Team) -> None:
    result = team.run("vera", "prompt", "render", "any@1.0.0", "--vars-json", "[1]")
    line = _one_line_error(result)
    assert line == "Error: --vars-json must be a JSON object, got array"


# Bad input


def test_create_missing_file_fails(team: Team, tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    line = _one_line_error(
        team.run("eng", "prompt", "create", "ghost", "--file", str(missing))
    )
    assert line == f"Error: prompt file {missing} not found"


def test_create_invalid_yaml_fails(team: Team, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nmessages: [\n", encoding="utf-8")
    line = _one_line_error(
        team.run("eng", "prompt", "create", "bad", "--file", str(path))
    )
    assert line.startswith(f"Error: {path}: invalid YAML at line 3")


def test_create_invalid_prompt_fails(team: Team, tmp_path: Path) -> None:
    path = tmp_path / "undeclared.yaml"
    document = {
        "name": "undeclared",
        "messages": [{"role": "user", "content": "{{ x }}"}],
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    line = _one_line_error(
        team.run("eng", "prompt", "create", "undeclared", "--file", str(path))
    )
    assert "messages[0].content: uses undeclared variable 'x'" in line


def test_create_name_mismatch_fails(team: Team, tmp_path: Path) -> None:
    path = _prompt_file(tmp_path, "actual")
    line = _one_line_error(
        team.run("eng", "prompt", "create", "expected", "--file", str(path))
    )
    assert "defines prompt 'actual', not 'expected'" in line


def test_create_existing_name_fails(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "taken")
    path = _prompt_file(tmp_path / "again", "taken")
    line = _one_line_error(
        team.run("eng", "prompt", "create", "taken", "--file", str(path))
    )
    assert line == "Error: a prompt named 'taken' already exists"


@pytest.mark.parametrize(
    "args",
    [
        ("show", "unknown-prompt"),
        ("show", "unknown-prompt@1.0.0"),
        ("history", "unknown-prompt"),
        ("diff", "unknown-prompt", "1.0.0", "1.1.0"),
    ],
)
def test_unknown_prompt_fails(team: Team, args: tuple[str, ...]) -> None:
    line = _one_line_error(team.run("vera", "prompt", *args))
    assert line == "Error: prompt 'unknown-prompt' not found"


def test_unknown_version_fails(team: Team, tmp_path: Path) -> None:
    _create(team, tmp_path, "versioned")
    line = _one_line_error(team.run("vera", "prompt", "show", "versioned@3.0.0"))
    assert line == "Error: prompt 'versioned' has no version 3.0.0"


def test_invalid_reference_fails(team: Team) -> None:
    line = _one_line_error(team.run("vera", "prompt", "show", "a@b@c"))
    assert "contains more than one '@'" in line


def test_process_error_is_one_line(team: Team, tmp_path: Path) -> None:
    """``python -m keelway`` itself, not only click's runner, prints one line."""
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nmessages: {{\n", encoding="utf-8")
    command = [sys.executable, "-m", "keelway", "prompt", "create", "bad"]
    result = subprocess.run(
        [*command, "--file", str(path), "--config", str(team.cli.config)],
        env={**os.environ, "KEELWAY_HOME": team.cli.home, KEY_ENV: team.keys["eng"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = _one_line_error(result)
    assert "invalid YAML" in line
