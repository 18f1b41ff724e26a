"""Scanner types by name, built lazily so unused ones import nothing heavy.

Each entry names a module and a factory ``build(settings) -> Scanner``. The
factory checks its own settings and raises :class:`ScannerConfigError` with
a one-line message for an unknown or invalid one.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from keelway.guardrails.base import Scanner, ScannerConfigError

# type -> (module, stages it may run in)
SCANNERS: dict[str, tuple[str, frozenset[str]]] = {
    "pii": ("keelway.guardrails.pii", frozenset({"input", "output"})),
    "secrets": ("keelway.guardrails.secrets", frozenset({"input", "output"})),
    "injection": ("keelway.guardrails.injection", frozenset({"input"})),
    "topic": ("keelway.guardrails.topics", frozenset({"input", "output"})),
    "deny": ("keelway.guardrails.lists", frozenset({"input", "output"})),
    "max_tokens": ("keelway.guardrails.lists", frozenset({"input"})),
    "language": ("keelway.guardrails.language", frozenset({"input", "output"})),
    "system_prompt_leak": ("keelway.guardrails.leak", frozenset({"output"})),
    "json_schema": ("keelway.guardrails.structure", frozenset({"output"})),
    "urls": ("keelway.guardrails.structure", frozenset({"output"})),
    "refusal": ("keelway.guardrails.structure", frozenset({"output"})),
    # A scanner of your own: ``factory: package.module:function`` builds it
    # from the remaining settings.
    "custom": ("keelway.guardrails.registry", frozenset({"input", "output"})),
}


def build_scanner(kind: str, settings: dict[str, Any]) -> Scanner:
    """Build a scanner of type ``kind`` from its policy settings."""
    try:
        module_name, _ = SCANNERS[kind]
    except KeyError:
        known = ", ".join(sorted(SCANNERS))
        raise ScannerConfigError(
            f"unknown scanner type {kind!r}; known types: {known}"
        ) from None
    if kind == "pii":
        _import_presidio()
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ScannerConfigError(
            f"scanner {kind!r} cannot load: {error}; reinstall keelway"
        ) from None
    factory = getattr(module, f"build_{kind}", None) or module.build
    scanner: Scanner = factory(dict(settings))
    return scanner


def build_custom(settings: dict[str, Any]) -> Scanner:
    """Build a scanner from a factory named ``module:function``."""
    target = settings.pop("factory", None)
    if not isinstance(target, str) or ":" not in target:
        raise ScannerConfigError(
            "scanner 'custom' needs factory: 'package.module:function'"
        )
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, function)
    except (ImportError, AttributeError) as error:
        raise ScannerConfigError(
            f"scanner 'custom': cannot load factory {target!r}: {error}"
        ) from None
    if not callable(factory):
        raise ScannerConfigError(f"scanner 'custom': {target!r} is not callable")
    try:
        scanner: Scanner = factory(settings)
    except ScannerConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - the factory is the user's code
        raise ScannerConfigError(
            f"scanner 'custom': factory {target!r} failed:"
            f" {type(error).__name__}: {error}"
        ) from None
    return scanner


def _import_presidio() -> None:
    """Import Presidio without the NLP engines keelway never uses.

    presidio_analyzer imports Hugging Face transformers and torch when they
    are installed, for its transformer NLP engine: about 7 of the 10 seconds
    its import takes on a 2-core machine. keelway runs its recognizers on a
    blank spaCy pipeline, so both are hidden while Presidio loads; a later
    import of either (the MiniLM scanners) loads them as usual.
    """
    if "presidio_analyzer" in sys.modules:
        return
    hidden = [name for name in ("transformers", "torch") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        importlib.import_module("presidio_analyzer")
        importlib.import_module("presidio_anonymizer")
    finally:
        for name in hidden:
            if sys.modules.get(name) is None:
                del sys.modules[name]


def stages(kind: str) -> frozenset[str]:
    """Return the stages (``input``, ``output``) a scanner type may run in."""
    return SCANNERS[kind][1]


def take(settings: dict[str, Any], name: str, default: Any) -> Any:
    """Pop one setting, returning ``default`` when it is absent."""
    return settings.pop(name, default)


def no_more(kind: str, settings: dict[str, Any]) -> None:
    """Refuse settings a factory did not consume."""
    if settings:
        names = ", ".join(sorted(map(str, settings)))
        raise ScannerConfigError(f"scanner {kind!r} has no setting(s): {names}")
