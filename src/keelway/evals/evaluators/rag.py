"""The four RAGAS metrics of a retrieval-augmented answer.

Each metric is an evaluator kind with a ``mode``: ``judge`` computes it the
way RAGAS does, with rubric prompts run on a judge model (see
:mod:`keelway.evals.rubrics`), and ``embedding`` computes it without an LLM,
from embedding similarity and word overlap. The retrieved context is the
case's ``context``, one chunk per item, in retrieval order.

NOTE: a :class:`Sample` has no field for the chunks a RAG pipeline retrieved
during the run, so these metrics judge the case's fixed context, not what
the system under test retrieved.

- ``faithfulness``: the share of the answer's statements that the context
  supports.
- ``answer_relevancy``: how close questions generated from the answer come
  to the question asked (mean cosine similarity of their embeddings).
- ``context_precision``: whether the relevant chunks come first (average
  precision over the chunks).
- ``context_recall``: the share of the reference answer's statements that
  the context supports.

Each score keeps its evidence in ``details``: the per-statement or per-chunk
verdicts under ``verdicts``, and in judge mode each call's raw reply, model
and trace under ``judge_calls``. When a metric is undefined (RAGAS returns
NaN: an answer with no statements, a case with no question) or a call
fails or a judge reply cannot be read, the score is an ``error``, never 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from keelway.evals import rubrics
from keelway.evals.base import (
    Evaluator,
    EvaluatorConfigError,
    JSONObject,
    JudgeReply,
    Sample,
    Score,
    ServiceError,
    Services,
)
from keelway.evals.evaluators import register
from keelway.evals.evaluators.judge import (
    NO_JUDGE,
    JudgeOutputError,
    check_model,
    check_reference,
    extract_json,
    join_context,
    json_type,
    reason_of,
    reply_details,
)
from keelway.evals.text import content_tokens, sentences

MODES = ("judge", "embedding")
NO_EMBEDDER = "no embedding model is configured for this run"
NO_STATEMENTS = "answer has no statements to check"
DEFAULT_SUPPORT_THRESHOLD = 0.6
DEFAULT_OVERLAP_THRESHOLD = 0.8
DEFAULT_RELEVANCE_THRESHOLD = 0.5
DEFAULT_QUESTIONS = 3
MAX_QUESTIONS = 10
# Texts per embedding call, below the gateway's limit on inputs per request.
EMBED_BATCH = 256

T = TypeVar("T")


class _Unscorable(Exception):
    """The reason a sample cannot be scored, which the error score reports."""


def _check_unit(evaluator: str, setting: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvaluatorConfigError(
            f"{evaluator}: {setting} must be a number from 0 to 1, got {value!r}"
        )
    if not 0.0 <= float(value) <= 1.0:
        raise EvaluatorConfigError(
            f"{evaluator}: {setting} must be from 0 to 1, got {value}"
        )
    return float(value)


def average_precision(relevance: Sequence[int]) -> float:
    """Return RAGAS context precision for chunk relevances in retrieval order.

    That is the sum over ranks k of precision@k times v_k, divided by the
    number of relevant chunks, where v_k is 1 for a relevant chunk and
    precision@k the share of relevant chunks among the first k. No relevant
    chunk gives 0.
    """
    relevant = sum(relevance)
    if relevant == 0:
        return 0.0
    hits = 0
    total = 0.0
    for rank, flag in enumerate(relevance, start=1):
        if flag:
            hits += 1
            total += hits / rank
    return total / relevant


def _binary(value: Any, where: str) -> int:
    """Parse a verdict given as 1, 0, true, false, "1" or "0"."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value.strip())
    raise JudgeOutputError(
        f"{where} must be 1 or 0, got {json_type(value)} {value!r}"[:200]
    )


def parse_statements(text: str) -> list[str]:
    """Parse the JSON array of statement strings from a statements rubric.

    The array may be wrapped in an object (``{"statements": [...]}``).
    Empty strings are dropped.
    """
    items = extract_json(text, list)
    statements = []
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise JudgeOutputError(
                f"statement {index + 1} must be a string, got {json_type(item)}"
            )
        if item.strip():
            statements.append(item.strip())
    return statements


