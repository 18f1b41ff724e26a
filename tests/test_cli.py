"""The ``keelway`` command: init, keys, traces, usage and its error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from keelway.store.database import open_database
from keelway.store.keys import hash_key
from keelway.store.models import ApiKey


class CLI:
    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder = folder
        self.env = {**os.environ, "KEELWAY_HOME": str(folder / "home")}
        self.config = folder / "keelway.yaml"
        self.config.write_text(yaml.safe_dump({"database": {"url": database_url}}))
        self.database_url = database_url

    def run(self, *args: str, config: bool = True) -> subprocess.CompletedProcess[str]:
        extra = ["--config", str(self.config)] if config else []
        return subprocess.run(
            [sys.executable, "-m", "keelway", *args, *extra],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> CLI:
    return CLI(tmp_path, database_url)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_init_writes_default_config(tmp_path: Path, cli: CLI) -> None:
    result = cli.run("init", "new.yaml", config=False)
    assert result.returncode == 0
    assert "gemma-3-270m" in (tmp_path / "new.yaml").read_text()


def test_init_refuses_to_overwrite(tmp_path: Path, cli: CLI) -> None:
    (tmp_path / "existing.yaml").write_text("server: {}\n")
    line = _one_line_error(cli.run("init", "existing.yaml", config=False))
    assert "already exists" in line
    assert (tmp_path / "existing.yaml").read_text() == "server: {}\n"


def test_key_shown_once_and_stored_hashed(cli: CLI) -> None:
    created = cli.run(
        "keys",
        "create",
        "--name",
        "cli-key",
        "--team",
        "search",
        "--models",
        "a,b",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)
    secret = record["key"]
    assert secret.startswith("kw-")
    assert record["models"] == ["a", "b"]

    listed = cli.run("keys", "list", "--json")
    assert secret not in listed.stdout
    assert json.loads(listed.stdout)[0]["name"] == "cli-key"

    database = open_database(cli.database_url)
    with database.session() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.name == "cli-key"))
    database.close()
    assert row is not None
    assert row.key_hash == hash_key(secret)
    assert secret not in row.key_hash


def test_duplicate_key_name_fails(cli: CLI) -> None:
    assert cli.run("keys", "create", "--name", "twice").returncode == 0
    line = _one_line_error(cli.run("keys", "create", "--name", "twice"))
    assert "already exists" in line


def test_revoke_marks_key(cli: CLI) -> None:
    cli.run("keys", "create", "--name", "old")
    assert cli.run("keys", "revoke", "old").returncode == 0
    listed = json.loads(cli.run("keys", "list", "--json").stdout)
    assert listed[0]["revoked_at"] is not None


def test_revoke_unknown_key_fails(cli: CLI) -> None:
    assert "no key named 'ghost'" in _one_line_error(cli.run("keys", "revoke", "ghost"))


def test_invalid_config_fails_in_one_line(tmp_path: Path, cli: CLI) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "models": {
                    "m": {
                        "deployments": [
                            {
                                "provider": "openai",
                                "model": "x",
                                "timeout": {"total": -1},
                            }
                        ]
                    }
                }
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "keelway", "serve", "--config", str(bad)],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = _one_line_error(result)
    assert "models.m.deployments[0].timeout.total" in line


def test_unknown_provider_names_the_field(tmp_path: Path, cli: CLI) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "database": {"url": cli.database_url},
                "models": {"m": {"deployments": [{"provider": "nope", "model": "x"}]}},
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "keelway", "serve", "--config", str(bad)],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = _one_line_error(result)
    assert "models.m.deployments[0].provider: unknown provider 'nope'" in line


def test_bad_database_url_fails(tmp_path: Path, cli: CLI) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"database": {"url": "not a url"}}))
    result = subprocess.run(
        [sys.executable, "-m", "keelway", "keys", "list", "--config", str(bad)],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "invalid database URL" in _one_line_error(result)


def test_bad_since_fails(cli: CLI) -> None:
    result = cli.run("traces", "list", "--since", "yesterday-ish")
    assert result.returncode == 2
    assert "duration like 30m" in result.stderr


def test_show_unknown_trace_fails(cli: CLI) -> None:
    assert "no trace with id 'missing'" in _one_line_error(
        cli.run("traces", "show", "missing")
    )


def test_usage_on_empty_store(cli: CLI) -> None:
    result = cli.run("usage", "--by", "user")
    assert result.returncode == 0
    assert result.stdout.startswith("USER")
