"""Hostile input to ``keelway dataset`` and ``keelway eval`` arguments.

Every bad input must end with exit code 1 or 2 and one ``Error:`` line on
stderr that names the problem, never with a traceback. For exit code 2,
click prints its usage lines before that line. No bad input may change the
store. The ``eval`` commands fail before any model call, so no model is
configured.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from keelway.cli.main import cli as keelway
from keelway.evals.cases import MAX_CASES
from keelway.evals.rubrics import RUBRICS
from keelway.store.database import Database, open_database
from keelway.store.models import (
    Dataset,
    DatasetCase,
    DatasetVersion,
    EvalResult,
    EvalRun,
    Prompt,
    PromptVersion,
)

BASE = {
    "name": "base",
    "description": "Two cases every failed command must leave alone.",
    "evaluators": [{"kind": "contains"}],
    "cases": [
        {"id": "one", "variables": {"question": "One?"}, "expected": "one"},
        {"id": "two", "variables": {"question": "Two?"}, "expected": "two"},
    ],
}
PROMPT = {
    "name": "qa",
    "variables": {"question": "string"},
    "messages": [{"role": "user", "content": "Q: {{ question }}"}],
}
RUN = ("eval", "run", "--prompt", "qa@1.0.0", "--dataset", "base")
GATE = ("eval", "gate", "--candidate", "qa@1.0.0", "--dataset", "base")
LONG_ID = "x" * 10_000
# Maximum length of the error line for any of these inputs.
MAX_LINE = 600


class CLI:
    """Runs ``keelway`` commands in this process, as the local admin."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder = folder
        self.runner = CliRunner()
        self.config = folder / "keelway.yaml"
        self.config.write_text(yaml.safe_dump({"database": {"url": database_url}}))
        self.env = {
            "KEELWAY_HOME": str(folder / "home"),
            "KEELWAY_USER_KEY": None,
            "KEELWAY_API_KEY": None,
        }

    def run(self, *args: str) -> Result:
        result = self.runner.invoke(
            keelway, [*args, "--config", str(self.config)], env=self.env
        )
        # A user error ends in SystemExit; anything else would be a traceback.
        if result.exception is not None and not isinstance(
            result.exception, SystemExit
        ):
            raise result.exception
        return result

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> CLI:
    cli = CLI(tmp_path_factory.mktemp("hostile-evals"), database_url)
    base = cli.folder / "base.yaml"
    base.write_text(yaml.safe_dump(BASE, sort_keys=False))
    cli.ok("dataset", "import", "base", str(base))
    prompt = cli.folder / "qa.yaml"
    prompt.write_text(yaml.safe_dump(PROMPT, sort_keys=False))
    cli.ok("prompt", "create", "qa", "--file", str(prompt))
    return cli


def _state(database: Database) -> tuple[Any, ...]:
    with database.session() as session:
        return (
            session.execute(
                select(Dataset.name, Dataset.team, Dataset.description).order_by(
                    Dataset.name
                )
            ).all(),
            session.execute(
                select(
                    DatasetVersion.id,
                    DatasetVersion.content_hash,
                    DatasetVersion.message,
                ).order_by(DatasetVersion.id)
            ).all(),
            session.scalar(select(func.count()).select_from(DatasetCase)),
            session.scalar(select(func.count()).select_from(EvalRun)),
            session.scalar(select(func.count()).select_from(EvalResult)),
            # NOTE: `eval run` without evaluator options installs the shipped
            # rubric prompts before it checks its arguments, so those are not
            # counted.
            session.scalar(
                select(func.count())
                .select_from(PromptVersion)
                .join(Prompt, Prompt.id == PromptVersion.prompt_id)
                .where(Prompt.name.not_in(list(RUBRICS)))
            ),
        )


