"""The python-reference golden set: its cases and where their passages come from.

Every passage must be a verbatim span of Python's own ``pydoc_data.topics``
text (whitespace collapsed), and every expected answer a short span of its
passage, so that a small reader model can copy the answer from the passage.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pydoc_data.topics import topics
from typing import Any

import pytest
import yaml

DATASET = files("keelway.evals") / "examples" / "python-reference.yaml"
ID_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def normalise(text: str) -> str:
    """Collapse every run of whitespace to one space."""
    return " ".join(text.split())


def load_cases() -> list[dict[str, Any]]:
    data = yaml.safe_load(DATASET.read_text(encoding="utf-8"))
    return data["cases"]


CASES = load_cases()
CASE_IDS = [str(case.get("id")) for case in CASES]


def passages(case: dict[str, Any]) -> list[str]:
    return [normalise(passage) for passage in case.get("context") or []]


def test_dataset_header() -> None:
    data = yaml.safe_load(DATASET.read_text(encoding="utf-8"))
    assert data["name"] == "python-reference"
    assert isinstance(data["description"], str)
    assert data["description"].strip()


def test_dataset_case_count() -> None:
    assert len(CASES) >= 60, f"{len(CASES)} cases, at least 60 needed"


def test_case_ids_unique() -> None:
    seen: set[str] = set()
    for case_id in CASE_IDS:
        assert case_id not in seen, f"duplicate case id {case_id!r}"
        seen.add(case_id)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_id_well_formed(case: dict[str, Any]) -> None:
    case_id = case.get("id")
    assert isinstance(case_id, str), f"case id {case_id!r} is not a string"
    assert ID_PATTERN.fullmatch(case_id), f"case id {case_id!r} is malformed"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_passages_come_from_pydoc_topics(case: dict[str, Any]) -> None:
    case_id = case["id"]
    topic = (case.get("metadata") or {}).get("topic")
    assert topic in topics, f"{case_id}: topic {topic!r} not found in pydoc_data.topics"
    source = normalise(topics[topic])
    found = passages(case)
    assert found, f"{case_id}: no passage"
    for passage in found:
        assert passage in source, f"{case_id}: passage not found in topics[{topic!r}]"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_expected_in_passage(case: dict[str, Any]) -> None:
    case_id = case["id"]
    expected = case.get("expected")
    assert isinstance(expected, str), f"{case_id}: expected is not a string"
    words = len(expected.split())
    assert 1 <= words <= 6, f"{case_id}: expected has {words} words"
    answer = normalise(expected).lower()
    assert any(answer in passage.lower() for passage in passages(case)), (
        f"{case_id}: expected {expected!r} not found in its passage"
    )


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_question_form(case: dict[str, Any]) -> None:
    case_id = case["id"]
    question = (case.get("variables") or {}).get("question")
    assert isinstance(question, str), f"{case_id}: question is not a string"
    assert question.strip(), f"{case_id}: question is empty"
    assert question.rstrip().endswith("?"), f"{case_id}: question does not end with '?'"
    text = normalise(question).rstrip("?").lower()
    for passage in passages(case):
        assert text not in passage.lower(), f"{case_id}: question copies its passage"


def test_topics_varied() -> None:
    used = {(case.get("metadata") or {}).get("topic") for case in CASES}
    assert len(used) >= 25, f"{len(used)} distinct topics, at least 25 needed"
