"""LLM-as-judge: a rubric prompt grades one output, or compares two.

``llm_judge`` runs a rubric prompt from the registry on the judge model
through the gateway and maps the judge's score onto [0, 1].
:func:`compare_pair` runs a pairwise rubric on two outputs, once in each
order, and returns a tie when the verdict changes with the order.

A rubric receives up to four string variables: ``question`` (the case's
question), ``answer`` (the output to grade), ``expected`` (the reference
answer, when the case has one) and ``context`` (the case's passages joined by
blank lines, when it has some). A variable the case lacks is not sent, so a
custom rubric must declare all four, the optional ones with a default such
as ``""``; the registry rejects variables a prompt does not declare. The
judge must reply with a JSON object ``{"score": NUMBER, "reason": TEXT}``,
alone, in a code fence or inside other text; its score must lie within the
evaluator's ``scale``.

Every score keeps the judge's raw reply (``raw_output``), the model that
answered (``judge_model``) and the trace of the call (``judge_trace_id``) in
its details. A reply that cannot be read, a score outside the scale and a
failed judge call give an ``error`` score, never 0.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from keelway.evals import rubrics
from keelway.evals.base import (
    Case,
    Evaluator,
    EvaluatorConfigError,
    JSONObject,
    JudgeReply,
    Sample,
    Score,
    ScoreStatus,
    ServiceError,
    Services,
)
from keelway.evals.evaluators import register
from keelway.prompts.errors import InvalidReference
from keelway.prompts.versioning import parse_reference

DEFAULT_RUBRIC = rubrics.reference(rubrics.CORRECTNESS)
PAIRWISE_RUBRIC = rubrics.reference(rubrics.PAIRWISE)
POSITION_BIAS = "position bias: the verdict flipped when the order was swapped"
NO_JUDGE = "no judge model is configured for this run"

Winner = Literal["A", "B", "tie"]

# A fenced block, with or without a language tag.
_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
# How many opening brackets to try to decode from when looking for a JSON
# value inside prose, so a reply full of brackets costs bounded time.
_MAX_SPAN_STARTS = 200


class JudgeOutputError(ValueError):
    """A judge reply that is not the JSON its rubric requests."""


class ScoreOutOfScale(JudgeOutputError):
    """A judge score outside the evaluator's scale."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# Strict JSON: NaN and Infinity, which Python's json module accepts, are not.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _decode(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError):
        return None


def extract_json(text: str, kind: type[dict[str, Any]] | type[list[Any]]) -> Any:
    """Return the JSON object (``kind=dict``) or array (``kind=list``) in ``text``.

    Tried in order: the whole reply as strict JSON, the contents of each
    code fence, and the value that starts at each ``{`` (or ``[``) in turn.
    Raises :class:`JudgeOutputError` when none is of the wanted kind.
    """
    stripped = text.strip()
    noun = "object" if kind is dict else "array"
    if not stripped:
        raise JudgeOutputError("the reply is empty")
    value = _decode(stripped)
    if isinstance(value, kind):
        return value
    for match in _FENCE.finditer(text):
        value = _decode(match.group(1).strip())
        if isinstance(value, kind):
            return value
    opening = "{" if kind is dict else "["
    start = text.find(opening)
    for _ in range(_MAX_SPAN_STARTS):
        if start < 0:
            break
        try:
            value, _end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, kind):
            return value
        start = text.find(opening, start + 1)
    raise JudgeOutputError(f"no JSON {noun} found in the reply")


def json_type(value: Any) -> str:
    """Return the JSON type name of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def reason_of(data: JSONObject) -> str:
    """Return the ``reason`` of a judge's JSON object: "" when absent."""
    reason = data.get("reason")
    if reason is None:
        return ""
    if not isinstance(reason, str):
        raise JudgeOutputError(f'"reason" must be a string, got {json_type(reason)}')
    return reason


@dataclass(frozen=True, slots=True)
class JudgeVerdict:
    """A parsed judge reply: the score as given, mapped onto [0, 1], and why."""

    score: float
    value: float
    reason: str


