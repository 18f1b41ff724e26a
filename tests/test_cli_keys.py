"""``keelway keys``: limits on keys, and the errors users run into."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli_in_process import run_cli

SERVED_MODEL = "served-model"


class CLI:
    """Runs ``keelway`` commands in process against a config of this test's own."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder = folder
        self.env = {**os.environ, "KEELWAY_HOME": str(folder / "home")}
        self.config = folder / "keelway.yaml"
        # No request is sent anywhere: keys commands only read the model names.
        deployment = {
            "provider": "openai",
            "model": SERVED_MODEL,
            "base_url": "http://127.0.0.1:9/v1",
            "api_key": "unused",
        }
        config = {
            "database": {"url": database_url},
            "models": {SERVED_MODEL: {"deployments": [deployment]}},
        }
        self.config.write_text(yaml.safe_dump(config))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli([*args, "--config", str(self.config)], self.env, check=False)

    def list_keys(self) -> list[dict[str, Any]]:
        listed = self.run("keys", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        keys: list[dict[str, Any]] = json.loads(listed.stdout)
        return keys


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> CLI:
    return CLI(tmp_path, database_url)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _names(cli: CLI) -> set[str]:
    return {key["name"] for key in cli.list_keys()}


def test_create_with_limits(cli: CLI) -> None:
    created = cli.run(
        "keys",
        "create",
        "--name",
        "limited",
        "--rpm",
        "60",
        "--tpm",
        "10000",
        "--budget",
        "12.5",
        "--budget-soft",
        "$10",
        "--budget-period",
        "day",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)
    assert record["rpm"] == 60
    assert record["tpm"] == 10000
    assert record["budget_usd"] == "12.5"
    assert record["budget_soft_usd"] == "10"
    assert record["budget_period"] == "day"
    listed = next(k for k in cli.list_keys() if k["name"] == "limited")
    assert listed["budget_usd"] == "12.5"
    assert listed["budget_period"] == "day"


def test_list_table_shows_limits(cli: CLI) -> None:
    created = cli.run(
        "keys", "create", "--name", "tabled", "--rpm", "7", "--budget", "0.005"
    )
    assert created.returncode == 0, created.stderr
    table = cli.run("keys", "list")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert "RPM" in header
    assert "BUDGET" in header
    row = next(r for r in rows if r.startswith("tabled "))
    assert " 7 " in row
    assert "$0.005/month" in row


def test_budget_defaults_to_monthly(cli: CLI) -> None:
    created = cli.run("keys", "create", "--name", "monthly", "--budget", "3", "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["budget_period"] == "month"


def test_soft_budget_above_hard_fails(cli: CLI) -> None:
    result = cli.run(
        "keys", "create", "--name", "upside", "--budget", "1", "--budget-soft", "2"
    )
    line = _one_line_error(result)
    assert "soft budget 2 USD exceeds the budget 1 USD" in line
    assert "upside" not in _names(cli)


def test_period_without_budget_fails(cli: CLI) -> None:
    line = _one_line_error(
        cli.run("keys", "create", "--name", "period", "--budget-period", "day")
    )
    assert "budget period 'day' needs a budget" in line


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--rpm", "0", "0 is not in the range 1<=x<=2147483647"),
        ("--tpm", "-5", "-5 is not in the range 1<=x<=2147483647"),
        ("--budget", "-1", "expected a positive USD amount, got '-1'"),
        ("--budget", "0", "expected a positive USD amount, got '0'"),
        ("--budget", "ten", "'ten' is not a USD amount"),
        ("--budget-soft", "nan", "expected a positive USD amount, got 'nan'"),
        ("--budget-period", "week", "'week' is not one of 'day', 'month', 'total'"),
    ],
)
def test_invalid_limit_values_fail(
    cli: CLI, option: str, value: str, message: str
) -> None:
    result = cli.run("keys", "create", "--name", "bad-limit", option, value)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_too_precise_budget_fails(cli: CLI) -> None:
    line = _one_line_error(
        cli.run("keys", "create", "--name", "precise", "--budget", "0.0000000001")
    )
    assert "more than 9 decimal places" in line


@pytest.mark.parametrize("name", ["", "   ", "\t"])
def test_empty_name_fails(cli: CLI, name: str) -> None:
    before = len(cli.list_keys())
    line = _one_line_error(cli.run("keys", "create", "--name", name))
    assert line == "Error: key name must not be empty or only whitespace"
    assert len(cli.list_keys()) == before


def test_name_is_stored_stripped(cli: CLI) -> None:
    assert cli.run("keys", "create", "--name", "  padded  ").returncode == 0
    assert "padded" in _names(cli)


def test_revoking_twice_fails(cli: CLI) -> None:
    assert cli.run("keys", "create", "--name", "twice-revoked").returncode == 0
    first = cli.run("keys", "revoke", "twice-revoked")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "revoked key 'twice-revoked'"
    line = _one_line_error(cli.run("keys", "revoke", "twice-revoked"))
    assert "key 'twice-revoked' was already revoked on " in line


def test_revoke_help_documents_exit_status(cli: CLI) -> None:
    result = cli.run("keys", "revoke", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "Exits with status 1, changing nothing" in text
    assert "already revoked" in text


def test_unserved_model_warns_but_creates(cli: CLI) -> None:
    result = cli.run(
        "keys",
        "create",
        "--name",
        "future",
        "--models",
        f"{SERVED_MODEL},gpt-9,gpt-10",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["models"] == [SERVED_MODEL, "gpt-9", "gpt-10"]
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "'gpt-9', 'gpt-10'" in warnings[0]
    assert SERVED_MODEL not in warnings[0]
    assert "future" in _names(cli)


def test_served_models_do_not_warn(cli: CLI) -> None:
    result = cli.run("keys", "create", "--name", "current", "--models", SERVED_MODEL)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