def parse_verdicts(text: str, count: int) -> list[tuple[int, str]]:
    """Parse the JSON array of ``{verdict, reason}`` objects, one per statement."""
    items = extract_json(text, list)
    if len(items) != count:
        raise JudgeOutputError(
            f"expected {count} verdicts, one per statement, got {len(items)}"
        )
    verdicts = []
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise JudgeOutputError(
                f"verdict {index} must be an object, got {json_type(item)}"
            )
        if "verdict" not in item:
            raise JudgeOutputError(f'verdict {index} has no "verdict"')
        verdict = _binary(item["verdict"], f'"verdict" of item {index}')
        verdicts.append((verdict, reason_of(item)))
    return verdicts


def parse_chunk_verdict(text: str) -> tuple[int, str]:
    """Parse ``{"verdict": 0 | 1, "reason": TEXT}`` from a judge reply."""
    data = extract_json(text, dict)
    if "verdict" not in data:
        raise JudgeOutputError('the JSON object has no "verdict"')
    return _binary(data["verdict"], '"verdict"'), reason_of(data)


def parse_questions(text: str) -> tuple[list[str], bool]:
    """Parse ``{"questions": [TEXT], "noncommittal": 0 | 1}`` from a judge reply."""
    data = extract_json(text, dict)
    questions = data.get("questions")
    if not isinstance(questions, list):
        raise JudgeOutputError(
            f'"questions" must be an array, got {json_type(questions)}'
        )
    generated = []
    for index, item in enumerate(questions, start=1):
        if not isinstance(item, str):
            raise JudgeOutputError(
                f"question {index} must be a string, got {json_type(item)}"
            )
        if item.strip():
            generated.append(item.strip())
    if not generated:
        raise JudgeOutputError("the judge generated no questions")
    if "noncommittal" not in data:
        raise JudgeOutputError('the JSON object has no "noncommittal"')
    return generated, bool(_binary(data["noncommittal"], '"noncommittal"'))


async def _ask(
    services: Services, rubric: str, variables: JSONObject, model: str | None
) -> JudgeReply:
    assert services.judge is not None
    try:
        return await services.judge(rubric, variables, model)
    except ServiceError as error:
        raise _Unscorable(f"judge call failed ({rubric}): {error}") from None


def _read(
    reply: JudgeReply, parse: Callable[[str], T], details: JSONObject, where: str = ""
) -> T:
    try:
        return parse(reply.text)
    except JudgeOutputError as error:
        details["raw_output"] = reply.text
        raise _Unscorable(f"judge output could not be parsed{where}: {error}") from None


def _record(details: JSONObject, rubric: str, reply: JudgeReply) -> None:
    details.setdefault("judge_calls", []).append(
        {"rubric": rubric, **reply_details(reply)}
    )