def parse_judge_reply(
    text: str, scale: tuple[float, float] = (0.0, 1.0)
) -> JudgeVerdict:
    """Parse ``{"score": NUMBER, "reason": TEXT}`` from a judge reply.

    The score must be a JSON number within ``scale``, ends included. It is
    mapped linearly, so the low end becomes 0 and the high end 1. A missing
    reason reads as "". Raises :class:`ScoreOutOfScale` for a score outside
    the scale and :class:`JudgeOutputError` for any other invalid reply.
    """
    data = extract_json(text, dict)
    if "score" not in data:
        raise JudgeOutputError('the JSON object has no "score"')
    score = data["score"]
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise JudgeOutputError(f'"score" must be a number, got {json_type(score)}')
    reason = reason_of(data)
    low, high = scale
    if not low <= score <= high:
        raise ScoreOutOfScale(
            f"score {score:g} is outside the scale [{low:g}, {high:g}]"
        )
    value = (float(score) - low) / (high - low)
    return JudgeVerdict(float(score), min(1.0, max(0.0, value)), reason)


def parse_pair_reply(text: str) -> tuple[Winner, str]:
    """Parse ``{"winner": "A" | "B" | "tie", "reason": TEXT}`` from a judge reply.

    The winner is case-insensitive, and spaces around it are ignored.
    """
    data = extract_json(text, dict)
    if "winner" not in data:
        raise JudgeOutputError('the JSON object has no "winner"')
    winner = data["winner"]
    if not isinstance(winner, str):
        raise JudgeOutputError(
            f'"winner" must be "A", "B" or "tie", got {json_type(winner)}'
        )
    normalised = winner.strip().casefold()
    reason = reason_of(data)
    if normalised == "a":
        return "A", reason
    if normalised == "b":
        return "B", reason
    if normalised == "tie":
        return "tie", reason
    raise JudgeOutputError(f'"winner" must be "A", "B" or "tie", got {winner!r}')


def judge_variables(case: Case, answer: str) -> dict[str, Any]:
    """Return the rubric variables for grading ``answer`` to ``case``."""
    variables: dict[str, Any] = {"answer": answer}
    question = case.question()
    if question:
        variables["question"] = question
    if case.expected is not None:
        variables["expected"] = case.expected
    if case.context:
        variables["context"] = join_context(case.context)
    return variables


def join_context(chunks: Sequence[str]) -> str:
    """Join context chunks into one text, separated by blank lines."""
    return "\n\n".join(chunk.strip() for chunk in chunks if chunk.strip())


def reply_details(reply: JudgeReply) -> JSONObject:
    """Return the evidence a judge call leaves in a score's details."""
    return {
        "raw_output": reply.text,
        "judge_model": reply.model,
        "judge_trace_id": reply.trace_id,
        "judge_latency_ms": reply.latency_ms,
    }


# Settings checks shared with the RAG evaluators.


def check_reference(evaluator: str, setting: str, value: Any) -> str:
    """Return ``value`` if it is a prompt reference; raise EvaluatorConfigError."""
    if not isinstance(value, str):
        raise EvaluatorConfigError(
            f"{evaluator}: {setting} must be a prompt reference such as "
            f"'{DEFAULT_RUBRIC}', got {type(value).__name__}"
        )
    try:
        parse_reference(value)
    except InvalidReference as error:
        raise EvaluatorConfigError(f"{evaluator}: {setting}: {error}") from None
    return value


def check_model(evaluator: str, value: Any) -> str | None:
    """Return ``value`` if it is None or a model group name."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise EvaluatorConfigError(
            f"{evaluator}: model must be the name of a model group, got {value!r}"
        )
    return value


def check_scale(evaluator: str, value: Any) -> tuple[float, float]:
    """Return ``value`` as (low, high) if it is two finite numbers, low < high."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise EvaluatorConfigError(
            f"{evaluator}: scale must be a list of two numbers [min, max], "
            f"got {value!r}"
        )
    for end in value:
        if (
            isinstance(end, bool)
            or not isinstance(end, int | float)
            or not math.isfinite(end)
        ):
            raise EvaluatorConfigError(
                f"{evaluator}: scale must hold two finite numbers, got {value!r}"
            )
    low, high = float(value[0]), float(value[1])
    if not low < high:
        raise EvaluatorConfigError(
            f"{evaluator}: scale must be [min, max] with min below max, got {value!r}"
        )
    return low, high