@pytest.fixture(scope="module")
def database(cli: CLI, database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.close()


@pytest.fixture(autouse=True)
def unchanged(database: Database) -> Iterator[None]:
    """Check that the test left datasets, versions, runs and prompts as they were."""
    before = _state(database)
    yield
    assert _state(database) == before


def rejected(result: Result, *codes: int) -> str:
    """Return the one error line of a failed command; check how it failed."""
    assert result.exit_code in (codes or (1,)), (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    # Usage errors (exit code 2) start with click's usage and help lines.
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not line.startswith(("Usage: ", "Try '"))
    ]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def _lines(count: int, line: Callable[[int], str], header: str = "") -> str:
    return header + "".join(line(index) + "\n" for index in range(count))


def _alias_bomb() -> str:
    """Return YAML whose nine levels of aliases expand to 10**9 strings."""
    lines = ["cases:", "  - variables:", "      a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        lines.append(
            f"      a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]"
        )
    return "\n".join(lines) + "\n"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _case(**fields: Any) -> str:
    """Return a JSONL file with one case: a question plus ``fields``."""
    return json.dumps({"variables": {"question": "Why?"}, **fields}) + "\n"


# (file name, content, what the error line contains). Every import is of
# the existing dataset "base", which must keep its one version.
BAD_FILES: list[tuple[str, str | bytes | Callable[[], str], str]] = [
    # Encodings and syntax
    ("latin1.yaml", b"cases:\n- variables: {q: caf\xe9}\n", "is not UTF-8 text"),
    ("latin1.csv", b"id,question\nx,caf\xe9\n", "is not UTF-8 text"),
    ("syntax.yaml", "cases: [", "invalid YAML at line 1, column 9"),
    ("tabs.yaml", "cases:\n\t- x\n", "invalid YAML at line 2, column 1"),
    ("raw-nul.yaml", "cases:\n- variables: {q: a\x00b}\n", "unacceptable character"),
    ("python-tag.yaml", "cases: !!python/object:os.system {}\n", "constructor"),
    ("duplicate-key.yaml", "cases:\n- variables: {q: a, q: b}\n", "duplicate key 'q'"),
    ("bad.jsonl", _case() + "{not json\n", "line 2: invalid JSON"),
    ("deep.jsonl", '{"variables": {"q": ' + _nested(2000) + "}}\n", "invalid JSON"),
    # Documents of the wrong shape
    ("empty.yaml", "", "a YAML dataset must be a mapping with a list of 'cases'"),
    ("scalar.yaml", "42\n", "must be a mapping with a list of 'cases'"),
    ("text.yaml", "just some text\n", "must be a mapping with a list of 'cases'"),
    ("cases-map.yaml", "cases: {q: 1}\n", "must be a mapping with a list of 'cases'"),
    ("no-cases.yaml", "cases: []\n", "contains no cases"),
    ("blank.jsonl", "\n\n", "contains no cases"),
    ("header-only.csv", "id,question\n", "contains no cases"),
    ("empty.csv", "", "the CSV file has no header row"),
    ("top-field.yaml", "cases: [{input: {q: x}}]\nanswers: 1\n", "'answers'"),
    ("scalar-case.yaml", "cases: [42]\n", "case 1: must be an object"),
    ("scalar-line.jsonl", "42\n", "case 1: must be an object"),
    # Cases that are not valid
    ("unknown-field.jsonl", _case(answer="x"), "unknown fields 'answer'"),
    ("no-input.jsonl", '{"expected": "x"}\n', "give variables or messages"),
    ("two-inputs.jsonl", '{"variables": {"q": 1}, "input": {"q": 2}}\n', "only one"),
    ("variables-list.jsonl", '{"variables": ["q"]}\n', "variables must be an object"),
    ("messages-map.jsonl", _case(messages={"role": "user"}), "must be a list"),
    ("role.jsonl", _case(messages=[{"role": "wizard"}]), "unknown message role"),
    ("no-role.jsonl", _case(messages=["hi"]), "an object with a role"),
    ("must-pass.jsonl", _case(must_pass="yes"), "must_pass must be true or false"),
    ("tags.jsonl", _case(tags=[1]), "tags must be a string"),
    ("context.jsonl", _case(context=5), "context must be a string or a list"),
    ("metadata.jsonl", _case(metadata=[1]), "metadata must be an object"),
    ("empty-name.jsonl", '{"variables": {"": "x"}}\n', "non-empty strings"),
    (
        "duplicate-ids.yaml",
        "cases:\n- {id: a, input: {q: 1}}\n- {id: a, input: {q: 2}}\n",
        "case 2: id 'a' is already used by case 1",
    ),  # fmt: skip
    (
        "duplicate-ids.csv",
        "id,q\na,1\na,2\n",
        "case 2: id 'a' is already used by case 1",
    ),
    ("same-content.jsonl", _case() + _case(), "case 2: id 'case-"),
    # Ids
    ("long-id.jsonl", _case(id=LONG_ID), "id must be a string of 1 to 200 characters"),
    (
        "long-id.csv",
        f"id,q\n{LONG_ID},x\n",
        "id must be a string of 1 to 200 characters",
    ),
    ("id-201.jsonl", _case(id="x" * 201), "id must be a string of 1 to 200"),
    ("id-number.jsonl", _case(id=7), "id must be a string"),
    ("id-empty.jsonl", _case(id=""), "id must be a string of 1 to 200"),
    ("id-newline.jsonl", _case(id="a\nb"), "without control characters"),
    # NUL characters anywhere
    ("nul-id.jsonl", _case(id="a\x00b"), "id must not contain NUL"),
    (
        "nul-value.jsonl",
        '{"variables": {"q": "a\\u0000b"}}\n',
        "variables must not contain NUL",
    ),  # fmt: skip
    (
        "nul-name.jsonl",
        '{"variables": {"a\\u0000": "b"}}\n',
        "variables must not contain NUL",
    ),  # fmt: skip
    (
        "nul-nested.jsonl",
        _case(metadata={"a": ["\x00"]}),
        "metadata must not contain NUL",
    ),  # fmt: skip
    ("nul-expected.jsonl", _case(expected="a\x00"), "expected must not contain NUL"),
    (
        "nul-message.jsonl",
        _case(messages=[{"role": "user", "content": "\x00"}]),
        "messages must not contain NUL",
    ),  # fmt: skip
    ("nul-tag.jsonl", _case(tags=["\x00"]), "tags must not contain NUL"),
    ("nul-context.jsonl", _case(context=["\x00"]), "context must not contain NUL"),
    (
        "nul-escape.yaml",
        'cases:\n- variables: {q: "a\\0b"}\n',
        "variables must not contain NUL",
    ),  # fmt: skip
    ("nul-cell.csv", "id,q\na,b\x00c\n", "variables must not contain NUL"),
    # Values that JSON cannot hold, and nesting
    ("date.yaml", "cases:\n- variables: {when: 2024-01-01}\n", "contains a date value"),
    ("set.yaml", "cases:\n- variables: {s: !!set {a: null}}\n", "contains a set value"),
    (
        "binary.yaml",
        "cases:\n- variables: {b: !!binary aGk=}\n",
        "contains a bytes value",
    ),
    ("nan.yaml", "cases:\n- variables: {n: .nan}\n", "contains nan"),
    ("inf.yaml", "cases:\n- {input: {q: x}, metadata: {n: -.inf}}\n", "contains -inf"),
    (
        "big-int.yaml",
        "cases:\n- variables: {n: 100000000000000000000}\n",
        "integer outside the 64-bit range",
    ),  # fmt: skip
    ("int-key.yaml", "cases:\n- variables: {n: {1: a}}\n", "has the key 1"),
    (
        "nested.yaml",
        f"cases:\n- variables: {{q: {_nested(40)}}}\n",
        "nested more than 32 levels",
    ),  # fmt: skip
    (
        "very-deep.yaml",
        f"cases: [{{variables: {{q: {_nested(20_000)}}}}}]\n",
        "nested too deeply",
    ),  # fmt: skip
    ("self.yaml", "cases:\n- variables: {a: &a [*a]}\n", "nested more than 32 levels"),
    ("alias-bomb.yaml", _alias_bomb, "more than 10000000 values"),
    # CSV structure
    ("cells.csv", "id,q\na,b,c\n", "row 2: more cells than header columns"),
    ("header.csv", "id,q,q\na,b,c\n", "repeats the columns 'q'"),
    ("messages.csv", "id,q,messages\na,b,[oops\n", "row 2: messages is not JSON"),
    ("must-pass.csv", "id,q,must_pass\na,b,maybe\n", "must_pass must be true or false"),
    ("empty-column.csv", "id,,q\na,b,c\n", "non-empty strings"),
    ("huge-cell.csv", lambda: "id,q\na," + "x" * 200_000 + "\n", "invalid CSV"),
    # Evaluators in a YAML dataset
    (
        "kind.yaml",
        "evaluators: [bogus]\ncases: [{input: {q: x}}]\n",
        "unknown evaluator kind 'bogus'",
    ),  # fmt: skip
    (
        "spec-list.yaml",
        "evaluators: [[1]]\ncases: [{input: {q: x}}]\n",
        "a kind or a mapping",
    ),  # fmt: skip
    (
        "no-kind.yaml",
        "evaluators: [{pattern: x}]\ncases: [{input: {q: x}}]\n",
        "needs a 'kind'",
    ),  # fmt: skip
    (
        "kind-list.yaml",
        "evaluators: [{kind: [1]}]\ncases: [{input: {q: x}}]\n",
        "needs a 'kind'",
    ),  # fmt: skip
    (
        "not-list.yaml",
        "evaluators: contains\ncases: [{input: {q: x}}]\n",
        "must be a list",
    ),  # fmt: skip
    (
        "regex.yaml",
        "evaluators: [{kind: regex, pattern: '('}]\ncases: [{input: {q: x}}]\n",
        "not a valid regular expression",
    ),  # fmt: skip
    (
        "setting.yaml",
        "evaluators: [{kind: contains, bogus: 1}]\ncases: [{input: {q: x}}]\n",
        "evaluators[0]: evaluator 'contains'",
    ),  # fmt: skip
    (
        "spec-date.yaml",
        "evaluators: [{kind: contains, when: 2024-01-01}]\ncases: [{input: {q: x}}]\n",
        "contains a date value",
    ),  # fmt: skip
    # Too many cases
    (
        "many.jsonl",
        lambda: _lines(MAX_CASES + 1, lambda i: f'{{"id":"c{i}","input":{{"q":"x"}}}}'),
        f"at most {MAX_CASES} cases",
    ),  # fmt: skip
    (
        "many.csv",
        lambda: _lines(MAX_CASES + 1, lambda i: f"c{i},x", "id,q\n"),
        f"at most {MAX_CASES} cases",
    ),  # fmt: skip
]


@pytest.mark.parametrize(
    ("file_name", "content", "problem"),
    BAD_FILES,
    ids=[row[0] for row in BAD_FILES],
)
def test_import_rejects_bad_file(
    cli: CLI,
    tmp_path: Path,
    file_name: str,
    content: str | bytes | Callable[[], str],
    problem: str,
) -> None:
    if callable(content):
        content = content()
    path = tmp_path / file_name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))

    line = rejected(cli.run("dataset", "import", "base", str(path)))
    assert problem in line
    assert len(line) < MAX_LINE


