"""``keelway users`` and ``keelway audit``: bootstrap, user keys and role checks."""

from __future__ import annotations

import json
import os
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


class CLI:
    """Runs ``keelway`` commands in this process on this module's store."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder = folder
        self.runner = CliRunner()
        self.config = folder / "keelway.yaml"
        self.config.write_text(yaml.safe_dump({"database": {"url": database_url}}))
        self.home = str(folder / "home")

    def run(self, *args: str, key: str | None = None) -> Result:
        """Run as the user with ``key``, or with no key set at all."""
        # None unsets the variable, so a key in the outer environment is unused.
        env = {"KEELWAY_HOME": self.home, KEY_ENV: key}
        result = self.runner.invoke(
            keelway, [*args, "--config", str(self.config)], env=env
        )
        # A user error ends in SystemExit; anything else would be a traceback.
        if result.exception is not None and not isinstance(
            result.exception, SystemExit
        ):
            raise result.exception
        return result

    def json(self, *args: str, key: str | None = None) -> Any:
        result = self.run(*args, "--json", key=key)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)


@dataclass
class Team:
    """The module's store after the bootstrap: an admin, a viewer and an auditor."""

    cli: CLI
    bootstrap: Result
    keys: dict[str, str] = field(default_factory=dict)

    def create(self, name: str, *roles: str) -> str:
        options = [part for role in roles for part in ("--role", role)]
        created = self.cli.json(
            "users", "create", name, *options, key=self.keys["root"]
        )
        key: str = created["key"]
        self.keys[name] = key
        return key


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Team:
    cli = CLI(tmp_path_factory.mktemp("users"), database_url)
    # The store is empty, so this runs as the local bootstrap admin.
    bootstrap = cli.run("users", "create", "root", "--role", "admin", "--json")
    team = Team(cli, bootstrap)
    if bootstrap.exit_code == 0:
        team.keys["root"] = json.loads(bootstrap.stdout)["key"]
        team.create("vera", "viewer")
        team.create("audrey", "auditor")
    return team


def _one_line_error(result: Result | subprocess.CompletedProcess[str]) -> str:
    code = result.exit_code if isinstance(result, Result) else result.returncode
    assert code == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _user(team: Team, name: str) -> dict[str, Any]:
    listed = team.cli.json("users", "list", key=team.keys["root"])
    return next(user for user in listed if user["name"] == name)


def test_bootstrap_creates_first_admin(team: Team) -> None:
    assert team.bootstrap.exit_code == 0, team.bootstrap.stderr
    created = json.loads(team.bootstrap.stdout)
    assert created["roles"] == [{"role": "admin", "team": "*"}]
    assert created["key"].startswith("kwu-")
    assert created["created_by"] == "local-admin"


def test_command_without_key_fails(team: Team) -> None:
    line = _one_line_error(team.cli.run("users", "list"))
    assert line.startswith("Error: set KEELWAY_USER_KEY to your user key")
    assert "keelway users create" in line


def test_second_bootstrap_fails(team: Team) -> None:
    line = _one_line_error(
        team.cli.run("users", "create", "intruder", "--role", "admin")
    )
    assert "set KEELWAY_USER_KEY" in line
    names = {
        user["name"] for user in team.cli.json("users", "list", key=team.keys["root"])
    }
    assert "intruder" not in names


def test_invalid_key_fails(team: Team) -> None:
    secret = "kwu-not-a-real-key"
    result = team.cli.run("users", "list", key=secret)
    line = _one_line_error(result)
    assert line == "Error: KEELWAY_USER_KEY is not a valid user key (invalid user key)"
    assert secret not in result.stdout + result.stderr


def test_create_prints_key_once(team: Team) -> None:
    result = team.cli.run(
        "users", "create", "carl", "--role", "viewer", key=team.keys["root"]
    )
    assert result.exit_code == 0, result.stderr
    first, key = result.stdout.splitlines()
    assert first == "created user 'carl' (roles: viewer)"
    assert key.startswith("kwu-")
    assert "Store it now" in result.stderr
    assert key not in team.cli.run("users", "list", key=team.keys["root"]).stdout


def test_created_key_authenticates(team: Team) -> None:
    key = team.create("kim", "viewer")
    result = team.cli.run("users", "list", key=key)
    assert result.exit_code == 0, result.stderr


def test_list_json_parses(team: Team) -> None:
    listed = team.cli.json("users", "list", key=team.keys["vera"])
    by_name = {user["name"]: user for user in listed}
    assert by_name["vera"]["roles"] == [{"role": "viewer", "team": "*"}]
    assert by_name["audrey"]["roles"] == [{"role": "auditor", "team": "*"}]
    assert all("key" not in user for user in listed)


def test_list_table_has_columns(team: Team) -> None:
    result = team.cli.run("users", "list", key=team.keys["root"])
    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "ROLES", "CREATED", "DISABLED"]
    root = next(row for row in rows if row.startswith("root "))
    assert " admin " in root