@register
class LLMJudge(Evaluator):
    """Grades the output with a rubric prompt run on a judge model.

    Settings: ``rubric`` (a prompt reference, default
    ``keelway-judge-correctness@1.0.0``), ``model`` (a model group that
    replaces the rubric's own, default none) and ``scale`` (the judge's
    ``[min, max]``, default ``[0, 1]``), besides ``threshold`` (0.5).
    """

    kind = "llm_judge"

    def __init__(
        self,
        name: str | None = None,
        threshold: float | None = None,
        rubric: str = DEFAULT_RUBRIC,
        model: str | None = None,
        scale: Sequence[float] = (0.0, 1.0),
    ) -> None:
        super().__init__(name, threshold)
        self.rubric = check_reference(self.name, "rubric", rubric)
        self.model = check_model(self.name, model)
        self.scale = check_scale(self.name, scale)

    async def evaluate(self, sample: Sample, services: Services) -> Score:
        details: JSONObject = {"rubric": self.rubric, "scale": list(self.scale)}
        if services.judge is None:
            return self.error(NO_JUDGE, details)
        variables = judge_variables(sample.case, sample.output)
        try:
            reply = await services.judge(self.rubric, variables, self.model)
        except ServiceError as error:
            return self.error(f"judge call failed: {error}", details)
        details.update(reply_details(reply))
        try:
            verdict = parse_judge_reply(reply.text, self.scale)
        except ScoreOutOfScale as error:
            return self.error(f"judge score is outside the scale: {error}", details)
        except JudgeOutputError as error:
            return self.error(f"judge output could not be parsed: {error}", details)
        details["judge_score"] = verdict.score
        reason = verdict.reason or f"the judge gave {verdict.score:g}"
        return self.ok(verdict.value, reason, details)


@dataclass(frozen=True, slots=True)
class PairVerdict:
    """A pairwise judge's preference between two outputs.

    ``winner`` is ``A`` (the first output), ``B`` (the second), ``tie``, or
    None when ``status`` is ``error``. ``details`` keeps each order's raw
    reply and verdict under ``a_first`` and ``b_first``.
    """

    winner: Winner | None
    status: ScoreStatus
    reason: str
    details: JSONObject = field(default_factory=dict)


_SWAPPED: dict[Winner, Winner] = {"A": "B", "B": "A", "tie": "tie"}


async def compare_pair(
    case: Case,
    output_a: str,
    output_b: str,
    services: Services,
    rubric: str = PAIRWISE_RUBRIC,
    model: str | None = None,
) -> PairVerdict:
    """Compare two outputs with the pairwise rubric, in both orders.

    The first call shows ``output_a`` in position A and ``output_b`` in
    position B. The second call swaps them, and its verdict is mapped back,
    so its "A" counts for ``output_b``. The two calls run one after the
    other. When both verdicts agree, that verdict is the result. When they
    differ, the result is a tie for position bias. The rubric receives
    ``question``, ``answer_a``, ``answer_b`` and, when the case has them,
    ``expected`` and ``context``.
    """
    details: JSONObject = {"rubric": rubric}
    if services.judge is None:
        return PairVerdict(None, "error", NO_JUDGE, details)
    shared = judge_variables(case, "")
    del shared["answer"]
    verdicts: list[tuple[Winner, str]] = []
    orders = (("a_first", output_a, output_b), ("b_first", output_b, output_a))
    for order, first, second in orders:
        variables = {**shared, "answer_a": first, "answer_b": second}
        where = order.replace("_", " ")
        try:
            reply = await services.judge(rubric, variables, model)
        except ServiceError as error:
            return PairVerdict(
                None, "error", f"judge call failed ({where}): {error}", details
            )
        entry = reply_details(reply)
        details[order] = entry
        try:
            shown, reason = parse_pair_reply(reply.text)
        except JudgeOutputError as error:
            return PairVerdict(
                None,
                "error",
                f"judge output could not be parsed ({where}): {error}",
                details,
            )
        winner = shown if order == "a_first" else _SWAPPED[shown]
        entry.update(winner_as_shown=shown, winner=winner, reason=reason)
        verdicts.append((winner, reason))
    (first_winner, first_reason), (second_winner, _) = verdicts
    if first_winner != second_winner:
        details["position_bias"] = True
        return PairVerdict("tie", "ok", POSITION_BIAS, details)
    details["position_bias"] = False
    if first_winner == "tie":
        summary = "a tie in both orders"
    else:
        summary = f"{first_winner} won in both orders"
    reason = f"{summary}: {first_reason}" if first_reason else summary
    return PairVerdict(first_winner, "ok", reason, details)
