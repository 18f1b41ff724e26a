"""Evaluator kinds by name, and building one from its spec.

A spec is a mapping with ``kind`` (one of :data:`KINDS`), optional ``name``
and ``threshold``, and the kind's own settings, passed to its constructor
as keyword arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

from keelway.evals.base import Evaluator, EvaluatorConfigError

KINDS: dict[str, type[Evaluator]] = {}
EvaluatorType = TypeVar("EvaluatorType", bound=type[Evaluator])


def settings_of(cls: type[Evaluator]) -> list[str]:
    """Return the setting names the constructor of ``cls`` takes."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return [
        parameter.name
        for parameter in parameters
        if parameter.name != "self"
        and parameter.kind
        in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


def register(cls: EvaluatorType) -> EvaluatorType:
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
    if not isinstance(kind, str) or kind not in KINDS:
        known = ", ".join(sorted(KINDS))
        shown = repr(kind)[:80]
        raise EvaluatorConfigError(f"unknown evaluator kind {shown}; known: {known}")
    cls = KINDS[kind]
    known = settings_of(cls)
    unknown = sorted(str(name) for name in settings if name not in known)
    if unknown:
        raise EvaluatorConfigError(
            f"evaluator {kind!r}: unknown settings {unknown}; its settings are "
            f"{', '.join(known)}"
        )
    parameters = inspect.signature(cls.__init__).parameters
    required = [
        name
        for name in known
        if parameters[name].default is inspect.Parameter.empty and name not in settings
    ]
    if required:
        raise EvaluatorConfigError(
            f"evaluator {kind!r}: missing required settings {required}"
        )
    return cls(**settings)


def _load_kinds() -> None:
    # Importing the modules registers their classes.
    from keelway.evals.evaluators import (  # noqa: F401
        deterministic,
        judge,
        rag,
        semantic,
    )
