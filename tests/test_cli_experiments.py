"""``keelway experiment``: create, list, stop and bad input, on a real store."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from keelway.governance import AuditLog, Principal
from keelway.prompts.content import PromptContent
from keelway.prompts.registry import PromptRegistry
from keelway.store.database import open_database
from tests.cli_in_process import run_cli

ADMIN = Principal.local()
REVIEWER = Principal("reviewer", "user", ADMIN.grants)


@pytest.fixture(scope="module")
def config(
    tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("experiments-cli")
    path = folder / "keelway.yaml"
    path.write_text(yaml.safe_dump({"database": {"url": database_url}}))
    database = open_database(database_url)
    registry = PromptRegistry(database, AuditLog(database))
    for index, wording in enumerate(
        ("Answer.", "Answer briefly.", "Answer in French.")
    ):
        content = PromptContent.from_dict(
            {"messages": [{"role": "system", "content": wording}]}
        )
        if index == 0:
            registry.create(ADMIN, "tone", content)
        else:
            registry.propose(ADMIN, "tone", content)
    registry.review(REVIEWER, "tone", "1.0.0", approve=True)
    registry.review(REVIEWER, "tone", "1.1.0", approve=True)
    registry.review(REVIEWER, "tone", "1.2.0", approve=False)
    registry.set_label(ADMIN, "tone", "production", "1.0.0")
    database.close()
    yield path


def _run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        ["experiment", *args, "--config", str(config)],
        {"KEELWAY_HOME": str(config.parent)},
        check=False,
    )


def test_ab_create_list_stop(config: Path) -> None:
    created = _run(
        config,
        "create",
        "split",
        "--prompt",
        "tone@production",
        "--variant",
        "a=1.0.0:50",
        "--variant",
        "b=1.1.0:50",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)
    assert [v["version"] for v in record["variants"]] == ["1.0.0", "1.1.0"]
    listed = _run(config, "list")
    assert "split" in listed.stdout
    assert "running" in listed.stdout
    busy = _run(
        config,
        "create",
        "second",
        "--prompt",
        "tone@production",
        "--shadow",
        "1.1.0",
    )
    assert busy.returncode == 1
    assert "already runs" in busy.stderr
    stopped = _run(config, "stop", "split")
    assert stopped.returncode == 0, stopped.stderr
    again = _run(config, "stop", "split")
    assert again.returncode == 1
    assert "already stopped" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--variant", "a=1.0.0:60", "--variant", "b=1.1.0:50"), "100"),
        (("--variant", "a=1.0.0"), "NAME=VERSION:WEIGHT"),
        (("--variant", "a=1.0.0:50", "--variant", "b=9.9.9:50"), "no version 9.9.9"),
        (("--variant", "a=1.0.0:50", "--variant", "b=1.2.0:50"), "rejected"),
        (("--shadow", "1.1.0", "--variant", "a=1.0.0:100"), "either"),
        ((), "either"),
    ],
)
def test_create_rejects_bad_input(
    config: Path, args: tuple[str, ...], message: str
) -> None:
    result = _run(config, "create", "bad", "--prompt", "tone@production", *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_label_is_rejected(config: Path) -> None:
    result = _run(config, "create", "x", "--prompt", "tone@canary", "--shadow", "1.1.0")
    assert result.returncode == 1
    assert "no label 'canary'" in result.stderr


def test_report_of_unknown_experiment(config: Path) -> None:
    result = _run(config, "report", "missing")
    assert result.returncode == 1
    assert "experiment 'missing' not found" in result.stderr
