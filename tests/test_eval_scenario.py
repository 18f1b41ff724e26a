"""The release scenario on the local model: a regression is gated out.

It runs ``examples/python-reference/scenario.sh`` on the first 12 cases of
the golden set. The script keeps its own SQLite store, as the embedded
default does, so the PostgreSQL pass of the suite skips it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BACKEND

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "python-reference" / "scenario.sh"

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        BACKEND != "sqlite", reason="the scenario's store is SQLite by design"
    ),
]


def test_scenario_gates_out_regression(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SCENARIO_DIR": str(tmp_path),
        "SCENARIO_EVAL_ARGS": "--limit 12",
        "KEELWAY": str(Path(sys.executable).parent / "keelway"),
        "PYTHON": sys.executable,
    }
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "scenario passed" in output
    assert "Traceback" not in output
    summary = (tmp_path / "gate.md").read_text()
    assert "## Eval gate: FAILED" in summary
    assert "regressed" in summary
    assert "contains" in summary
    assert "python-answer@production is 1.0.0" in output
    assert "is gated and the newest eval gate of python-answer@2.0.0" in output
    junit = (tmp_path / "gate.xml").read_text()
    assert "<failure" in junit
