"""Reading and writing eval cases: validation and the JSONL, CSV and YAML forms.

A case in its stored form is a JSON object::

    {"id": "def-keyword", "variables": {"question": "..."},
     "messages": [...], "expected": "def", "context": ["..."],
     "tags": ["functions"], "must_pass": true, "metadata": {...}}

Only ``variables`` (or ``messages``) is required. ``input`` and ``vars`` are
accepted as other names of ``variables``, as other eval tools call it. A
case without ``id`` gets one from the hash of its content, so the same case
keeps its id across imports.

A YAML file holds a whole dataset: ``name``, ``description``, default
``evaluators`` and ``cases``. A JSONL file holds one case per line. A CSV
file has a header row: the columns ``id``, ``expected``, ``context``,
``tags`` (comma-separated), ``must_pass`` and ``messages`` (JSON) fill
those fields, an empty cell leaves its field unset, and every other column
is a variable.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from keelway.evals.base import Case

MAX_KEY = 200
MAX_CASES = 100_000
# Bounds on the JSON values of a dataset: nesting depth, and the number of
# values once YAML aliases are expanded. Both keep a hostile file from
# exhausting memory or the JSON encoder's recursion limit.
MAX_DEPTH = 32
MAX_VALUES = 10_000_000
# The integer range orjson and the store's JSON columns can encode.
MIN_INT, MAX_INT = -(2**63), 2**64 - 1
# How much of an id, key or value an error message repeats.
SHOWN = 60
FORMATS = ("yaml", "jsonl", "csv")
KEY_PATTERN = re.compile(r"^[^\x00-\x1f]{1,200}$")
CASE_FIELDS = frozenset(
    {"id", "variables", "messages", "expected", "context", "tags", "must_pass"}
    | {"metadata", "input", "vars"}
)
YAML_FIELDS = frozenset({"name", "description", "evaluators", "cases"})
CSV_FIELDS = ("id", "expected", "context", "tags", "must_pass", "messages")
TRUE_WORDS = frozenset({"1", "true", "yes", "y"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "n"})


class CaseError(ValueError):
    """A case or a dataset file that is not valid; the message names the place."""


@dataclass(slots=True)
class DatasetFile:
    """The contents of a dataset file: cases and, from YAML, dataset settings."""

    cases: list[dict[str, Any]]
    name: str | None = None
    description: str | None = None
    evaluators: list[dict[str, Any]] | None = None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _where(position: int, key: str | None) -> str:
    return f"case {position + 1}" + (f" ({_shown(key)})" if key else "")


class _ValueCheck:
    """Checks that values are JSON data without NUL characters, within bounds.

    Containers are measured once, by identity. The check so takes time in
    proportion to the parsed document, even where YAML aliases repeat a
    container many times. ``total`` counts the values with aliases expanded.
    """

    def __init__(self) -> None:
        self.total = 0
        # id of a list or dict: (values in it, expanded; nesting height).
        self.measured: dict[int, tuple[int, int]] = {}

    def check(self, value: Any, where: str, name: str) -> None:
        count, _ = self._measure(value, where, name, 0)
        self.total += count
        if self.total > MAX_VALUES:
            raise CaseError(
                f"{where}: the dataset has more than {MAX_VALUES} values, counting "
                "each use of a YAML alias"
            )

    def _measure(
        self, value: Any, where: str, name: str, depth: int
    ) -> tuple[int, int]:
        if isinstance(value, str):
            if "\x00" in value:
                raise CaseError(f"{where}: {name} must not contain NUL characters")
            return 1, 0
        if value is None or isinstance(value, bool):
            return 1, 0
        if isinstance(value, int):
            if not MIN_INT <= value <= MAX_INT:
                raise CaseError(
                    f"{where}: {name} contains an integer outside the 64-bit range"
                )
            return 1, 0
        if isinstance(value, float):
            if not math.isfinite(value):
                raise CaseError(
                    f"{where}: {name} contains {value}, which is not a valid JSON "
                    "number"
                )
            return 1, 0
        if not isinstance(value, list | dict):
            raise CaseError(
                f"{where}: {name} contains a {type(value).__name__} value; use "
                "strings, numbers, booleans, null, lists and mappings, and quote "
                "a date to keep it as text"
            )
        known = self.measured.get(id(value))
        if known is None:
            if depth >= MAX_DEPTH:
                raise CaseError(
                    f"{where}: {name} is nested more than {MAX_DEPTH} levels deep"
                )
            if isinstance(value, dict):
                for key in value:
                    if not isinstance(key, str):
                        raise CaseError(
                            f"{where}: {name} has the key {_shown(key)}; keys "
                            "must be strings"
                        )
                    if "\x00" in key:
                        raise CaseError(
                            f"{where}: {name} must not contain NUL characters"
                        )
            inner = [
                self._measure(item, where, name, depth + 1)
                for item in (value.values() if isinstance(value, dict) else value)
            ]
            known = (
                1 + sum(count for count, _ in inner),
                1 + max((height for _, height in inner), default=0),
            )
            self.measured[id(value)] = known
        if depth + known[1] > MAX_DEPTH:
            raise CaseError(
                f"{where}: {name} is nested more than {MAX_DEPTH} levels deep"
            )
        return known


def _text(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise CaseError(f"{where}: {name} must be a string")
    if "\x00" in value:
        raise CaseError(f"{where}: {name} must not contain NUL characters")
    return value


def _strings(value: Any, where: str, name: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise CaseError(f"{where}: {name} must be a string or a list of strings")
    return [_text(item, where, name) for item in value]


def _message(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("role"), str):
        raise CaseError(f"{where}: each message must be an object with a role")
    if value["role"] not in ("system", "user", "assistant", "tool", "developer"):
        raise CaseError(f"{where}: unknown message role {_shown(value['role'])}")
    return dict(value)


def content_id(data: Mapping[str, Any]) -> str:
    """Return an id made from a case's content: ``case-`` and 12 hex digits."""
    body = {name: value for name, value in data.items() if name != "id"}
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
    return f"case-{digest.hexdigest()[:12]}"