@pytest.mark.parametrize(
    ("path", "options", "code", "problem"),
    [
        ("missing.yaml", [], 1, "cannot read"),
        ("folder", ["--format", "yaml"], 2, "is a directory"),
        ("/dev/zero", ["--format", "jsonl"], 1, "is not a regular file"),
        ("/dev/null", ["--format", "yaml"], 1, "is not a regular file"),
        ("cases.txt", [], 1, "cannot tell the format of cases.txt"),
        ("cases.yaml", ["--format", "xml"], 2, "'xml' is not one of"),
    ],
)
def test_import_rejects_bad_path(
    cli: CLI,
    tmp_path: Path,
    path: str,
    options: list[str],
    code: int,
    problem: str,
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "cases.txt").write_text(yaml.safe_dump(BASE))
    (tmp_path / "cases.yaml").write_text(yaml.safe_dump(BASE))
    target = path if path.startswith("/") else str(tmp_path / path)

    line = rejected(cli.run("dataset", "import", "base", target, *options), code)
    assert problem in line


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["../x"], "invalid dataset name '../x'"),
        (["x y"], "invalid dataset name"),
        ([""], "invalid dataset name ''"),
        (["_x"], "invalid dataset name '_x'"),
        (["x@1"], "invalid dataset name 'x@1'"),
        (["a\x00b"], "invalid dataset name"),
        (["n" * 129], "invalid dataset name"),
        (["x" * 10_000], "invalid dataset name"),
        (["fresh", "--team", "   "], "team must be 1 to 200 characters"),
        (["fresh", "--team", "t" * 201], "team must be 1 to 200 characters"),
        (["fresh", "--team", "a\x00b"], "team must not contain NUL"),
        (["fresh", "-m", "a\x00b"], "message must not contain NUL"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_import_rejects_bad_arguments(
    cli: CLI, tmp_path: Path, arguments: list[str], problem: str
) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(BASE))
    name, *options = arguments

    line = rejected(cli.run("dataset", "import", name, str(path), *options))
    assert problem in line
    assert len(line) < MAX_LINE


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("x@0", "invalid dataset version '0' of x"),
        ("x@abc", "invalid dataset version 'abc'"),
        ("x@", "invalid dataset version ''"),
        ("x@-1", "invalid dataset version '-1'"),
        ("x@1.5", "invalid dataset version '1.5'"),
        ("x@\u00b3", "invalid dataset version"),
        ("x@1@2", "invalid dataset version '1@2'"),
        ("base@99999999999", "invalid dataset version '99999999999'"),
        ("base@" + "9" * 5000, "invalid dataset version"),
        ("../x", "invalid dataset name '../x'"),
        ("", "invalid dataset name ''"),
        ("missing", "no dataset named 'missing'"),
        ("base@99", "dataset 'base' has no version 99"),
    ],
)
def test_export_rejects_bad_reference(cli: CLI, reference: str, problem: str) -> None:
    line = rejected(cli.run("dataset", "export", reference))
    assert problem in line
    assert len(line) < MAX_LINE


