"""An eval run stopped with Ctrl-C keeps what it finished and a rerun reuses it.

This module has a store of its own, since its setup creates the same users,
prompt and dataset as the runner tests.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from keelway.store.models import EvalResult, EvalRun
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_eval_runner import _json_run, _setup


@pytest.fixture(scope="module")
def delayed() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(record=False, delay=0.4) as fake:
        yield fake


def test_interrupted_run_resumes_from_cache(
    tmp_path: Path, database_url: str, delayed: FakeOpenAI
) -> None:
    server = _setup(tmp_path, database_url, delayed, cases=10)
    try:
        command = [
            sys.executable, "-m", "keelway", "eval", "run", "--prompt", "say@1.0.0",
            "--dataset", "words", "--concurrency", "1",
            "--config", str(server.config_path),
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            env=server.env,
            cwd=server.folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        finished = 0
        while time.monotonic() < deadline and finished < 3:
            time.sleep(0.2)
            with server.database.session() as session:
                finished = session.scalar(select(func.count(EvalResult.id))) or 0
        assert finished >= 3
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr
        assert "cases were stored and their outputs cached" in stderr
        with server.database.session() as session:
            run = session.scalars(select(EvalRun)).one()
            done_before = session.scalar(select(func.count(EvalResult.id)))
        assert run.status == "interrupted"
        assert done_before is not None and done_before < 10
        calls = delayed.calls
        data = _json_run(server, "--prompt", "say@1.0.0", "--dataset", "words")
        cached = sum(result["cached"] for result in data["results"])
        assert cached >= done_before
        assert delayed.calls - calls == 10 - cached
        assert all(result["passed"] for result in data["results"])
    finally:
        server.close()
