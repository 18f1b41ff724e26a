"""The shapes every evaluator shares: a case, a sample to judge and a score.

An evaluator takes a :class:`Sample` (one dataset case and the output the
model produced for it) and returns a :class:`Score`. A score is either
``ok``, with a value in [0, 1] and a pass flag against the evaluator's
threshold, or ``error``, with no value at all. An evaluator that cannot
judge a sample returns an error score and never reports 0 or NaN in its
place.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

JSONObject = dict[str, Any]
# Longest evaluator name, since it names trace scores of at most 100 characters.
MAX_NAME = 100
ScoreStatus = Literal["ok", "error"]


@dataclass(frozen=True, slots=True)
class Case:
    """One dataset case: the input, what a good output looks like, and tags.

    ``variables`` fill the prompt's template; ``messages`` (optional) follow
    the prompt's own messages. ``expected`` is the reference answer and
    ``context`` the reference passages, for evaluators that need them.
    """

    key: str
    variables: Mapping[str, Any] = field(default_factory=dict)
    messages: Sequence[Mapping[str, Any]] | None = None
    expected: str | None = None
    context: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    must_pass: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def question(self) -> str:
        """Return the question the case asks, for relevancy evaluators.

        That is the ``question`` (or ``query`` or ``input``) variable when
        there is one, else the last user message.
        """
        for name in ("question", "query", "input"):
            value = self.variables.get(name)
            if isinstance(value, str) and value:
                return value
        for message in reversed(self.messages or ()):
            content = message.get("content")
            if message.get("role") == "user" and isinstance(content, str):
                return content
        return ""


@dataclass(frozen=True, slots=True)
class Sample:
    """A case and what the model produced for it."""

    case: Case
    output: str
    latency_ms: float | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Score:
    """One evaluator's verdict on one sample."""

    evaluator: str
    status: ScoreStatus
    value: float | None
    passed: bool | None
    reason: str
    # Evidence kept for audit: judge raw output, per-statement verdicts, ...
    details: JSONObject = field(default_factory=dict)

    @classmethod
    def ok(
        cls,
        evaluator: str,
        value: float,
        threshold: float,
        reason: str,
        details: JSONObject | None = None,
    ) -> Score:
        """Build a scored verdict; ``value`` must be a finite number in [0, 1]."""
        value = float(value)
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"score of {evaluator} must be in [0, 1], got {value}")
        return cls(evaluator, "ok", value, value >= threshold, reason, details or {})

    @classmethod
    def error(
        cls, evaluator: str, reason: str, details: JSONObject | None = None
    ) -> Score:
        """Build the verdict of an evaluator that could not score the sample."""
        return cls(evaluator, "error", None, None, reason, details or {})


# Embeds texts into L2-normalised rows of a float32 matrix, one per text.
Embed = Callable[[Sequence[str]], Awaitable[np.ndarray]]


@dataclass(frozen=True, slots=True)
class JudgeReply:
    """The text a judge model returned, with what the call cost."""

    text: str
    model: str | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    trace_id: str | None = None


class Judge(Protocol):
    """Runs a rubric prompt on a judge model through the gateway.

    ``rubric`` is a prompt reference (``name@version`` or ``name@label``);
    ``variables`` fill its template; ``model`` overrides the prompt's model
    group when given. Raises :class:`ServiceError` when the call fails after
    its retries.
    """

    async def __call__(
        self, rubric: str, variables: Mapping[str, Any], model: str | None = None
    ) -> JudgeReply: ...


class ServiceError(Exception):
    """A model or embedding call that failed after its retries."""


@dataclass(slots=True)
class Services:
    """The model calls evaluators may make: an embedder and a judge, each optional."""

    embed: Embed | None = None
    judge: Judge | None = None


class EvaluatorConfigError(ValueError):
    """An evaluator spec with an unknown name or invalid settings."""


class Evaluator:
    """Base class: subclasses set ``kind`` and implement :meth:`evaluate`.

    ``name`` is how the evaluator appears in runs and reports (the kind by
    default); ``threshold`` is the least score that passes. ``requires``
    lists the case fields the evaluator needs (``expected``, ``context``);
    a case without one gets an ``error`` score saying so.
    """

    kind: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    default_threshold: ClassVar[float] = 0.5

    def __init__(self, name: str | None = None, threshold: float | None = None) -> None:
        if name is not None and (
            not isinstance(name, str) or not 0 < len(name) <= MAX_NAME
        ):
            raise EvaluatorConfigError(
                f"{self.kind}: name must be a string of 1 to {MAX_NAME} characters"
            )
        self.name = name or self.kind
        threshold = self.default_threshold if threshold is None else threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise EvaluatorConfigError(f"{self.name}: threshold must be a number")
        if not 0.0 <= float(threshold) <= 1.0:
            raise EvaluatorConfigError(
                f"{self.name}: threshold must be from 0 to 1, got {threshold}"
            )
        self.threshold = float(threshold)

    def missing(self, case: Case) -> str | None:
        """Return why ``case`` cannot be judged by this evaluator, if it cannot."""
        if "expected" in self.requires and case.expected is None:
            return f"case {case.key!r} has no expected output"
        if "context" in self.requires and not any(
            passage.strip() for passage in case.context
        ):
            return f"case {case.key!r} has no reference context"
        return None

    async def evaluate(self, sample: Sample, services: Services) -> Score:
        """Score ``sample``; errors become an ``error`` score, never a raise."""
        raise NotImplementedError

    def ok(self, value: float, reason: str, details: JSONObject | None = None) -> Score:
        """Build this evaluator's scored verdict."""
        return Score.ok(self.name, value, self.threshold, reason, details)

    def error(self, reason: str, details: JSONObject | None = None) -> Score:
        """Build this evaluator's error verdict."""
        return Score.error(self.name, reason, details)
