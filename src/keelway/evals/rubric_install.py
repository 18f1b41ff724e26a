"""Putting the shipped rubric prompts into the registry when a run needs them.

Judge evaluators call their rubric by reference through the gateway, so
the rubric must be a registry prompt. Before a run whose evaluators could
call a shipped rubric, each one missing from the registry is created at
version 1.0.0 by the ``local`` principal, which the audit log records. A
rubric already present is left as it is, edited versions included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keelway.evals.rubrics import DEFAULT_VERSION, RUBRICS, rubric_content
from keelway.governance.errors import Conflict, NotFound
from keelway.governance.roles import Principal
from keelway.prompts.registry import PromptRegistry

# Evaluator kinds that call a judge in at least one of their modes.
JUDGE_KINDS = frozenset(
    {"llm_judge", "faithfulness", "answer_relevancy", "context_precision"}
    | {"context_recall"}
)


def needs_rubrics(specs: Sequence[Mapping[str, Any] | str] | None) -> bool:
    """Return whether any spec may call a judge rubric."""
    for spec in specs or ():
        kind = spec if isinstance(spec, str) else spec.get("kind")
        if isinstance(kind, str) and kind in JUDGE_KINDS:
            return True
    return False


def install_rubrics(
    registry: PromptRegistry, specs: Sequence[Mapping[str, Any] | str] | None
) -> list[str]:
    """Create the shipped rubrics the registry lacks; return their names."""
    if not needs_rubrics(specs):
        return []
    created = []
    for name in RUBRICS:
        try:
            registry.show(name)
            continue
        except NotFound:
            pass
        try:
            registry.create(
                Principal.local(),
                name,
                rubric_content(name),
                message=f"shipped rubric, version {DEFAULT_VERSION}",
            )
        except Conflict:
            continue
        created.append(name)
    return created
