"""``keelway dataset``: import and export in every format, versions, cases
from real gateway traces, and who may write datasets.

Commands run in this process through click's runner, as users with roles,
on this module's store. The traces come from a real keelway server in front
of the fake upstream, whose ``echo`` model replies with the messages it received.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import func, select, update

from keelway.cli.main import cli as keelway
from keelway.store.models import Trace
from tests.conftest import openai_models
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer

KEY_ENV = "KEELWAY_USER_KEY"
GOLDEN = (
    Path(__file__).resolve().parent.parent
    / "src/keelway/evals/examples/python-reference.yaml"
)
FORMATS = ("yaml", "jsonl", "csv")
CONTENT_ID = re.compile(r"^case-[0-9a-f]{12}$")

# Cases in their stored form that every format can hold: the same variable
# names in every case, at most one context passage and no metadata.
CASES: list[dict[str, Any]] = [
    {
        "id": "capital",
        "variables": {
            "question": "What is the capital of France?",
            "audience": "children",
        },
        "expected": "Paris",
        "context": ["Paris is the capital and largest city of France."],
        "tags": ["geography", "easy"],
        "must_pass": True,
    },
    {
        "id": "refund-window",
        "variables": {
            "question": "How long do I have to ask for a refund?",
            "audience": "",
        },
        "expected": "30 days",
        "tags": ["policy"],
    },
    {
        "id": "odd-text",
        "variables": {
            "question": 'Commas, "quotes", \ttabs and  double  spaces ',
            "audience": "line one\r\nline two\u2028after a line separator, ünïcode",
        },
        "expected": "   leading spaces",
    },
    {
        "id": "chat",
        "variables": {"question": "", "audience": "staff"},
        "messages": [{"role": "user", "content": "Say hi, briefly."}],
    },
]
# A case without an id: it gets one made from its content.
NO_ID: dict[str, Any] = {
    "variables": {"question": "Which case has no id?", "audience": "testers"},
    "expected": "this one",
}


class CLI:
    """Runs ``keelway`` commands in this process on this module's store."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.runner = CliRunner()
        self.config = folder / "keelway.yaml"
        self.config.write_text(yaml.safe_dump({"database": {"url": database_url}}))
        self.home = str(folder / "home")
        self.keys: dict[str, str] = {}

    def run(self, *args: str, user: str | None = "eng") -> Result:
        """Run as ``user``, or with no key set at all when it is None."""
        key = None if user is None else self.keys[user]
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

    def ok(self, *args: str, user: str | None = "eng") -> str:
        result = self.run(*args, user=user)
        assert result.exit_code == 0, result.stderr
        return result.stdout

    def create_user(self, name: str, *roles: str, user: str | None = "root") -> None:
        options = [part for role in roles for part in ("--role", role)]
        created = self.ok("users", "create", name, *options, "--json", user=user)
        self.keys[name] = json.loads(created)["key"]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> CLI:
    cli = CLI(tmp_path_factory.mktemp("datasets"), database_url)
    # The store is empty, so the first admin needs no key.
    cli.create_user("root", "admin", user=None)
    cli.create_user("eng", "prompt_engineer")
    cli.create_user("vera", "viewer")
    cli.create_user("nobody")
    return cli


def one_error_line(result: Result) -> str:
    """Return the single stderr line of a failed command."""
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def write_cases(path: Path, cases: list[dict[str, Any]], **settings: Any) -> Path:
    """Write cases in the format the file's suffix names."""
    kind = path.suffix.lstrip(".")
    if kind == "yaml":
        document = {"name": path.stem, **settings, "cases": cases}
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    elif kind == "jsonl":
        text = "".join(orjson.dumps(case).decode() + "\n" for case in cases)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            ["id", "question", "audience", "expected", "context", "tags"]
            + ["must_pass", "messages"]
        )
        for case in cases:
            messages = case.get("messages")
            writer.writerow(
                [
                    case.get("id", ""),
                    case["variables"]["question"],
                    case["variables"]["audience"],
                    case.get("expected", ""),
                    (case.get("context") or [""])[0],
                    ", ".join(case.get("tags", [])),
                    "yes" if case.get("must_pass") else "",
                    json.dumps(messages) if messages else "",
                ]
            )
        text = buffer.getvalue()
    path.write_text(text, encoding="utf-8")
    return path