def normalize_case(
    raw: Any, position: int, values: _ValueCheck | None = None
) -> dict[str, Any]:
    """Check one case and return it in its stored form.

    ``values`` carries the value count across the cases of one dataset.
    """
    if not isinstance(raw, dict):
        raise CaseError(f"case {position + 1}: must be an object")
    key = raw.get("id")
    where = _where(position, key if isinstance(key, str) else None)
    unknown = sorted(str(name) for name in set(raw) - CASE_FIELDS)
    if unknown:
        shown = ", ".join(_shown(name) for name in unknown[:5])
        known = ", ".join(sorted(CASE_FIELDS))
        raise CaseError(f"{where}: unknown fields {shown}; known fields: {known}")
    values = values or _ValueCheck()
    for name, value in raw.items():
        values.check(value, where, name)
    names = [name for name in ("variables", "input", "vars") if name in raw]
    if len(names) > 1:
        raise CaseError(f"{where}: give only one of {', '.join(names)}")
    variables = raw.get(names[0], {}) if names else {}
    if not isinstance(variables, dict):
        raise CaseError(f"{where}: variables must be an object")
    for name in variables:
        if not isinstance(name, str) or not name:
            raise CaseError(f"{where}: variable names must be non-empty strings")
    data: dict[str, Any] = {"variables": variables}
    if raw.get("messages") is not None:
        messages = raw["messages"]
        if not isinstance(messages, list):
            raise CaseError(f"{where}: messages must be a list")
        data["messages"] = [_message(message, where) for message in messages]
    if raw.get("expected") is not None:
        expected = raw["expected"]
        if isinstance(expected, dict | list):
            # Structured expectations are kept as canonical JSON text.
            expected = orjson.dumps(expected, option=orjson.OPT_SORT_KEYS).decode()
        elif isinstance(expected, int | float) and not isinstance(expected, bool):
            expected = str(expected)
        data["expected"] = _text(expected, where, "expected")
    if raw.get("context") is not None:
        data["context"] = _strings(raw["context"], where, "context")
    if raw.get("tags") is not None:
        data["tags"] = _strings(raw["tags"], where, "tags")
    if raw.get("must_pass") is not None:
        if not isinstance(raw["must_pass"], bool):
            raise CaseError(f"{where}: must_pass must be true or false")
        data["must_pass"] = raw["must_pass"]
    if raw.get("metadata") is not None:
        if not isinstance(raw["metadata"], dict):
            raise CaseError(f"{where}: metadata must be an object")
        data["metadata"] = raw["metadata"]
    if not variables and not data.get("messages"):
        raise CaseError(f"{where}: give variables or messages")
    if key is None:
        key = content_id(data)
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise CaseError(
            f"{where}: id must be a string of 1 to {MAX_KEY} characters without "
            "control characters"
        )
    return {"id": key, **data}


