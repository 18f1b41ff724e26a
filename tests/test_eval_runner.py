"""The eval runner end to end: the CLI, an in-process gateway and a fake upstream.

The fake upstream's ``echo`` model answers with the messages it was sent,
so a prompt that puts the case's hint in its message passes ``contains``
and one that leaves it out fails, with no model in the loop.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xmlschema
import yaml
from sqlalchemy import select

from keelway.config import ConfigError, parse_config
from keelway.store.models import EvalRun, LabelMove
from tests.cli_in_process import run_cli
from tests.conftest import openai_models
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer

JUNIT_XSD = Path(__file__).parent / "fixtures" / "junit.xsd"
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


def _prompt(model: str, with_hint: bool) -> dict[str, Any]:
    content = "Say the word." + (" The word is {{ hint }}." if with_hint else "")
    variables: dict[str, Any] = {"question": {"type": "string"}}
    if with_hint:
        variables["hint"] = {"type": "string"}
    return {
        "name": "say",
        "variables": variables,
        "messages": [{"role": "user", "content": content + " {{ question }}"}],
        "model": {"group": model, "temperature": 0.0},
    }


def _dataset(count: int) -> dict[str, Any]:
    return {
        "name": "words",
        "evaluators": [{"kind": "contains", "tolerance": 0.05}],
        "cases": [
            {
                "id": f"word-{index}",
                "variables": {"question": f"Which word is number {index}?"}
                | {"hint": WORDS[index % len(WORDS)]},
                "expected": WORDS[index % len(WORDS)],
                "must_pass": index == 0,
            }
            for index in range(count)
        ],
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(record=False) as fake:
        yield fake


def _setup(
    folder: Path,
    database_url: str,
    upstream: FakeOpenAI,
    settings: dict[str, Any] | None = None,
    cases: int = 8,
) -> KeelwayServer:
    """Return a configured (not started) server, with prompts and dataset."""
    models = openai_models(upstream.base_url, ["echo", "slow"])
    models["judge"] = openai_models(upstream.base_url, ["scripted"])["scripted"]
    models["down"] = {
        "deployments": [
            {
                "provider": "openai",
                "model": "echo",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key": "${FAKE_OPENAI_KEY}",
            }
        ]
    }
    server = KeelwayServer(
        folder,
        database_url,
        models,
        settings=settings,
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    admin = json.loads(
        _cli(server, "users", "create", "admin", "--role", "admin", "--json").stdout
    )["key"]
    server.env["KEELWAY_USER_KEY"] = admin
    pat = json.loads(
        _cli(
            server, "users", "create", "pat", "--role", "prompt_engineer", "--json"
        ).stdout
    )["key"]
    server.admin_key = admin  # type: ignore[attr-defined]
    server.env["KEELWAY_USER_KEY"] = pat
    (folder / "good.yaml").write_text(yaml.safe_dump(_prompt("echo", True)))
    (folder / "bad.yaml").write_text(yaml.safe_dump(_prompt("echo", False)))
    (folder / "words.yaml").write_text(yaml.safe_dump(_dataset(cases)))
    _cli(server, "prompt", "create", "say", "--file", str(folder / "good.yaml"))
    _cli(server, "prompt", "propose", "say", "--file", str(folder / "bad.yaml"))
    _cli(server, "dataset", "import", "words", str(folder / "words.yaml"))
    return server


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    upstream: FakeOpenAI,
) -> Iterator[KeelwayServer]:
    server = _setup(
        tmp_path_factory.mktemp("evals"),
        database_url,
        upstream,
        settings={
            "prompts": {
                "gated_labels": ["production", "staging"],
                "gate_datasets": {"staging": "other"},
            }
        },
    )
    yield server
    server.close()


def _cli(
    server: KeelwayServer, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a keelway command in process against the server's config."""
    return run_cli([*args, "--config", str(server.config_path)], server.env, check)