def stored_cases(cli: CLI, reference: str) -> list[dict[str, Any]]:
    """Return a dataset version's cases, read back through ``export --format jsonl``."""
    text = cli.ok("dataset", "export", reference, "--format", "jsonl")
    # Only \n ends a line: values may hold U+2028, which splitlines splits at.
    return [json.loads(line) for line in text.split("\n") if line]


def versions(cli: CLI, name: str) -> list[dict[str, Any]]:
    text = cli.ok("dataset", "versions", name, "--json")
    return [json.loads(line) for line in text.splitlines()]


def import_file(cli: CLI, name: str, path: Path, *options: str) -> str:
    return cli.ok("dataset", "import", name, str(path), *options)


def check_stored(stored: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Check cases against ``expected`` followed by the case without an id."""
    assert stored[:-1] == expected
    assert CONTENT_ID.match(stored[-1]["id"])
    assert {key: value for key, value in stored[-1].items() if key != "id"} == NO_ID


# Round trips


@pytest.mark.parametrize("file_format", FORMATS)
def test_import_export_round_trip(cli: CLI, tmp_path: Path, file_format: str) -> None:
    name = f"round-trip-{file_format}"
    source = write_cases(tmp_path / f"source.{file_format}", [*CASES, NO_ID])

    output = import_file(cli, name, source, "-m", "first cut")
    assert output == f"dataset {name}@1: 5 cases (new version)\n"
    check_stored(stored_cases(cli, name), CASES)

    # The same file again, and its export in the same format, change nothing.
    assert "(unchanged, no new version)" in import_file(cli, name, source)
    exported = tmp_path / f"exported.{file_format}"
    written = cli.ok(
        "dataset", "export", name, "--format", file_format, "-o", str(exported)
    )
    assert written == f"wrote {name}@1 (5 cases) to {exported}\n"
    first_text = exported.read_text(encoding="utf-8")
    output = import_file(cli, name, exported)
    assert output == f"dataset {name}@1: 5 cases (unchanged, no new version)\n"
    assert [record["version"] for record in versions(cli, name)] == [1]

    # A changed case makes version 2.
    changed = tmp_path / f"changed.{file_format}"
    changed.write_text(first_text.replace("30 days", "14 days"), encoding="utf-8")
    output = import_file(cli, name, changed, "-m", "shorter refund window")
    assert output == f"dataset {name}@2: 5 cases (new version)\n"
    records = versions(cli, name)
    assert [(r["version"], r["cases"], r["message"]) for r in records] == [
        (1, 5, "first cut"),
        (2, 5, "shorter refund window"),
    ]
    assert records[0]["content_hash"] != records[1]["content_hash"]
    table = cli.ok("dataset", "versions", name)
    assert "first cut" in table
    assert "shorter refund window" in table

    # Version 1 keeps the old content, in the format it was exported in.
    old = cli.ok("dataset", "export", f"{name}@1", "--format", file_format)
    assert old == first_text
    assert stored_cases(cli, f"{name}@2")[1]["expected"] == "14 days"
    assert stored_cases(cli, f"{name}@1")[1]["expected"] == "30 days"
    newest = {
        record["name"]: record["version"]
        for record in map(json.loads, cli.ok("dataset", "list", "--json").splitlines())
    }
    assert newest[name] == 2


def test_yaml_to_csv_round_trip(cli: CLI, tmp_path: Path) -> None:
    """Cases that CSV can hold survive YAML, then CSV, unchanged."""
    source = write_cases(tmp_path / "across.yaml", [*CASES, NO_ID])
    import_file(cli, "across", source)
    exported = tmp_path / "across.csv"
    cli.ok("dataset", "export", "across", "--format", "csv", "-o", str(exported))

    assert "(unchanged, no new version)" in import_file(cli, "across", exported)
    assert len(versions(cli, "across")) == 1


def test_content_ids_are_stable(cli: CLI, tmp_path: Path) -> None:
    first = write_cases(tmp_path / "ids.jsonl", [NO_ID])
    import_file(cli, "content-ids", first)
    [case] = stored_cases(cli, "content-ids")

    # Key order in the file does not change the id.
    reordered = {"expected": NO_ID["expected"], "variables": NO_ID["variables"]}
    second = write_cases(tmp_path / "ids-again.jsonl", [reordered])
    assert "(unchanged" in import_file(cli, "content-ids", second)
    assert stored_cases(cli, "content-ids")[0]["id"] == case["id"]


def test_golden_set_imports_and_round_trips(cli: CLI, tmp_path: Path) -> None:
    output = import_file(cli, "python-reference", GOLDEN)
    assert output == "dataset python-reference@1: 71 cases (new version)\n"
    original = yaml.safe_load(GOLDEN.read_text(encoding="utf-8"))

    exported = tmp_path / "golden.yaml"
    cli.ok("dataset", "export", "python-reference", "-o", str(exported))
    document = yaml.safe_load(exported.read_text(encoding="utf-8"))
    assert document["name"] == "python-reference"
    assert document["description"] == original["description"]
    assert document["cases"] == original["cases"]
    assert len(document["cases"]) == 71

    again = import_file(cli, "python-reference", exported)
    assert again == "dataset python-reference@1: 71 cases (unchanged, no new version)\n"
    as_jsonl = tmp_path / "golden.jsonl"
    cli.ok(
        "dataset", "export", "python-reference", "--format", "jsonl",
        "-o", str(as_jsonl),
    )  # fmt: skip
    assert "(unchanged" in import_file(cli, "python-reference", as_jsonl)
    # Its cases carry metadata, which CSV cannot hold.
    line = one_error_line(
        cli.run("dataset", "export", "python-reference", "--format", "csv")
    )
    assert "export it as YAML or JSONL" in line


# CSV


def test_csv_columns(cli: CLI, tmp_path: Path) -> None:
    source = tmp_path / "columns.csv"
    source.write_text(
        # A byte order mark, as spreadsheet programs write one.
        "\ufeffid,question,audience,expected,tags,must_pass,context,messages\n"
        'greet,Hello?,new users,Hi," greeting , smoke,,short ",yes,,\n'
        'chat,,,ok,,,"One passage.","[{""role"": ""user"", ""content"": ""Hi""}]"\n',
        encoding="utf-8",
    )
    import_file(cli, "csv-columns", source)

    greet, chat = stored_cases(cli, "csv-columns")
    assert greet == {
        "id": "greet",
        "variables": {"question": "Hello?", "audience": "new users"},
        "expected": "Hi",
        "tags": ["greeting", "smoke", "short"],
        "must_pass": True,
    }
    assert chat == {
        "id": "chat",
        "variables": {"question": "", "audience": ""},
        "messages": [{"role": "user", "content": "Hi"}],
        "expected": "ok",
        "context": ["One passage."],
    }


@pytest.mark.parametrize(
    ("cell", "must_pass"),
    [
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("Y", True),
        ("1", True),
        (" true ", True),
        ("false", False),
        ("No", False),
        ("n", False),
        ("0", False),
        ("", None),
    ],
)
def test_csv_must_pass(cli: CLI, tmp_path: Path, cell: str, must_pass: bool) -> None:
    source = tmp_path / "must-pass.csv"
    source.write_text(f"id,question,must_pass\nonly,Why?,{cell}\n", encoding="utf-8")
    name = f"must-pass-{len(cell)}-{cell.strip().lower() or 'empty'}"
    import_file(cli, name, source)

    [case] = stored_cases(cli, name)
    assert case.get("must_pass") == must_pass


def test_csv_must_pass_rejects_other_words(cli: CLI, tmp_path: Path) -> None:
    source = tmp_path / "maybe.csv"
    source.write_text("id,question,must_pass\nonly,Why?,maybe\n", encoding="utf-8")

    line = one_error_line(cli.run("dataset", "import", "maybe", str(source)))
    assert line == "Error: row 2: must_pass must be true or false, not 'maybe'"


def test_csv_cannot_hold_two_passages(cli: CLI, tmp_path: Path) -> None:
    case = {
        "id": "two-passages",
        "variables": {"question": "Which passage?"},
        "context": ["First passage.", "Second passage."],
    }
    import_file(cli, "two-passages", write_cases(tmp_path / "two.yaml", [case]))
    target = tmp_path / "two.csv"

    result = cli.run(
        "dataset", "export", "two-passages", "--format", "csv", "-o", str(target)
    )
    line = one_error_line(result)
    assert line == (
        "Error: case 'two-passages' has 2 context passages and a CSV cell holds "
        "one; export it as YAML or JSONL"
    )
    assert not target.exists()
    assert result.stdout == ""


# Cases from traces


PROMPT = {
    "name": "support-answer",
    "variables": {"question": "string"},
    "messages": [
        {"role": "system", "content": "Answer support questions."},
        {"role": "user", "content": "Question: {{ question }}"},
    ],
    "model": {"group": "echo", "max_tokens": 64},
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(record=False) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    upstream: FakeOpenAI,
    cli: CLI,
) -> Iterator[KeelwayServer]:
    folder = tmp_path_factory.mktemp("trace-server")
    prompt_file = folder / "support-answer.yaml"
    prompt_file.write_text(yaml.safe_dump(PROMPT, sort_keys=False))
    cli.ok("prompt", "create", "support-answer", "--file", str(prompt_file))
    gateway = KeelwayServer(
        folder,
        database_url,
        openai_models(upstream.base_url, ["echo"]),
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    gateway.start()
    yield gateway
    gateway.close()


def _chat(server: KeelwayServer, body: dict[str, Any]) -> str:
    """Send a chat request; return its trace id."""
    response = httpx.post(
        server.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {server.key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-keelway-trace-id"]


def _feedback(server: KeelwayServer, trace_id: str, thumbs: str) -> None:
    # Traces are written a moment after the response.
    for _ in range(100):
        response = httpx.post(
            server.url + "/v1/feedback",
            json={"trace_id": trace_id, "thumbs": thumbs},
            headers={"Authorization": f"Bearer {server.key}"},
            timeout=30,
        )
        if response.status_code != 404:
            break
        time.sleep(0.1)
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def traces(server: KeelwayServer) -> dict[str, str]:
    """Send four requests, one of them scored down; return their trace ids."""
    ids = {
        "prompt": _chat(
            server,
            {"prompt": "support-answer@1.0.0", "variables": {"question": "Refunds?"}},
        ),
        "prompt-with-messages": _chat(
            server,
            {
                "prompt": "support-answer@1.0.0",
                "variables": {"question": "Opening hours?"},
                "messages": [{"role": "user", "content": "Answer in one line."}],
            },
        ),
        "plain": _chat(
            server,
            {"model": "echo", "messages": [{"role": "user", "content": "Hello there"}]},
        ),
        "disliked": _chat(
            server,
            {
                "model": "echo",
                "messages": [
                    {"role": "system", "content": "Be terse."},
                    {"role": "user", "content": "Name a colour."},
                ],
            },
        ),
    }
    _feedback(server, ids["disliked"], "down")
    _feedback(server, ids["plain"], "up")
    with server.database.session() as session:
        for _ in range(100):
            stored = session.scalar(
                select(func.count()).where(Trace.id.in_(list(ids.values())))
            )
            if stored == len(ids):
                break
            time.sleep(0.1)
    assert stored == len(ids)
    return ids


def _by_trace(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {case["metadata"]["trace_id"]: case for case in cases}


def test_add_from_traces_by_prompt(cli: CLI, traces: dict[str, str]) -> None:
    output = cli.ok(
        "dataset", "add-from-traces", "from-prompt", "--filter", "prompt=support-answer"
    )
    assert output.startswith("dataset from-prompt@1: added 2 cases from traces")

    cases = _by_trace(stored_cases(cli, "from-prompt"))
    assert set(cases) == {traces["prompt"], traces["prompt-with-messages"]}
    first = cases[traces["prompt"]]
    assert first["id"] == f"trace-{traces['prompt']}"
    assert first["variables"] == {"question": "Refunds?"}
    assert "messages" not in first
    assert "expected" not in first
    assert first["tags"] == ["from-traces"]
    assert first["metadata"]["prompt"] == "support-answer"
    assert first["metadata"]["prompt_version"] == "1.0.0"
    assert first["metadata"]["model"] == "echo"
    second = cases[traces["prompt-with-messages"]]
    assert second["variables"] == {"question": "Opening hours?"}
    assert second["messages"] == [{"role": "user", "content": "Answer in one line."}]

    # Every matching trace is in the dataset now.
    again = cli.run(
        "dataset", "add-from-traces", "from-prompt", "--filter", "prompt=support-answer"
    )
    assert one_error_line(again).startswith("Error: no new trace matches")
    assert len(versions(cli, "from-prompt")) == 1


def test_add_from_traces_by_feedback(cli: CLI, traces: dict[str, str]) -> None:
    output = cli.ok(
        "dataset", "add-from-traces", "disliked", "--filter", "feedback=down",
        "-m", "thumbs down this week",
    )  # fmt: skip
    assert "added 1 cases" in output

    [case] = stored_cases(cli, "disliked")
    assert case["id"] == f"trace-{traces['disliked']}"
    assert case["metadata"]["trace_id"] == traces["disliked"]
    assert case["metadata"]["prompt"] is None
    assert case["variables"] == {}
    assert case["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Name a colour."},
    ]
    assert versions(cli, "disliked")[0]["message"] == "thumbs down this week"


def test_add_from_traces_expected_from_output(cli: CLI, traces: dict[str, str]) -> None:
    cli.ok(
        "dataset", "add-from-traces", "answered", "--filter", "feedback=up",
        "--expected-from-output",
    )  # fmt: skip

    [case] = stored_cases(cli, "answered")
    assert case["metadata"]["trace_id"] == traces["plain"]
    # The echo model replies with the messages it received.
    assert case["expected"] == "user: Hello there"


def test_add_from_traces_since(
    cli: CLI, server: KeelwayServer, traces: dict[str, str]
) -> None:
    # The plain request now looks two days old.
    with server.database.session() as session, session.begin():
        session.execute(
            update(Trace)
            .where(Trace.id == traces["plain"])
            .values(started_at=datetime.now(UTC) - timedelta(days=2))
        )

    cli.ok("dataset", "add-from-traces", "last-hour", "--filter", "since=1h")
    recent = set(_by_trace(stored_cases(cli, "last-hour")))
    assert recent == set(traces.values()) - {traces["plain"]}

    cli.ok(
        "dataset", "add-from-traces", "last-week", "--filter", "since=1w",
        "--filter", "model=echo",
    )  # fmt: skip
    assert set(_by_trace(stored_cases(cli, "last-week"))) == set(traces.values())


def test_add_from_traces_limit_reaches_older(cli: CLI, traces: dict[str, str]) -> None:
    for expected_count in (1, 2, 3, 4):
        cli.ok("dataset", "add-from-traces", "one-at-a-time", "--limit", "1")
        cases = stored_cases(cli, "one-at-a-time")
        assert len(cases) == expected_count
    assert set(_by_trace(cases)) == set(traces.values())
    result = cli.run("dataset", "add-from-traces", "one-at-a-time", "--limit", "1")
    assert one_error_line(result).startswith("Error: no new trace matches")
    assert len(versions(cli, "one-at-a-time")) == 4


# Permissions


def test_viewer_cannot_import(cli: CLI, tmp_path: Path) -> None:
    source = write_cases(tmp_path / "viewer.yaml", CASES)

    result = cli.run("dataset", "import", "viewer-set", str(source), user="vera")
    line = one_error_line(result)
    assert line.startswith("Error: vera (viewer) lacks permission datasets.write")
    missing = cli.run("dataset", "versions", "viewer-set")
    assert one_error_line(missing) == "Error: no dataset named 'viewer-set'"

    assert "(new version)" in cli.ok(
        "dataset", "import", "viewer-set", str(source), user="eng"
    )
    # Nor can a viewer change it, though any role may read it.
    changed = write_cases(tmp_path / "viewer-changed.yaml", CASES[:1])
    result = cli.run("dataset", "import", "viewer-set", str(changed), user="vera")
    assert "lacks permission datasets.write" in one_error_line(result)
    assert len(versions(cli, "viewer-set")) == 1
    assert len(stored_cases(cli, "viewer-set")) == len(CASES)
    assert "viewer-set" in cli.ok("dataset", "list", user="vera")
    assert cli.ok("dataset", "export", "viewer-set", user="vera").startswith(
        "name: viewer-set\n"
    )


def test_viewer_cannot_add_from_traces(cli: CLI, traces: dict[str, str]) -> None:
    result = cli.run(
        "dataset", "add-from-traces", "viewer-traces", "--filter", "feedback=down",
        user="vera",
    )  # fmt: skip
    assert "lacks permission datasets.write" in one_error_line(result)
    missing = cli.run("dataset", "versions", "viewer-traces")
    assert one_error_line(missing) == "Error: no dataset named 'viewer-traces'"


def test_user_without_role_cannot_read(cli: CLI, tmp_path: Path) -> None:
    import_file(cli, "private", write_cases(tmp_path / "private.yaml", CASES))

    for command in (["export", "private"], ["list"], ["versions", "private"]):
        line = one_error_line(cli.run("dataset", *command, user="nobody"))
        assert line == "Error: nobody has no role; any role may read datasets"