def normalize_cases(raws: Iterable[Any]) -> list[dict[str, Any]]:
    """Check a list of cases: each valid, ids unique, at most MAX_CASES."""
    cases: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    values = _ValueCheck()
    for position, raw in enumerate(raws):
        if position >= MAX_CASES:
            raise CaseError(f"a dataset may have at most {MAX_CASES} cases")
        case = normalize_case(raw, position, values)
        if case["id"] in seen:
            raise CaseError(
                f"case {position + 1}: id {_shown(case['id'])} is already used by "
                f"case {seen[case['id']] + 1}"
            )
        seen[case["id"]] = position
        cases.append(case)
    return cases


def to_case(data: Mapping[str, Any]) -> Case:
    """Return the evaluator-facing :class:`Case` of a stored case."""
    return Case(
        key=data["id"],
        variables=data.get("variables", {}),
        messages=data.get("messages"),
        expected=data.get("expected"),
        context=tuple(data.get("context", ())),
        tags=tuple(data.get("tags", ())),
        must_pass=bool(data.get("must_pass", False)),
        metadata=data.get("metadata", {}),
    )


# Reading files


def file_format(path: Path, given: str | None = None) -> str:
    """Return the format of ``path``: ``given``, or what its suffix says."""
    if given is not None:
        if given not in FORMATS:
            raise CaseError(f"unknown format {given!r}; use one of {FORMATS}")
        return given
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("yaml", "yml"):
        return "yaml"
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix == "csv":
        return "csv"
    raise CaseError(
        f"cannot tell the format of {path.name} from its suffix; pass --format "
        "yaml, jsonl or csv"
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, but a repeated mapping key is an error instead of
    silently replacing the earlier value."""

    def construct_mapping(
        self, node: yaml.MappingNode, deep: bool = False
    ) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"found duplicate key {_shown(key)}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml_error(error: yaml.YAMLError) -> CaseError:
    """Return a YAML syntax error as one line with its position."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = error.problem or error.context or "syntax error"
        return CaseError(f"invalid YAML{where}: {problem}")
    if isinstance(error, yaml.reader.ReaderError):
        # Its second line names "<unicode string>", which helps nobody.
        return CaseError(f"invalid YAML: {str(error).splitlines()[0]}")
    return CaseError("invalid YAML: " + " ".join(str(error).split()))


def check_evaluators(specs: Sequence[Any], where: str = "evaluators") -> None:
    """Raise CaseError unless every spec builds an evaluator.

    A spec's ``tolerance`` is a gate setting, so it is not passed to the
    evaluator (see ``keelway.evals.runner.build_evaluators``).
    """
    from keelway.evals.base import EvaluatorConfigError
    from keelway.evals.evaluators import build

    values = _ValueCheck()
    for position, spec in enumerate(specs):
        item = f"{where}[{position}]"
        if not isinstance(spec, dict | str):
            raise CaseError(f"{item}: an evaluator spec is a kind or a mapping")
        values.check(spec, item, "the spec")
        if isinstance(spec, dict):
            if not isinstance(spec.get("kind"), str):
                raise CaseError(f"{item}: the spec needs a 'kind' string")
            spec = {name: value for name, value in spec.items() if name != "tolerance"}
        try:
            build(spec)
        except EvaluatorConfigError as error:
            raise CaseError(f"{item}: {' '.join(str(error).split())}") from None


def parse_yaml(text: str) -> DatasetFile:
    """Parse a YAML dataset: a mapping with ``cases``, or a bare list of cases."""
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as error:
        raise _yaml_error(error) from None
    except RecursionError:
        raise CaseError("invalid YAML: nested too deeply") from None
    if isinstance(document, list):
        return DatasetFile(normalize_cases(document))
    if not isinstance(document, dict) or not isinstance(document.get("cases"), list):
        raise CaseError("a YAML dataset must be a mapping with a list of 'cases'")
    unknown = sorted(str(name) for name in set(document) - YAML_FIELDS)
    if unknown:
        shown = ", ".join(_shown(name) for name in unknown[:5])
        raise CaseError(f"unknown top-level fields {shown} in the YAML dataset")
    evaluators = document.get("evaluators")
    if evaluators is not None:
        if not isinstance(evaluators, list):
            raise CaseError("evaluators must be a list of evaluator specs")
        check_evaluators(evaluators)
    name = document.get("name")
    description = document.get("description")
    return DatasetFile(
        normalize_cases(document["cases"]),
        name=name if isinstance(name, str) else None,
        description=description if isinstance(description, str) else None,
        evaluators=[
            {"kind": item} if isinstance(item, str) else item
            for item in evaluators or []
        ]
        or None,
    )


def _jsonl_cases(text: str) -> Iterator[Any]:
    # Only \n ends a line: str.splitlines would also split at U+2028 and
    # U+0085, which JSON strings may hold unescaped.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise CaseError(f"line {number}: invalid JSON: {error}") from None


def parse_jsonl(text: str) -> DatasetFile:
    """Parse one JSON case per line; blank lines are skipped."""
    # A generator, so a file with too many cases is rejected before the rest
    # of it is parsed.
    return DatasetFile(normalize_cases(_jsonl_cases(text)))


def _csv_bool(value: str, row: int) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise CaseError(f"row {row}: must_pass must be true or false, not {_shown(value)}")


def _csv_cases(reader: csv.DictReader[str]) -> Iterator[dict[str, Any]]:
    row_number = 1
    try:
        for row_number, row in enumerate(reader, 2):
            yield _csv_case(row, row_number)
    except csv.Error as error:
        raise CaseError(f"row {row_number + 1}: invalid CSV: {error}") from None


def _csv_case(row: dict[str | Any, Any], row_number: int) -> dict[str, Any]:
    if None in row:
        raise CaseError(f"row {row_number}: more cells than header columns")
    raw: dict[str, Any] = {"variables": {}}
    for column, value in row.items():
        value = value or ""
        if column == "id":
            if value:
                raw["id"] = value
        elif column in ("expected", "context"):
            if value:
                raw[column] = value
        elif column == "tags":
            tags = [tag.strip() for tag in value.split(",") if tag.strip()]
            if tags:
                raw["tags"] = tags
        elif column == "must_pass":
            if value.strip():
                raw["must_pass"] = _csv_bool(value, row_number)
        elif column == "messages":
            if value:
                try:
                    raw["messages"] = orjson.loads(value)
                except orjson.JSONDecodeError as error:
                    raise CaseError(
                        f"row {row_number}: messages is not JSON: {error}"
                    ) from None
        else:
            raw["variables"][column] = value
    return raw


def parse_csv(text: str) -> DatasetFile:
    """Parse a CSV file with a header row; see the module docstring."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = reader.fieldnames
    except csv.Error as error:
        raise CaseError(f"row 1: invalid CSV: {error}") from None
    if not fieldnames:
        raise CaseError("the CSV file has no header row")
    repeated = sorted({name for name in fieldnames if fieldnames.count(name) > 1})
    if repeated:
        shown = ", ".join(_shown(name) for name in repeated[:5])
        raise CaseError(f"row 1: the header repeats the columns {shown}")
    return DatasetFile(normalize_cases(_csv_cases(reader)))


def read_file(path: Path, given_format: str | None = None) -> DatasetFile:
    """Read a dataset file in any supported format.

    A UTF-8 byte order mark, as spreadsheet programs write, is skipped.
    """
    kind = file_format(path, given_format)
    try:
        if path.exists() and not path.is_file():
            # Reading a FIFO or a device such as /dev/zero could block or never end.
            raise CaseError(f"{path} is not a regular file")
        # Decoded without newline translation, which would turn a \r\n
        # inside a quoted CSV value into \n.
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise CaseError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise CaseError(f"{path} is not UTF-8 text") from None
    if kind == "yaml":
        loaded = parse_yaml(text)
    elif kind == "jsonl":
        loaded = parse_jsonl(text)
    else:
        loaded = parse_csv(text)
    # An empty file would otherwise store an empty version over the newest.
    if not loaded.cases:
        raise CaseError(f"{path} contains no cases")
    return loaded


# Writing files


def dump_yaml(
    cases: Sequence[Mapping[str, Any]],
    name: str,
    description: str | None,
    evaluators: Sequence[Mapping[str, Any]] | None,
) -> str:
    """Return a dataset as YAML that :func:`parse_yaml` reads back unchanged."""
    document: dict[str, Any] = {"name": name}
    if description:
        document["description"] = description
    if evaluators:
        document["evaluators"] = [dict(item) for item in evaluators]
    document["cases"] = [dict(case) for case in cases]
    return yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def dump_jsonl(cases: Sequence[Mapping[str, Any]]) -> str:
    """Return one JSON case per line."""
    return "".join(orjson.dumps(dict(case)).decode() + "\n" for case in cases)


def dump_csv(cases: Sequence[Mapping[str, Any]]) -> str:
    """Return the cases as CSV; a case with several context passages cannot be.

    Raises CaseError for cases that CSV cannot hold: more than one context
    passage, metadata, or non-string variables.
    """
    variables: list[str] = []
    for case in cases:
        for name in case.get("variables", {}):
            if name not in variables:
                variables.append(name)
    clash = sorted(set(variables) & set(CSV_FIELDS))
    if clash:
        raise CaseError(f"variables named {clash} cannot be written as CSV columns")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_FIELDS, *variables])
    for case in cases:
        key = case["id"]
        if len(case.get("context", ())) > 1:
            raise CaseError(
                f"case {key!r} has {len(case['context'])} context passages and a "
                "CSV cell holds one; export it as YAML or JSONL"
            )
        if case.get("metadata"):
            raise CaseError(
                f"case {key!r} has metadata, which CSV has no column for; export "
                "it as YAML or JSONL"
            )
        values = case.get("variables", {})
        if any(not isinstance(value, str) for value in values.values()):
            raise CaseError(
                f"case {key!r} has non-string variables; export it as YAML or JSONL"
            )
        messages = case.get("messages")
        writer.writerow(
            [
                key,
                case.get("expected", ""),
                (case.get("context") or [""])[0],
                ",".join(case.get("tags", ())),
                "true" if case.get("must_pass") else "",
                orjson.dumps(messages).decode() if messages else "",
                *(values.get(name, "") for name in variables),
            ]
        )
    return buffer.getvalue()
