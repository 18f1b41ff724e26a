"""The ``keelway`` command: init, keys, traces, usage and its error messages."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from keelway.store.database import open_database
from keelway.store.keys import hash_key
from keelway.store.models import ApiKey
from keelway.store.traces import MIN_PREFIX
from tests.servers import KeelwayServer


class CLI:
    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder = folder
        self.env = {**os.environ, "KEELWAY_HOME": str(folder / "home")}
        self.config = folder / "keelway.yaml"
        self.config.write_text(yaml.safe_dump({"database": {"url": database_url}}))
        self.database_url = database_url

    def run(
        self, *args: str, config: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        extra = ["--config", str(self.config)] if config else []
        return subprocess.run(
            [sys.executable, "-m", "keelway", *args, *extra],
            env={**self.env, **(env or {})},
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
                "server": {"port": 0},
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


def _write_config(path: Path, data: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["int", "term"])
def test_serve_stops_cleanly_on_signal(
    tmp_path: Path, database_url: str, sig: signal.Signals
) -> None:
    server = KeelwayServer(tmp_path, database_url, {})
    try:
        server.start()
        code = server.stop(sig)
    finally:
        server.close()
    log = server.log()
    assert code == 0, log
    assert "Aborted!" not in log
    assert "gateway stopped" in log


def test_serve_warns_without_models(tmp_path: Path, database_url: str) -> None:
    server = KeelwayServer(tmp_path, database_url, {})
    try:
        server.start()
    finally:
        server.close()
    warnings = [
        json.loads(line)
        for line in server.log().splitlines()
        if line.startswith("{") and '"level":"warning"' in line
    ]
    assert any("no models" in entry["message"] for entry in warnings), server.log()


def test_serve_reports_busy_port(tmp_path: Path, cli: CLI) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _write_config(
            tmp_path / "busy.yaml",
            {
                "server": {"host": "127.0.0.1", "port": port},
                "database": {"url": cli.database_url},
            },
        )
        result = cli.run("serve", "--config", str(config), config=False)
    line = _one_line_error(result)
    assert line.startswith(f"Error: could not listen on 127.0.0.1:{port}: ")
    assert "address already in use" in line.lower()


@pytest.mark.parametrize("port", ["70000", "65536", "-1"])
def test_serve_rejects_port_out_of_range(cli: CLI, port: str) -> None:
    result = cli.run("serve", "--port", port)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "0<=x<=65535" in result.stderr


@pytest.mark.parametrize("command", [["serve"], ["traces", "list"], ["keys", "list"]])
def test_unknown_database_dialect_fails(
    tmp_path: Path, cli: CLI, command: list[str]
) -> None:
    config = _write_config(
        tmp_path / "dialect.yaml",
        {
            "server": {"port": 0},
            "database": {"url": "postgress://keelway:hunter2@127.0.0.1/keelway"},
        },
    )
    result = cli.run(*command, "--config", str(config), config=False)
    line = _one_line_error(result)
    assert result.returncode == 1
    assert "'postgress'" in line
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize("kind", ["below a file", "a file"])
def test_unusable_home_fails(tmp_path: Path, cli: CLI, kind: str) -> None:
    regular_file = tmp_path / "regular"
    regular_file.write_text("")
    home = regular_file / "home" if kind == "below a file" else regular_file
    config = _write_config(tmp_path / "no-database.yaml", {"server": {"port": 0}})
    result = cli.run(
        "traces",
        "list",
        "--config",
        str(config),
        config=False,
        env={"KEELWAY_HOME": str(home)},
    )
    line = _one_line_error(result)
    assert result.returncode == 1
    assert "KEELWAY_HOME" in line
    assert str(home) in line


def test_short_trace_prefix_fails(cli: CLI) -> None:
    line = _one_line_error(cli.run("traces", "show", "abc"))
    assert f"at least {MIN_PREFIX} characters" in line


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            {"models": {"m": {"deployments": [{"provider": "nope", "model": "x"}]}}},
            "models.m.deployments[0].provider: unknown provider 'nope'",
        ),
        (
            {
                "models": {
                    "m": {
                        "deployments": [
                            {
                                "provider": "openai",
                                "model": "x",
                                "api_key": "${KEELWAY_TEST_UNSET}",
                            }
                        ]
                    }
                }
            },
            "models.m.deployments[0].api_key: environment variable KEELWAY_TEST_UNSET",
        ),
    ],
    ids=["unknown provider", "unset variable"],
)
def test_config_error_names_the_file(
    tmp_path: Path,
    cli: CLI,
    data: dict[str, object],
    field: str,
) -> None:
    config = _write_config(
        tmp_path / "named.yaml",
        {"server": {"port": 0}, "database": {"url": cli.database_url}, **data},
    )
    environment = {k: v for k, v in cli.env.items() if k != "KEELWAY_TEST_UNSET"}
    result = subprocess.run(
        [sys.executable, "-m", "keelway", "serve", "--config", str(config)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert _one_line_error(result).startswith(f"Error: {config}: {field}")


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("server:\n  port: [4000\n", "line 3, column 1"),
        ("server: {host: \x07}\n", "character 16"),
    ],
    ids=["syntax", "control character"],
)
def test_yaml_error_is_one_line(
    tmp_path: Path, cli: CLI, text: str, position: str
) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(text)
    result = cli.run("traces", "list", "--config", str(config), config=False)
    line = _one_line_error(result)
    assert line.startswith(f"Error: {config}: invalid YAML at {position}: ")
    assert "<unicode string>" not in line


@pytest.mark.parametrize("command", [["traces", "list"], ["usage"]])
def test_since_help_lists_weeks(cli: CLI, command: list[str]) -> None:
    result = cli.run(*command, "--help", config=False)
    assert result.returncode == 0
    assert "2w" in result.stdout