def test_team_role_grant(team: Team) -> None:
    team.create("tess")
    result = team.cli.run(
        "users", "grant", "tess", "approver@payments", key=team.keys["root"]
    )
    assert result.exit_code == 0, result.stderr
    assert (
        result.stdout.strip()
        == "granted approver@payments to 'tess'; roles: approver@payments"
    )
    assert _user(team, "tess")["roles"] == [{"role": "approver", "team": "payments"}]


def test_create_with_team_role(team: Team) -> None:
    team.create("pat", "approver@payments", "viewer")
    roles = _user(team, "pat")["roles"]
    assert {"role": "approver", "team": "payments"} in roles
    assert {"role": "viewer", "team": "*"} in roles


def test_revoke_removes_role(team: Team) -> None:
    team.create("ron", "operator", "viewer")
    result = team.cli.run("users", "revoke", "ron", "operator", key=team.keys["root"])
    assert result.exit_code == 0, result.stderr
    assert _user(team, "ron")["roles"] == [{"role": "viewer", "team": "*"}]


def test_revoke_unheld_role_fails(team: Team) -> None:
    team.create("una", "viewer")
    line = _one_line_error(
        team.cli.run("users", "revoke", "una", "admin", key=team.keys["root"])
    )
    assert line == "Error: user 'una' does not hold role admin"


def test_unknown_role_fails(team: Team) -> None:
    line = _one_line_error(
        team.cli.run(
            "users", "create", "odd", "--role", "wizard", key=team.keys["root"]
        )
    )
    assert "unknown role 'wizard'" in line
    assert "prompt_engineer" in line


def test_empty_team_fails(team: Team) -> None:
    line = _one_line_error(
        team.cli.run("users", "grant", "vera", "approver@", key=team.keys["root"])
    )
    assert line == "Error: invalid team name ''"


def test_duplicate_user_fails(team: Team) -> None:
    line = _one_line_error(
        team.cli.run("users", "create", "vera", key=team.keys["root"])
    )
    assert line == "Error: a user named 'vera' already exists"


def test_grant_unknown_user_fails(team: Team) -> None:
    line = _one_line_error(
        team.cli.run("users", "grant", "nobody", "viewer", key=team.keys["root"])
    )
    assert line == "Error: no user named 'nobody'"


def test_viewer_cannot_grant(team: Team) -> None:
    line = _one_line_error(
        team.cli.run("users", "grant", "vera", "admin", key=team.keys["vera"])
    )
    assert "lacks permission users.manage" in line
    assert _user(team, "vera")["roles"] == [{"role": "viewer", "team": "*"}]


def test_grant_denial_is_audited(team: Team) -> None:
    denied = team.cli.run("users", "grant", "vera", "operator", key=team.keys["vera"])
    assert denied.exit_code == 1, denied.stderr
    events = team.cli.json(
        "audit",
        "list",
        "--actor",
        "vera",
        "--outcome",
        "denied",
        key=team.keys["audrey"],
    )
    grants = [e for e in events if e["action"] == "role.grant"]
    assert grants, events
    assert grants[0]["target"] == "role:operator"
    assert "lacks permission users.manage" in grants[0]["reason"]


def test_audit_lists_newest_first(team: Team) -> None:
    team.create("nina", "viewer")
    team.cli.run("users", "grant", "nina", "operator", key=team.keys["root"])
    events = team.cli.json("audit", "list", "--actor", "root", key=team.keys["audrey"])
    actions = [(e["action"], e["target"]) for e in events]
    assert actions.index(("role.grant", "user:nina")) < actions.index(
        ("user.create", "user:nina")
    )


def test_audit_limit_and_table(team: Team) -> None:
    result = team.cli.run("audit", "list", "--limit", "2", key=team.keys["audrey"])
    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "REASON"]
    assert len(rows) == 2


def test_viewer_cannot_read_audit(team: Team) -> None:
    line = _one_line_error(team.cli.run("audit", "list", key=team.keys["vera"]))
    assert "lacks permission audit.read" in line


def test_audit_denial_is_audited(team: Team) -> None:
    team.cli.run("audit", "list", key=team.keys["vera"])
    events = team.cli.json(
        "audit",
        "list",
        "--action",
        "audit.read",
        "--outcome",
        "denied",
        key=team.keys["audrey"],
    )
    assert any(event["actor"] == "vera" for event in events)


def test_bad_outcome_is_usage_error(team: Team) -> None:
    result = team.cli.run(
        "audit", "list", "--outcome", "maybe", key=team.keys["audrey"]
    )
    assert result.exit_code == 2
    assert "'maybe' is not one of 'allowed', 'denied'" in result.stderr
    assert "Traceback" not in result.stderr


def test_process_error_is_one_line(team: Team) -> None:
    """``python -m keelway`` itself, not only click's runner, prints one line."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keelway",
            "users",
            "list",
            "--config",
            str(team.cli.config),
        ],
        env={
            **{k: v for k, v in os.environ.items() if k != KEY_ENV},
            "KEELWAY_HOME": team.cli.home,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = _one_line_error(result)
    assert line.startswith("Error: set KEELWAY_USER_KEY to your user key")
