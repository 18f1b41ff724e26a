"""The rubric prompts keelway ships for its judge and RAG evaluators.

Each rubric is a registry prompt in the usual YAML form, one file per prompt
in this folder. Evaluators call them by reference, ``NAME@1.0.0`` by default,
so the registry must hold them at that version (a proposed version pinned by
its exact number is served, for evaluations).

Every rubric sends to the model group ``judge`` unless the evaluator's
``model`` setting names another group, and requests strict JSON:

- ``keelway-judge-correctness``: ``{"score": 0..1, "reason": str}``;
- ``keelway-judge-pairwise``: ``{"winner": "A" | "B" | "tie", "reason": str}``;
- ``keelway-rag-statements``: a JSON array of statement strings;
- ``keelway-rag-verdicts``: a JSON array of
  ``{"statement": str, "reason": str, "verdict": 0 | 1}``, one per statement;
- ``keelway-rag-questions``: ``{"questions": [str], "noncommittal": 0 | 1}``;
- ``keelway-rag-context-useful``: ``{"reason": str, "verdict": 0 | 1}``.
"""

from __future__ import annotations

from pathlib import Path

from keelway.prompts.content import PromptContent, parse_prompt_yaml

DEFAULT_VERSION = "1.0.0"
FOLDER = Path(__file__).resolve().parent

CORRECTNESS = "keelway-judge-correctness"
PAIRWISE = "keelway-judge-pairwise"
STATEMENTS = "keelway-rag-statements"
VERDICTS = "keelway-rag-verdicts"
QUESTIONS = "keelway-rag-questions"
CONTEXT_USEFUL = "keelway-rag-context-useful"

RUBRICS: dict[str, Path] = {
    name: FOLDER / f"{name}.yaml"
    for name in (CORRECTNESS, PAIRWISE, STATEMENTS, VERDICTS, QUESTIONS, CONTEXT_USEFUL)
}


def reference(name: str, version: str = DEFAULT_VERSION) -> str:
    """Return the prompt reference of a shipped rubric, ``name@version``."""
    _path(name)
    return f"{name}@{version}"


def rubric_text(name: str) -> str:
    """Return the YAML text of the shipped rubric ``name``."""
    return _path(name).read_text(encoding="utf-8")


def rubric_content(name: str) -> PromptContent:
    """Return the shipped rubric ``name`` as prompt content for the registry."""
    parsed, content = parse_prompt_yaml(rubric_text(name), RUBRICS[name].name)
    if parsed != name:
        raise ValueError(f"{RUBRICS[name].name} defines prompt {parsed!r}")
    return content


def _path(name: str) -> Path:
    try:
        return RUBRICS[name]
    except KeyError:
        known = ", ".join(sorted(RUBRICS))
        raise ValueError(f"no shipped rubric named {name!r}; known: {known}") from None