def test_export_rejects_bad_output(cli: CLI, tmp_path: Path) -> None:
    line = rejected(cli.run("dataset", "export", "base", "-o", str(tmp_path)), 2)
    assert "is a directory" in line
    missing = tmp_path / "no" / "such" / "folder.yaml"
    line = rejected(cli.run("dataset", "export", "base", "-o", str(missing)))
    assert line == f"Error: cannot write {missing}: No such file or directory"
    line = rejected(cli.run("dataset", "export", "base", "--format", "xml"), 2)
    assert "'xml' is not one of" in line


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../x", "invalid dataset name '../x'"),
        ("base@1", "invalid dataset name 'base@1'"),
        ("missing", "no dataset named 'missing'"),
    ],
)
def test_versions_rejects_bad_name(cli: CLI, name: str, problem: str) -> None:
    assert problem in rejected(cli.run("dataset", "versions", name))


@pytest.mark.parametrize(
    ("options", "code", "problem"),
    [
        (["--filter", "prompt"], 1, "filter 'prompt' is not FIELD=VALUE"),
        (["--filter", "prompt="], 1, "filter 'prompt=' is not FIELD=VALUE"),
        (["--filter", "=qa"], 1, "unknown trace filter ''"),
        (["--filter", "bogus=1"], 1, "unknown trace filter 'bogus'; use one of"),
        (["--filter", "since=abc"], 1, "since must be a duration"),
        (["--filter", "since=10x"], 1, "since must be a duration"),
        (["--filter", "since=-1h"], 1, "since must be a duration"),
        (["--filter", "since=9999999999w"], 1, "since must be a duration"),
        (["--filter", "since=999999999w"], 1, "reaches before the year 1"),
        (["--filter", "feedback=meh"], 1, "feedback must be up or down"),
        (["--filter", "prompt=a\x00b"], 1, "must not contain NUL"),
        (["--filter", "prompt=qa"], 1, "no new trace matches"),
        (["--limit", "0"], 2, "--limit"),
        (["--limit", "abc"], 2, "--limit"),
        (["--limit", "10001"], 2, "--limit"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_add_from_traces_rejects_bad_options(
    cli: CLI, options: list[str], code: int, problem: str
) -> None:
    result = cli.run("dataset", "add-from-traces", "from-traces", *options)
    assert problem in rejected(result, code)


def test_add_from_traces_rejects_bad_name(cli: CLI) -> None:
    result = cli.run("dataset", "add-from-traces", "../x", "--filter", "prompt=qa")
    assert "invalid dataset name '../x'" in rejected(result)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["--prompt", "nope@1.0.0"], "prompt 'nope' not found"),
        (["--prompt", "../x"], "invalid prompt name"),
        (["--prompt", ""], "empty prompt reference"),
        (["--prompt", "qa@9.9.9"], "prompt 'qa' has no version 9.9.9"),
        (["--dataset", "x@0"], "invalid dataset version '0' of x"),
        (["--dataset", "x@abc"], "invalid dataset version 'abc'"),
        (["--dataset", "../x"], "invalid dataset name '../x'"),
        (["--dataset", "missing"], "no dataset named 'missing'"),
        (["--dataset", "base@99"], "dataset 'base' has no version 99"),
        (["--evaluators", "bogus"], "unknown evaluator kind 'bogus'"),
        (["--evaluators", "contains,bogus"], "unknown evaluator kind 'bogus'"),
        (["--evaluator", "[1, 2]"], "unknown evaluator kind '[1, 2]'"),
        (["--evaluator", "{kind: regex}"], "regex: pattern is required"),
        (["--evaluator", "{kind: regex, pattern: '('}"], "not a valid regular"),
        (["--evaluator", "{kind: contains, bogus: 1}"], "evaluator 'contains'"),
        (["--evaluator", "contains", "--evaluator", "contains"], "used twice"),
        (["--tag", "no-such-tag"], "no case of base@1 matches the filter"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_run_rejects_bad_arguments(cli: CLI, options: list[str], problem: str) -> None:
    # Later options replace the defaults in RUN.
    result = cli.run(*RUN, *options)
    line = rejected(result, 2)
    assert problem in line
    assert len(line) < MAX_LINE


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["--evaluator", "{kind:"], "is not a YAML mapping"),
        (["--evaluator", "{a: 1}"], "must be a mapping with a 'kind'"),
        (["--trials", "0"], "--trials"),
        (["--concurrency", "1000"], "--concurrency"),
        (["--case-timeout", "0"], "--case-timeout"),
        (["--limit", "0"], "--limit"),
        (["--retries", "-1"], "--retries"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_run_rejects_bad_options(cli: CLI, options: list[str], problem: str) -> None:
    assert problem in rejected(cli.run(*RUN, *options), 2)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read"),
        (b"- contains\n- \xff\n", "cannot read"),
        (b"evaluators: [\n", "cannot read"),
        (b"42\n", "must hold a list of evaluator specs"),
        (b"- [1]\n", "must hold a list of evaluator specs"),
        (b"evaluators: {kind: contains}\n", "must hold a list of evaluator specs"),
        (b"- bogus\n", "unknown evaluator kind 'bogus'"),
    ],
)
def test_run_rejects_bad_evaluators_file(
    cli: CLI, tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "evaluators.yaml"
    if content is not None:
        path.write_bytes(content)

    result = cli.run(*RUN, "--evaluators-file", str(path))
    assert problem in rejected(result, 2)


def test_run_rejects_evaluators_file_directory(cli: CLI, tmp_path: Path) -> None:
    result = cli.run(*RUN, "--evaluators-file", str(tmp_path))
    assert "is a directory" in rejected(result, 2)


@pytest.mark.parametrize(
    "tolerance",
    ["x", "x=", "=0.1", "x=2", "x=-0.1", "x=abc", "x=nan", "x=inf", "x=1e999"],
)
def test_gate_rejects_bad_tolerance(cli: CLI, tolerance: str) -> None:
    result = cli.run(*GATE, "--tolerance", tolerance)
    line = rejected(result, 2)
    assert line == (
        f"Error: --tolerance {tolerance!r} is not EVALUATOR=NUMBER with a number "
        "from 0 to 1"
    )


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["--candidate", "nope@1.0.0"], "prompt 'nope' not found"),
        (["--dataset", "x@0"], "invalid dataset version '0' of x"),
        (["--dataset", "../x"], "invalid dataset name '../x'"),
        (["--evaluators", "bogus"], "unknown evaluator kind 'bogus'"),
        (["--default-tolerance", "2"], "--default-tolerance"),
        (["--min-pass-rate", "-1"], "--min-pass-rate"),
        (["--max-error-rate", "1.5"], "--max-error-rate"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_gate_rejects_bad_arguments(cli: CLI, options: list[str], problem: str) -> None:
    assert problem in rejected(cli.run(*GATE, *options), 2)


@pytest.mark.parametrize(
    ("run_id", "problem"),
    [
        ("abc", "no run 'abc'; give the id or 6+ of it"),
        ("", "no run ''; give the id or 6+ of it"),
        ("abcdef", "no run 'abcdef'"),
        ("0123456789abcdef0123456789abcdef", "no run '0123456789abcdef"),
        ("%%%%%%", "no run '%%%%%%'"),
        ("______", "no run '______'"),
        ("a\x00bcdef", "invalid run id"),
        ("../../etc/passwd", "no run '../../etc/passwd'"),
    ],
)
def test_show_and_compare_reject_unknown_runs(
    cli: CLI, run_id: str, problem: str
) -> None:
    assert problem in rejected(cli.run("eval", "show", run_id))
    assert problem in rejected(cli.run("eval", "compare", run_id, "abcdef0123"))


def test_show_rejects_long_run_id(cli: CLI) -> None:
    assert "invalid run id" in rejected(cli.run("eval", "show", LONG_ID))


def test_list_rejects_bad_limit(cli: CLI) -> None:
    assert "--limit" in rejected(cli.run("eval", "list", "--limit", "0"), 2)