async def _vectors(services: Services, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Embed each distinct text once and map it to its L2-normalised row."""
    assert services.embed is not None
    unique = list(dict.fromkeys(texts))
    found: dict[str, np.ndarray] = {}
    for start in range(0, len(unique), EMBED_BATCH):
        batch = unique[start : start + EMBED_BATCH]
        try:
            matrix = np.asarray(await services.embed(batch), dtype=np.float32)
        except ServiceError as error:
            raise _Unscorable(f"embedding call failed: {error}") from None
        if matrix.ndim != 2 or matrix.shape[0] != len(batch):
            raise _Unscorable(
                f"the embedder returned an array of shape {matrix.shape} for "
                f"{len(batch)} texts"
            )
        found.update(zip(batch, matrix, strict=True))
    return found


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.clip(np.dot(a, b), -1.0, 1.0))


def _unit_interval(value: float) -> float:
    return min(1.0, max(0.0, value))


class _RagMetric(Evaluator):
    """Settings and service checks that the four metrics share."""

    # Rubric settings of this kind, with their default rubric names.
    rubric_settings: ClassVar[dict[str, str]] = {}
    needs_embedder_in_judge_mode: ClassVar[bool] = False

    def __init__(
        self,
        name: str | None,
        threshold: float | None,
        mode: str,
        model: str | None,
        rubric_refs: dict[str, Any],
    ) -> None:
        super().__init__(name, threshold)
        if mode not in MODES:
            raise EvaluatorConfigError(
                f"{self.name}: mode must be 'judge' or 'embedding', got {mode!r}"
            )
        self.mode = mode
        if mode == "embedding":
            settings = {"model": model, **rubric_refs}
            given = [key for key, value in settings.items() if value is not None]
            if given:
                raise EvaluatorConfigError(
                    f"{self.name}: {given[0]} applies in judge mode only; remove "
                    "it or set mode: judge"
                )
        self.model = check_model(self.name, model)
        self.rubrics: dict[str, str] = {}
        for setting, default in self.rubric_settings.items():
            value = rubric_refs.get(setting)
            if value is None:
                value = rubrics.reference(default)
            self.rubrics[setting] = check_reference(self.name, setting, value)

    def _setting(
        self, setting: str, value: Any, default: float, mode: str = "embedding"
    ) -> float:
        """Validate a setting that only ``mode`` uses; None takes the default."""
        if value is None:
            return default
        if self.mode != mode:
            raise EvaluatorConfigError(
                f"{self.name}: {setting} applies in {mode} mode only; remove it "
                f"or set mode: {mode}"
            )
        return _check_unit(self.name, setting, value)

    async def evaluate(self, sample: Sample, services: Services) -> Score:
        details: JSONObject = {"mode": self.mode}
        missing = self.missing(sample.case)
        if missing is not None:
            return self.error(missing, details)
        if self.mode == "judge" and services.judge is None:
            return self.error(NO_JUDGE, details)
        needs_embedder = self.mode == "embedding" or self.needs_embedder_in_judge_mode
        if needs_embedder and services.embed is None:
            return self.error(NO_EMBEDDER, details)
        try:
            return await self._score(sample, services, details)
        except _Unscorable as problem:
            return self.error(str(problem), details)

    async def _score(
        self, sample: Sample, services: Services, details: JSONObject
    ) -> Score:
        raise NotImplementedError


class _StatementSupport(_RagMetric):
    """A share of statements supported by the context: faithfulness and recall.

    Judge mode splits the text into statements with the statements rubric,
    then runs the verdicts rubric to decide whether the context supports
    each one.
    Embedding mode takes the text's sentences as its statements; one is
    supported when its embedding's cosine similarity to some context
    sentence reaches ``support_threshold``, or when at least
    ``overlap_threshold`` of its distinct content words occur in the context.

    NOTE: sentence embeddings place a statement with one entity swapped
    ("the tower is in Rome" against "the tower is in Paris") close to the
    original, so embedding mode counts such a statement as supported. Judge
    mode catches it.
    """

    rubric_settings: ClassVar[dict[str, str]] = {
        "statements_rubric": rubrics.STATEMENTS,
        "verdicts_rubric": rubrics.VERDICTS,
    }
    empty_reason: ClassVar[str] = NO_STATEMENTS
    summary: ClassVar[str] = "statements are supported by the context"

    def __init__(
        self,
        name: str | None = None,
        threshold: float | None = None,
        mode: str = "judge",
        model: str | None = None,
        statements_rubric: str | None = None,
        verdicts_rubric: str | None = None,
        support_threshold: float | None = None,
        overlap_threshold: float | None = None,
    ) -> None:
        super().__init__(
            name,
            threshold,
            mode,
            model,
            {
                "statements_rubric": statements_rubric,
                "verdicts_rubric": verdicts_rubric,
            },
        )
        self.support_threshold = self._setting(
            "support_threshold", support_threshold, DEFAULT_SUPPORT_THRESHOLD
        )
        self.overlap_threshold = self._setting(
            "overlap_threshold", overlap_threshold, DEFAULT_OVERLAP_THRESHOLD
        )

    def _text(self, sample: Sample) -> str:
        raise NotImplementedError

    async def _score(
        self, sample: Sample, services: Services, details: JSONObject
    ) -> Score:
        text = self._text(sample)
        chunks = sample.case.context
        if not join_context(chunks):
            raise _Unscorable("the context has no text to check statements against")
        if not text.strip():
            raise _Unscorable(self.empty_reason)
        if self.mode == "judge":
            verdicts = await self._judge(sample, services, text, details)
        else:
            details["support_threshold"] = self.support_threshold
            details["overlap_threshold"] = self.overlap_threshold
            verdicts = await self._embedding(services, text, chunks)
        details["verdicts"] = verdicts
        supported = sum(entry["verdict"] for entry in verdicts)
        total = len(verdicts)
        return self.ok(
            supported / total, f"{supported} of {total} {self.summary}", details
        )

    async def _judge(
        self, sample: Sample, services: Services, text: str, details: JSONObject
    ) -> list[JSONObject]:
        rubric = self.rubrics["statements_rubric"]
        variables: JSONObject = {"text": text}
        question = sample.case.question()
        if question:
            variables["question"] = question
        reply = await _ask(services, rubric, variables, self.model)
        _record(details, rubric, reply)
        statements = _read(reply, parse_statements, details)
        if not statements:
            raise _Unscorable(self.empty_reason)
        details["statements"] = statements
        rubric = self.rubrics["verdicts_rubric"]
        variables = {
            "context": join_context(sample.case.context),
            "statements": statements,
        }
        reply = await _ask(services, rubric, variables, self.model)
        _record(details, rubric, reply)
        verdicts = _read(
            reply, lambda raw: parse_verdicts(raw, len(statements)), details
        )
        return [
            {"statement": statement, "verdict": verdict, "reason": reason}
            for statement, (verdict, reason) in zip(statements, verdicts, strict=True)
        ]

    async def _embedding(
        self, services: Services, text: str, chunks: Sequence[str]
    ) -> list[JSONObject]:
        statements = sentences(text)
        if not statements:
            raise _Unscorable(self.empty_reason)
        context_sentences = [line for chunk in chunks for line in sentences(chunk)]
        if not context_sentences:
            raise _Unscorable("the context has no text to check statements against")
        vectors = await _vectors(services, [*statements, *context_sentences])
        context_matrix = np.stack([vectors[line] for line in context_sentences])
        context_words = set(content_tokens("\n".join(chunks)))
        verdicts = []
        for statement in statements:
            similarities = context_matrix @ vectors[statement]
            best = int(np.argmax(similarities))
            similarity = float(np.clip(similarities[best], -1.0, 1.0))
            own = set(content_tokens(statement))
            overlap = len(own & context_words) / len(own) if own else None
            supported = similarity >= self.support_threshold or (
                overlap is not None and overlap >= self.overlap_threshold
            )
            verdicts.append(
                {
                    "statement": statement,
                    "verdict": int(supported),
                    "similarity": round(similarity, 4),
                    "overlap": None if overlap is None else round(overlap, 4),
                    "best_match": context_sentences[best],
                }
            )
        return verdicts


@register
class Faithfulness(_StatementSupport):
    """Supported answer statements / answer statements (RAGAS faithfulness).

    Settings: ``mode`` (``judge`` or ``embedding``, default ``judge``);
    judge mode: ``model``, ``statements_rubric``, ``verdicts_rubric``;
    embedding mode: ``support_threshold`` (0.6), ``overlap_threshold`` (0.8).
    """

    kind = "faithfulness"
    requires = frozenset({"context"})
    summary = "answer statements are supported by the context"

    def _text(self, sample: Sample) -> str:
        return sample.output


@register
class ContextRecall(_StatementSupport):
    """Reference statements the context supports / reference statements.

    This is RAGAS context recall; it needs the case's ``expected`` answer.
    Settings as for ``faithfulness``.
    """

    kind = "context_recall"
    requires = frozenset({"context", "expected"})
    empty_reason = "reference answer has no statements to check"
    summary = "reference statements are attributable to the context"

    def _text(self, sample: Sample) -> str:
        return sample.case.expected or ""


@register
class AnswerRelevancy(_RagMetric):
    """How well the answer addresses the question (RAGAS answer relevancy).

    Judge mode runs the questions rubric, which generates ``questions``
    questions (default 3) that the answer answers and flags a noncommittal
    answer. The score is the mean cosine similarity between the embedding of the case's
    question and those of the generated questions, or 0 for a noncommittal
    answer. Embedding mode scores the cosine similarity between the question
    and the answer. Either is clipped to [0, 1]. Needs the case's question.

    NOTE: RAGAS makes N separate calls that each return one question and a
    noncommittal flag, and scores 0 only when every flag is set. Here one
    call returns N questions and one flag, so the two agree when RAGAS's
    flags are unanimous.
    """

    kind = "answer_relevancy"
    rubric_settings: ClassVar[dict[str, str]] = {"questions_rubric": rubrics.QUESTIONS}
    needs_embedder_in_judge_mode = True

    def __init__(
        self,
        name: str | None = None,
        threshold: float | None = None,
        mode: str = "judge",
        model: str | None = None,
        questions_rubric: str | None = None,
        questions: int | None = None,
    ) -> None:
        super().__init__(
            name, threshold, mode, model, {"questions_rubric": questions_rubric}
        )
        if questions is None:
            questions = DEFAULT_QUESTIONS
        elif self.mode != "judge":
            raise EvaluatorConfigError(
                f"{self.name}: questions applies in judge mode only; remove it "
                "or set mode: judge"
            )
        if (
            isinstance(questions, bool)
            or not isinstance(questions, int)
            or not 1 <= questions <= MAX_QUESTIONS
        ):
            raise EvaluatorConfigError(
                f"{self.name}: questions must be a whole number from 1 to "
                f"{MAX_QUESTIONS}, got {questions!r}"
            )
        self.questions = questions

    async def _score(
        self, sample: Sample, services: Services, details: JSONObject
    ) -> Score:
        question = sample.case.question().strip()
        if not question:
            raise _Unscorable(
                f"case {sample.case.key!r} has no question: set a question, "
                "query or input variable, or end its messages with a user message"
            )
        answer = sample.output.strip()
        if not answer:
            raise _Unscorable("the output is empty, so there is no answer to score")

        if self.mode == "embedding":
            vectors = await _vectors(services, [question, answer])
            similarity = _cosine(vectors[question], vectors[answer])
            details["similarity"] = round(similarity, 4)
            return self.ok(
                _unit_interval(similarity),
                f"the answer's cosine similarity to the question is {similarity:.3f}",
                details,
            )

        rubric = self.rubrics["questions_rubric"]
        reply = await _ask(
            services, rubric, {"answer": answer, "n": self.questions}, self.model
        )
        _record(details, rubric, reply)
        generated, noncommittal = _read(reply, parse_questions, details)
        generated = generated[: self.questions]

        vectors = await _vectors(services, [question, *generated])
        similarities = [_cosine(vectors[question], vectors[q]) for q in generated]
        mean = sum(similarities) / len(similarities)
        details["generated_questions"] = [
            {"question": q, "similarity": round(s, 4)}
            for q, s in zip(generated, similarities, strict=True)
        ]
        details["noncommittal"] = noncommittal
        details["mean_similarity"] = round(mean, 4)

        if noncommittal:
            return self.ok(0.0, "the judge found the answer noncommittal", details)
        return self.ok(
            _unit_interval(mean),
            f"mean cosine similarity of the question to {len(generated)} questions "
            f"generated from the answer: {mean:.3f}",
            details,
        )


@register
class ContextPrecision(_RagMetric):
    """Whether the relevant chunks are ranked first (RAGAS context precision).

    With v_k = 1 when the k-th chunk (in retrieval order) is relevant, the
    score is sum_k precision@k * v_k / (number of relevant chunks), and 0
    when no chunk is relevant. Relevance is judged against the case's
    ``expected`` answer, or the output when the case has none. Judge mode
    runs the context-useful rubric once per chunk. Embedding mode calls a
    chunk relevant when some sentence of the reference and some sentence of
    the chunk reach ``relevance_threshold`` (0.5) cosine similarity, or when
    every content word of the reference occurs in the chunk.
    """

    kind = "context_precision"
    requires = frozenset({"context"})
    rubric_settings: ClassVar[dict[str, str]] = {
        "usefulness_rubric": rubrics.CONTEXT_USEFUL
    }

    def __init__(
        self,
        name: str | None = None,
        threshold: float | None = None,
        mode: str = "judge",
        model: str | None = None,
        usefulness_rubric: str | None = None,
        relevance_threshold: float | None = None,
    ) -> None:
        super().__init__(
            name, threshold, mode, model, {"usefulness_rubric": usefulness_rubric}
        )
        self.relevance_threshold = self._setting(
            "relevance_threshold", relevance_threshold, DEFAULT_RELEVANCE_THRESHOLD
        )

    async def _score(
        self, sample: Sample, services: Services, details: JSONObject
    ) -> Score:
        expected = sample.case.expected
        if expected is not None and expected.strip():
            reference, source = expected.strip(), "expected"
        else:
            reference, source = sample.output.strip(), "output"
        if not reference:
            raise _Unscorable(
                "there is no reference answer and the output is empty, so there is "
                "nothing to judge the context against"
            )
        details["reference_source"] = source

        chunks = list(sample.case.context)
        if self.mode == "judge":
            verdicts = await self._judge(sample, services, reference, chunks, details)
        else:
            details["relevance_threshold"] = self.relevance_threshold
            verdicts = await self._embedding(services, reference, chunks)

        relevance = [entry["verdict"] for entry in verdicts]
        value = average_precision(relevance)
        details["verdicts"] = verdicts

        relevant = sum(relevance)
        if relevant == 0:
            reason = f"none of the {len(chunks)} chunks is relevant"
        else:
            ranks = [str(rank) for rank, flag in enumerate(relevance, 1) if flag]
            where = "rank" if relevant == 1 else "ranks"
            reason = (
                f"{relevant} of {len(chunks)} chunks are relevant, at {where} "
                f"{', '.join(ranks)}; average precision {value:.3f}"
            )
        return self.ok(value, reason, details)

    async def _judge(
        self,
        sample: Sample,
        services: Services,
        reference: str,
        chunks: list[str],
        details: JSONObject,
    ) -> list[JSONObject]:
        rubric = self.rubrics["usefulness_rubric"]
        question = sample.case.question()

        async def judge_chunk(chunk: str) -> JudgeReply | None:
            if not chunk.strip():
                return None
            variables: JSONObject = {"context": chunk, "answer": reference}
            if question:
                variables["question"] = question
            return await _ask(services, rubric, variables, self.model)

        # One call per chunk, all concurrent. gather keeps retrieval order.
        replies = await asyncio.gather(
            *(judge_chunk(chunk) for chunk in chunks), return_exceptions=True
        )
        for outcome in replies:
            if isinstance(outcome, BaseException):
                raise outcome
        verdicts = []
        for index, outcome in enumerate(replies):
            assert not isinstance(outcome, BaseException)
            if outcome is None:
                verdicts.append({"chunk": index, "verdict": 0, "reason": "empty chunk"})
                continue
            _record(details, rubric, outcome)
            verdict, reason = _read(
                outcome, parse_chunk_verdict, details, f" for chunk {index + 1}"
            )
            verdicts.append(
                {
                    "chunk": index,
                    "verdict": verdict,
                    "reason": reason,
                    "judge_trace_id": outcome.trace_id,
                }
            )
        return verdicts

    async def _embedding(
        self, services: Services, reference: str, chunks: list[str]
    ) -> list[JSONObject]:
        reference_lines = sentences(reference) or [reference]
        reference_words = set(content_tokens(reference))
        chunk_lines = [sentences(chunk) or [chunk.strip()] for chunk in chunks]
        texts = [*reference_lines]
        for lines in chunk_lines:
            texts.extend(line for line in lines if line)
        vectors = await _vectors(services, texts)
        reference_matrix = np.stack([vectors[line] for line in reference_lines])
        verdicts = []
        for index, (chunk, lines) in enumerate(zip(chunks, chunk_lines, strict=True)):
            lines = [line for line in lines if line]
            if not lines:
                verdicts.append({"chunk": index, "verdict": 0, "reason": "empty chunk"})
                continue
            matrix = np.stack([vectors[line] for line in lines])
            similarity = float(np.clip((reference_matrix @ matrix.T).max(), -1, 1))
            contained = bool(reference_words) and reference_words <= set(
                content_tokens(chunk)
            )
            relevant = similarity >= self.relevance_threshold or contained
            verdicts.append(
                {
                    "chunk": index,
                    "verdict": int(relevant),
                    "similarity": round(similarity, 4),
                    "contained": contained,
                }
            )
        return verdicts
