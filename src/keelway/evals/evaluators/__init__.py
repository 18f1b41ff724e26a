"""Evaluator kinds by name, and building one from its spec.

A spec is a mapping with ``kind`` (one of :data:`KINDS`), optional ``name``
and ``threshold``, and the kind's own settings, passed to its constructor
as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keelway.evals.base import Evaluator, EvaluatorConfigError

KINDS: dict[str, type[Evaluator]] = {}


def register(cls: type[Evaluator]) -> type[Evaluator]:
    """Add an evaluator class to :data:`KINDS` under its ``kind``."""
    KINDS[cls.kind] = cls
    return cls


def build(spec: Mapping[str, Any] | str) -> Evaluator:
    """Build an evaluator from a spec, or from a bare kind name."""
    _load_kinds()
    if isinstance(spec, str):
        spec = {"kind": spec}
    settings = dict(spec)
    kind = settings.pop("kind", None)
    if kind not in KINDS:
        known = ", ".join(sorted(KINDS))
        raise EvaluatorConfigError(f"unknown evaluator kind {kind!r}; known: {known}")
    try:
        return KINDS[kind](**settings)
    except TypeError as error:
        raise EvaluatorConfigError(f"evaluator {kind!r}: {error}") from None


def _load_kinds() -> None:
    # Importing the modules registers their classes.
    from keelway.evals.evaluators import (  # noqa: F401
        deterministic,
        judge,
        rag,
        semantic,
    )