def _as_admin(
    server: KeelwayServer, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command as the admin, who approves what pat wrote."""
    pat = server.env["KEELWAY_USER_KEY"]
    server.env["KEELWAY_USER_KEY"] = server.admin_key  # type: ignore[attr-defined]
    try:
        return _cli(server, *args, check=check)
    finally:
        server.env["KEELWAY_USER_KEY"] = pat


def _run(server: KeelwayServer, *args: str) -> subprocess.CompletedProcess[str]:
    return _cli(server, "eval", "run", *args, check=False)


def _json_run(server: KeelwayServer, *args: str) -> dict[str, Any]:
    done = _run(server, *args, "--json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_run_scores_every_case(setup: KeelwayServer) -> None:
    data = _json_run(setup, "--prompt", "say@1.0.0", "--dataset", "words")
    results = data["results"]
    assert len(results) == 8
    assert all(result["passed"] for result in results)
    assert data["run"]["status"] == "finished"
    assert data["run"]["dataset_version"] == 1
    assert data["run"]["prompt_version"] == "1.0.0"


def test_cached_rerun_gives_identical_scores(
    setup: KeelwayServer, upstream: FakeOpenAI
) -> None:
    first = _json_run(setup, "--prompt", "say@2.0.0", "--dataset", "words")
    calls = upstream.calls
    second = _json_run(setup, "--prompt", "say@2.0.0", "--dataset", "words")
    assert upstream.calls == calls
    assert all(result["cached"] for result in second["results"])
    assert [r["scores"] for r in first["results"]] == [
        r["scores"] for r in second["results"]
    ]
    assert [r["output"] for r in first["results"]] == [
        r["output"] for r in second["results"]
    ]


def test_no_cache_calls_again(setup: KeelwayServer, upstream: FakeOpenAI) -> None:
    _json_run(setup, "--prompt", "say@1.0.0", "--dataset", "words", "--limit", "2")
    calls = upstream.calls
    data = _json_run(
        setup, "--prompt", "say@1.0.0", "--dataset", "words", "--limit", "2",
        "--no-cache",
    )  # fmt: skip
    assert upstream.calls == calls + 2
    assert not any(result["cached"] for result in data["results"])


def test_failing_run_exits_one_with_junit(setup: KeelwayServer) -> None:
    report = setup.folder / "bad.xml"
    done = _run(
        setup, "--prompt", "say@2.0.0", "--dataset", "words", "--junit", str(report)
    )
    assert done.returncode == 1, done.stderr
    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    schema.validate(str(report))
    text = report.read_text()
    assert "<failure" in text
    assert "expected output to contain" in text
    assert 'name="word-0"' in text


def test_trials_report_std(setup: KeelwayServer) -> None:
    data = _json_run(
        setup, "--prompt", "say@1.0.0", "--dataset", "words", "--trials", "3",
        "--limit", "2",
    )  # fmt: skip
    assert len(data["results"]) == 6
    summary = data["run"]["summary"]["evaluators"]["contains"]
    assert summary["mean"] == 1.0
    assert summary["std"] == 0.0


def test_gate_fails_and_label_is_refused(setup: KeelwayServer) -> None:
    _as_admin(setup, "prompt", "approve", "say", "1.0.0")
    _as_admin(setup, "prompt", "approve", "say", "2.0.0")
    refused = _as_admin(
        setup, "prompt", "label", "say", "production", "1.0.0", check=False
    )
    assert refused.returncode == 1
    assert "needs a passing eval gate" in refused.stderr
    passed = _cli(setup, 
        "eval", "gate", "--candidate", "say@1.0.0", "--dataset", "words",
        "--min-pass-rate", "0.9", check=False,
    )  # fmt: skip
    assert passed.returncode == 0, passed.stdout + passed.stderr
    _as_admin(setup, "prompt", "label", "say", "production", "1.0.0")
    summary = setup.folder / "gate.md"
    failed = _cli(setup, 
        "eval", "gate", "--candidate", "say@2.0.0", "--baseline", "say@production",
        "--dataset", "words", "--summary", str(summary), check=False,
    )  # fmt: skip
    assert failed.returncode == 1, failed.stdout + failed.stderr
    text = summary.read_text()
    assert "FAILED" in text
    for index in range(8):
        assert f"word-{index}" in text
    assert "must-pass" in text.lower() or "must_pass" in text
    refused = _as_admin(
        setup, "prompt", "label", "say", "production", "2.0.0", check=False
    )
    assert refused.returncode == 1
    assert "failed" in refused.stderr
    shown = _cli(setup, "prompt", "show", "say", "--json")
    assert json.loads(shown.stdout)["labels"]["production"] == "1.0.0"
    with setup.database.session() as session:
        gated = session.scalar(
            select(LabelMove.eval_gate_id).where(LabelMove.label == "production")
        )
    assert gated is not None


def test_compare_lists_flipped_cases(setup: KeelwayServer) -> None:
    good = _json_run(setup, "--prompt", "say@1.0.0", "--dataset", "words")
    bad = _json_run(setup, "--prompt", "say@2.0.0", "--dataset", "words")
    done = _cli(
        setup, "eval", "compare", good["run"]["id"], bad["run"]["id"][:8], "--json"
    )
    data = json.loads(done.stdout)
    assert data["deltas"]["contains"]["delta"] == -1.0
    flipped = sorted(flip["case"] for flip in data["flips"])
    assert flipped == sorted(f"word-{index}" for index in range(8))


def test_provider_down_exits_two(setup: KeelwayServer) -> None:
    done = _run(
        setup, "--prompt", "say@1.0.0", "--dataset", "words", "--model", "down",
        "--retries", "1", "--limit", "2",
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    with setup.database.session() as session:
        status = session.scalar(
            select(EvalRun.status).order_by(EvalRun.started_at.desc()).limit(1)
        )
    assert status == "failed"


def test_stalled_provider_times_out(setup: KeelwayServer) -> None:
    started = time.monotonic()
    done = _run(
        setup, "--prompt", "say@1.0.0", "--dataset", "words", "--model", "slow",
        "--call-timeout", "0.5", "--retries", "1", "--limit", "2", "--json",
    )  # fmt: skip
    assert time.monotonic() - started < 30
    assert done.returncode == 2, done.stderr
    data = json.loads(done.stdout)
    assert all("timed out" in result["error"] for result in data["results"])


def test_gate_bad_arguments_exit_two(setup: KeelwayServer) -> None:
    done = _cli(setup, 
        "eval", "gate", "--candidate", "nope@1.0.0", "--dataset", "words",
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "nope" in done.stderr
    assert "Traceback" not in done.stderr


def test_pairwise_judge_prefers_better_run(
    setup: KeelwayServer, upstream: FakeOpenAI
) -> None:
    good = _json_run(setup, "--prompt", "say@1.0.0", "--dataset", "words")
    bad = _json_run(setup, "--prompt", "say@2.0.0", "--dataset", "words")
    # The run with the hint is right wherever the judge is shown it.
    upstream.script(
        {
            "<answer_a>\nuser: Say the word. The word is": (
                '{"winner": "A", "reason": "A names the word."}'
            ),
            "<answer_b>\nuser: Say the word. The word is": (
                '{"winner": "B", "reason": "B names the word."}'
            ),
        }
    )
    try:
        done = _cli(setup, 
            "eval", "compare", bad["run"]["id"], good["run"]["id"], "--judge",
            "--json",
        )  # fmt: skip
    finally:
        upstream.clear_script()
    pairs = json.loads(done.stdout)["pairwise"]
    assert pairs["counts"] == {"B": 8}
    assert pairs["verdicts"]["word-0"]["winner"] == "B"
    assert pairs["skipped"] == []


def _verdicts(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (score["status"], score["value"], score["passed"], score["reason"])
        for result in data["results"]
        for score in result["scores"]
    ]


def test_judge_replies_are_cached_and_costed(
    setup: KeelwayServer, upstream: FakeOpenAI
) -> None:
    judge = "{kind: llm_judge, model: judge}"
    upstream.script({"<answer>": '{"score": 0.8, "reason": "close enough"}'})
    try:
        first = _json_run(
            setup, "--prompt", "say@1.0.0", "--dataset", "words", "--limit", "3",
            "--evaluator", judge,
        )  # fmt: skip
        calls = upstream.calls
        second = _json_run(
            setup, "--prompt", "say@1.0.0", "--dataset", "words", "--limit", "3",
            "--evaluator", judge,
        )  # fmt: skip
    finally:
        upstream.clear_script()
    assert upstream.calls == calls
    scores = [result["scores"][0] for result in first["results"]]
    assert [score["value"] for score in scores] == [0.8, 0.8, 0.8]
    assert all(score["details"]["raw_output"].startswith("{") for score in scores)
    assert _verdicts(first) == _verdicts(second)
    summary = first["run"]["summary"]
    assert summary["evaluators"]["llm_judge"]["mean"] == pytest.approx(0.8)
    assert "judge_cost_usd" in summary


def test_unparseable_judge_is_an_error(
    setup: KeelwayServer, upstream: FakeOpenAI
) -> None:
    upstream.script({"<answer>": "I think it is fine, maybe 7/10?"})
    try:
        done = _run(
            setup, "--prompt", "say@1.0.0", "--dataset", "words", "--limit", "2",
            "--evaluator", "{kind: llm_judge, model: judge, name: picky}",
            "--no-cache", "--json",
        )  # fmt: skip
    finally:
        upstream.clear_script()
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    for result in data["results"]:
        score = result["scores"][0]
        assert score["status"] == "error"
        assert score["value"] is None
        assert "could not be parsed" in score["reason"]
        assert score["details"]["raw_output"] == "I think it is fine, maybe 7/10?"
    summary = data["run"]["summary"]["evaluators"]["picky"]
    assert summary["mean"] is None
    assert summary["errors"] == 2


def test_show_prints_figures(setup: KeelwayServer) -> None:
    data = _json_run(setup, "--prompt", "say@1.0.0", "--dataset", "words")
    done = _cli(setup, "eval", "show", data["run"]["id"])
    lines = done.stdout.splitlines()
    assert lines[2].startswith("8 passed, 0 failed, 0 errors (pass rate 100.0%")
    assert lines[3].split() == ["EVALUATOR", "MEAN", "PASS", "RATE", "SCORED", "ERRORS"]
    assert lines[4].split() == ["contains", "1.000", "100.0%", "8", "0"]


def test_prompt_without_case_variables_is_rejected(setup: KeelwayServer) -> None:
    static = {
        "name": "static",
        "messages": [{"role": "user", "content": "Say a word."}],
        "model": {"group": "echo"},
    }
    (setup.folder / "static.yaml").write_text(yaml.safe_dump(static))
    _cli(
        setup, "prompt", "create", "static", "--file", str(setup.folder / "static.yaml")
    )
    done = _run(setup, "--prompt", "static@1.0.0", "--dataset", "words")
    assert done.returncode == 2
    assert "declares none of the variables the cases give (hint, question)" in (
        done.stderr
    )


def test_traces_filter_by_inequality(setup: KeelwayServer) -> None:
    none = _cli(setup, 
        "dataset", "add-from-traces", "from-traces", "--filter", "use_case!=eval",
        check=False,
    )  # fmt: skip
    assert none.returncode == 1
    assert "no new trace matches" in none.stderr
    added = _cli(setup, 
        "dataset", "add-from-traces", "from-traces", "--filter", "use_case=eval",
        "--filter", "model!=judge", "--limit", "2",
    )  # fmt: skip
    assert "added 2 cases" in added.stdout


def test_gate_on_another_dataset_does_not_count(setup: KeelwayServer) -> None:
    _as_admin(setup, "prompt", "approve", "say", "1.0.0", check=False)
    passed = _cli(setup, 
        "eval", "gate", "--candidate", "say@1.0.0", "--dataset", "words",
        check=False,
    )  # fmt: skip
    assert passed.returncode == 0, passed.stdout + passed.stderr
    refused = _as_admin(
        setup, "prompt", "label", "say", "staging", "1.0.0", check=False
    )
    assert refused.returncode == 1
    assert "needs a passing eval gate on dataset 'other'" in refused.stderr


def test_gate_datasets_must_name_gated_labels() -> None:
    with pytest.raises(ConfigError, match="not in gated_labels"):
        parse_config({"prompts": {"gate_datasets": {"production": "words"}}})
