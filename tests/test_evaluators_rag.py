"""The RAG metrics: hand-computed scores, judge mode through a real gateway,
embedding mode with the real MiniLM model, and every case they cannot score.

Judge-mode tests script the fake upstream's replies (see
tests/test_evaluators_judge.py for the gateway they run through). Tests
marked ``local_model`` embed with all-MiniLM-L6-v2, served by the gateway's
``local-embeddings`` provider as in the default config.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from keelway.evals.base import (
    Case,
    EvaluatorConfigError,
    Sample,
    Score,
    ServiceError,
    Services,
)
from keelway.evals.evaluators import KINDS, build
from keelway.evals.evaluators.judge import JudgeOutputError
from keelway.evals.evaluators.rag import (
    AnswerRelevancy,
    ContextPrecision,
    ContextRecall,
    Faithfulness,
    average_precision,
    parse_chunk_verdict,
    parse_questions,
    parse_statements,
    parse_verdicts,
)
from keelway.evals.text import content_tokens, sentences, token_overlap, words
from keelway.store.database import open_database
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_evaluators_judge import (
    GatewayLoop,
    gateway_config,
    install_rubrics,
    judge_models,
    scripted_requests,
    user_message,
)

EIFFEL_CONTEXT = (
    "The Eiffel Tower is in Paris. It was completed in 1889.",
    "The tower is 330 metres tall and was designed by Gustave Eiffel's company.",
)
EIFFEL = Case(
    key="eiffel",
    variables={"question": "Tell me about the Eiffel Tower."},
    expected="The Eiffel Tower in Paris was completed in 1889.",
    context=EIFFEL_CONTEXT,
)
STATEMENTS = [
    "The Eiffel Tower is in Paris.",
    "The Eiffel Tower was completed in 1889.",
    "The Eiffel Tower is made of gold.",
]


def verdicts_reply(*flags: int) -> str:
    items = [
        f'{{"statement": "s{i}", "reason": "r{i}", "verdict": {flag}}}'
        for i, flag in enumerate(flags, start=1)
    ]
    return "[" + ", ".join(items) + "]"


def json_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(database_url: str, upstream: FakeOpenAI) -> Iterator[GatewayLoop]:
    database = open_database(database_url)
    install_rubrics(database)
    models = judge_models(upstream)
    models["all-minilm-l6-v2"] = {
        "deployments": [{"provider": "local-embeddings", "model": "all-MiniLM-L6-v2"}]
    }
    loop = GatewayLoop(gateway_config(models), database)
    yield loop
    loop.close()
    database.close()


@pytest.fixture(autouse=True)
def fresh_script(upstream: FakeOpenAI) -> Iterator[None]:
    upstream.clear_script()
    yield
    upstream.clear_script()


def score(
    gateway: GatewayLoop,
    evaluator: Any,
    case: Case,
    output: str,
    services: Services | None = None,
) -> Score:
    sample = Sample(case, output)
    result: Score = gateway.run(
        evaluator.evaluate(sample, services or gateway.services)
    )
    return result


def offline(evaluator: Any, case: Case, output: str, services: Services) -> Score:
    result: Score = asyncio.run(evaluator.evaluate(Sample(case, output), services))
    return result


class TableEmbedder:
    """Embeds each text to a fixed unit vector, so similarities are known."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    async def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = np.asarray([self.table[text] for text in texts], dtype=np.float32)
        unit: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return unit


async def failing_embedder(texts: Sequence[str]) -> np.ndarray:
    raise ServiceError("/v1/embeddings failed after 2 attempts: 503: overloaded")


async def unused_judge(*args: Any) -> Any:
    raise AssertionError("the judge must not be called")


# Context precision, by hand


def test_average_precision_relevant_first_and_third() -> None:
    # (precision@1 * 1 + precision@3 * 1) / 2 = (1/1 + 2/3) / 2
    assert average_precision([1, 0, 1]) == pytest.approx(0.8333, abs=1e-4)


def test_average_precision_relevant_second() -> None:
    # precision@2 * 1 / 1 = 1/2
    assert average_precision([0, 1]) == 0.5


def test_average_precision_relevant_second_and_third() -> None:
    # (1/2 + 2/3) / 2
    assert average_precision([0, 1, 1]) == pytest.approx(0.5833, abs=1e-4)


def test_average_precision_all_relevant() -> None:
    assert average_precision([1, 1, 1]) == 1.0


def test_average_precision_none_relevant_is_zero() -> None:
    assert average_precision([0, 0, 0]) == 0.0


# Sentences and tokens


def test_sentences_split_on_ends_and_lines() -> None:
    text = "Paris is the capital. Is it big? Yes!\nIt has museums"
    assert sentences(text) == [
        "Paris is the capital.",
        "Is it big?",
        "Yes!",
        "It has museums",
    ]


def test_sentences_keep_decimals() -> None:
    assert sentences("Python 3.11 is fast. Pi is 3.14159.") == [
        "Python 3.11 is fast.",
        "Pi is 3.14159.",
    ]


def test_sentences_keep_abbreviations() -> None:
    text = "Bring tools, e.g. a hammer, i.e. something heavy. Dr. Smith agrees."
    assert sentences(text) == [
        "Bring tools, e.g. a hammer, i.e. something heavy.",
        "Dr. Smith agrees.",
    ]


def test_sentences_keep_initials_and_domains() -> None:
    text = "J. R. R. Tolkien wrote it. See example.com for more."
    assert sentences(text) == [
        "J. R. R. Tolkien wrote it.",
        "See example.com for more.",
    ]


def test_sentences_end_at_etc_before_a_capital() -> None:
    assert sentences("Apples, pears, etc. Then bread.") == [
        "Apples, pears, etc.",
        "Then bread.",
    ]


def test_sentences_drop_empties_and_markers() -> None:
    assert sentences("- First point\n\n2. Second point\n  .  \n") == [
        "First point",
        "Second point",
    ]


def test_sentences_of_empty_text() -> None:
    assert sentences("") == []


def test_sentences_of_unicode_text() -> None:
    assert sentences("東京は日本の首都です。人口は多い！Ça va? Très bien.") == [
        "東京は日本の首都です。",
        "人口は多い！",
        "Ça va?",
        "Très bien.",
    ]


def test_content_tokens_drop_stopwords() -> None:
    assert content_tokens("The Tower is IN Paris, and it is tall.") == [
        "tower",
        "paris",
        "tall",
    ]


def test_words_keep_decimals_and_accents() -> None:
    assert words("Crème brûlée costs 3.50, don't it?") == [
        "crème",
        "brûlée",
        "costs",
        "3.50",
        "don't",
        "it",
    ]


def test_words_split_cjk_characters() -> None:
    assert words("東京タワー") == ["東", "京", "タ", "ワ", "ー"]


def test_casefold_matches_german_sharp_s() -> None:
    assert content_tokens("STRASSE") == content_tokens("straße")


def test_token_overlap_distinct_words() -> None:
    # tower, paris, rome: two of three occur in the reference.
    assert token_overlap("The tower is in Paris or Rome", "Paris has a tower") == (
        pytest.approx(2 / 3)
    )


def test_token_overlap_of_stopwords_only() -> None:
    assert token_overlap("It is.", "Anything") is None


# Reading judge replies


def test_statements_wrapped_in_an_object() -> None:
    text = '{"statements": ["A is B.", " ", "C is D."]}'
    assert parse_statements(text) == ["A is B.", "C is D."]


def test_statements_must_be_strings() -> None:
    with pytest.raises(JudgeOutputError, match="statement 2 must be a string"):
        parse_statements('["A is B.", {"text": "C"}]')


def test_verdicts_in_a_fence() -> None:
    text = "```json\n" + verdicts_reply(1, 0) + "\n```"
    assert parse_verdicts(text, 2) == [(1, "r1"), (0, "r2")]


def test_verdicts_accept_booleans() -> None:
    text = '[{"verdict": true, "reason": "x"}, {"verdict": false}]'
    assert parse_verdicts(text, 2) == [(1, "x"), (0, "")]


def test_verdicts_count_must_match() -> None:
    with pytest.raises(JudgeOutputError, match="expected 3 verdicts.*got 2"):
        parse_verdicts(verdicts_reply(1, 1), 3)


def test_verdict_must_be_binary() -> None:
    with pytest.raises(JudgeOutputError, match="must be 1 or 0"):
        parse_verdicts('[{"verdict": 0.5}]', 1)


def test_chunk_verdict() -> None:
    assert parse_chunk_verdict('{"reason": "Names it.", "verdict": 1}') == (
        1,
        "Names it.",
    )


def test_questions_need_the_noncommittal_flag() -> None:
    with pytest.raises(JudgeOutputError, match='no "noncommittal"'):
        parse_questions('{"questions": ["Why?"]}')


def test_questions_must_not_be_empty() -> None:
    with pytest.raises(JudgeOutputError, match="generated no questions"):
        parse_questions('{"questions": [], "noncommittal": 0}')


# Settings


def test_kinds_are_registered() -> None:
    assert KINDS["faithfulness"] is Faithfulness
    assert KINDS["answer_relevancy"] is AnswerRelevancy
    assert KINDS["context_precision"] is ContextPrecision
    assert KINDS["context_recall"] is ContextRecall


def test_build_from_spec() -> None:
    spec = {"kind": "context_recall", "mode": "embedding", "support_threshold": 0.7}
    recall = build(spec)
    assert isinstance(recall, ContextRecall)
    assert recall.support_threshold == 0.7
    assert recall.overlap_threshold == 0.8


def test_defaults() -> None:
    faithfulness = Faithfulness()
    assert faithfulness.mode == "judge"
    assert faithfulness.threshold == 0.5
    assert faithfulness.rubrics == {
        "statements_rubric": "keelway-rag-statements@1.0.0",
        "verdicts_rubric": "keelway-rag-verdicts@1.0.0",
    }
    assert faithfulness.support_threshold == 0.6
    assert faithfulness.overlap_threshold == 0.8
    assert AnswerRelevancy().questions == 3
    assert ContextPrecision(mode="embedding").relevance_threshold == 0.5
    assert ContextPrecision().rubrics == {
        "usefulness_rubric": "keelway-rag-context-useful@1.0.0"
    }


@pytest.mark.parametrize(
    ("kind", "settings", "message"),
    [
        (Faithfulness, {"mode": "llm"}, "mode must be 'judge' or 'embedding'"),
        (
            Faithfulness,
            {"support_threshold": 0.7},
            "support_threshold applies in embedding mode only",
        ),
        (
            Faithfulness,
            {"mode": "embedding", "overlap_threshold": 1.5},
            "overlap_threshold must be from 0 to 1",
        ),
        (
            ContextRecall,
            {"mode": "embedding", "support_threshold": "high"},
            "support_threshold must be a number",
        ),
        (
            Faithfulness,
            {"mode": "embedding", "model": "judge"},
            "model applies in judge mode only",
        ),
        (
            ContextRecall,
            {"mode": "embedding", "verdicts_rubric": "mine@1.0.0"},
            "verdicts_rubric applies in judge mode only",
        ),
        (Faithfulness, {"statements_rubric": "a@b@c"}, "statements_rubric: invalid"),
        (AnswerRelevancy, {"questions": 0}, "questions must be a whole number"),
        (AnswerRelevancy, {"questions": 2.5}, "questions must be a whole number"),
        (
            AnswerRelevancy,
            {"mode": "embedding", "questions": 3},
            "questions applies in judge mode only",
        ),
        (
            ContextPrecision,
            {"relevance_threshold": 0.4},
            "relevance_threshold applies in embedding mode only",
        ),
    ],
)
def test_invalid_settings(
    kind: type[Any], settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(EvaluatorConfigError, match=message) as raised:
        kind(name="rag", **settings)
    assert str(raised.value).startswith("rag: ")


# What cannot be scored


def test_faithfulness_empty_output_is_error() -> None:
    services = Services(judge=unused_judge)
    result = offline(Faithfulness(), EIFFEL, "   ", services)
    assert result.status == "error"
    assert result.value is None
    assert result.reason == "answer has no statements to check"


def test_faithfulness_punctuation_output_is_error() -> None:
    services = Services(embed=TableEmbedder({}))
    result = offline(Faithfulness(mode="embedding"), EIFFEL, "... !", services)
    assert result.status == "error"
    assert result.reason == "answer has no statements to check"


def test_faithfulness_without_context_is_error() -> None:
    case = Case(key="bare", variables={"question": "Why?"})
    result = offline(Faithfulness(), case, "Because.", Services(judge=unused_judge))
    assert result.status == "error"
    assert result.reason == "case 'bare' has no reference context"


def test_faithfulness_blank_context_is_error() -> None:
    case = Case(key="blank", context=(" ", "\n"))
    result = offline(Faithfulness(), case, "Because.", Services(judge=unused_judge))
    assert result.status == "error"
    assert result.reason == "case 'blank' has no reference context"


def test_recall_without_expected_is_error() -> None:
    case = Case(key="noref", context=EIFFEL_CONTEXT)
    result = offline(ContextRecall(), case, "x", Services(judge=unused_judge))
    assert result.status == "error"
    assert result.reason == "case 'noref' has no expected output"


def test_precision_without_reference_is_error() -> None:
    case = Case(key="nothing", context=EIFFEL_CONTEXT)
    result = offline(ContextPrecision(), case, "", Services(judge=unused_judge))
    assert result.status == "error"
    assert result.reason.startswith("there is no reference answer")


def test_relevancy_without_question_is_error() -> None:
    case = Case(key="noq", context=EIFFEL_CONTEXT)
    embedder = TableEmbedder({})
    result = offline(
        AnswerRelevancy(mode="embedding"), case, "Paris.", Services(embed=embedder)
    )
    assert result.status == "error"
    assert result.reason.startswith("case 'noq' has no question")
    assert embedder.calls == []


def test_relevancy_empty_output_is_error() -> None:
    result = offline(
        AnswerRelevancy(mode="embedding"), EIFFEL, "", Services(embed=TableEmbedder({}))
    )
    assert result.status == "error"
    assert result.reason == "the output is empty, so there is no answer to score"


def test_judge_mode_without_judge_errors() -> None:
    result = offline(Faithfulness(), EIFFEL, "Paris.", Services())
    assert result.status == "error"
    assert result.reason == "no judge model is configured for this run"


def test_relevancy_judge_mode_needs_embedder() -> None:
    result = offline(AnswerRelevancy(), EIFFEL, "Paris.", Services(judge=unused_judge))
    assert result.status == "error"
    assert result.reason == "no embedding model is configured for this run"


def test_failed_embedding_call_is_error() -> None:
    result = offline(
        Faithfulness(mode="embedding"),
        EIFFEL,
        "It is in Paris.",
        Services(embed=failing_embedder),
    )
    assert result.status == "error"
    assert result.reason.startswith("embedding call failed: /v1/embeddings failed")


# Judge mode through the gateway


def test_faithfulness_two_of_three_supported(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    statements = json_list(STATEMENTS)
    verdicts = verdicts_reply(1, 1, 0)
    upstream.script([statements, verdicts])
    answer = "The Eiffel Tower is in Paris. It was completed in 1889 and is gold."
    result = score(gateway, Faithfulness(), EIFFEL, answer)
    assert result.status == "ok"
    assert result.value == pytest.approx(0.6667, abs=1e-4)
    assert result.passed is True
    assert result.reason == "2 of 3 answer statements are supported by the context"
    assert [v["verdict"] for v in result.details["verdicts"]] == [1, 1, 0]
    assert result.details["verdicts"][2] == {
        "statement": "The Eiffel Tower is made of gold.",
        "verdict": 0,
        "reason": "r3",
    }
    calls = result.details["judge_calls"]
    assert [c["rubric"] for c in calls] == [
        "keelway-rag-statements@1.0.0",
        "keelway-rag-verdicts@1.0.0",
    ]
    assert calls[0]["raw_output"] == statements
    assert calls[1]["raw_output"] == verdicts
    assert all(c["judge_trace_id"] for c in calls)
    first, second = scripted_requests(upstream)[-2:]
    assert f"<text>\n{answer}\n</text>" in user_message(first)
    assert "1. The Eiffel Tower is in Paris.\n" in user_message(second)
    assert "3. The Eiffel Tower is made of gold.\n" in user_message(second)
    assert "designed by Gustave Eiffel's company." in user_message(second)


def test_faithfulness_unparseable_keeps_raw_output(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script([json_list(STATEMENTS[:2]), "Both statements are supported."])
    result = score(gateway, Faithfulness(), EIFFEL, "It is in Paris, from 1889.")
    assert result.status == "error"
    assert result.value is None
    assert result.reason == (
        "judge output could not be parsed: no JSON array found in the reply"
    )
    assert result.details["raw_output"] == "Both statements are supported."


def test_faithfulness_too_few_verdicts(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script([json_list(STATEMENTS), verdicts_reply(1, 1)])
    result = score(gateway, Faithfulness(), EIFFEL, "Three claims.")
    assert result.status == "error"
    assert "expected 3 verdicts, one per statement, got 2" in result.reason


def test_faithfulness_no_judged_statements(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script(["[]"])
    result = score(gateway, Faithfulness(), EIFFEL, "Hello! Happy to help.")
    assert result.status == "error"
    assert result.reason == "answer has no statements to check"
    assert upstream.scripted_left == 0


def test_faithfulness_empty_output_skips_judge(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    before = len(scripted_requests(upstream))
    result = score(gateway, Faithfulness(), EIFFEL, "")
    assert result.status == "error"
    assert len(scripted_requests(upstream)) == before


def test_faithfulness_unicode_statements(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    statements = ["東京は日本の首都です。", "La tour Eiffel est en or."]
    upstream.script([json_list(statements), verdicts_reply(1, 0)])
    case = Case(
        key="unicode",
        variables={"question": "日本の首都は？"},
        context=("東京は日本の首都です。", "La tour Eiffel est à Paris."),
    )
    result = score(gateway, Faithfulness(), case, "東京です。La tour est en or.")
    assert result.value == 0.5
    assert result.details["verdicts"][0]["statement"] == "東京は日本の首都です。"
    sent = user_message(scripted_requests(upstream)[-1])
    assert "1. 東京は日本の首都です。\n2. La tour Eiffel est en or.\n" in sent


def test_recall_one_of_two_statements(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script(
        [
            json_list(["The tower is in Paris.", "The tower has a bakery."]),
            verdicts_reply(1, 0),
        ]
    )
    case = Case(
        key="recall",
        variables={"question": "Tell me about the tower."},
        expected="The tower is in Paris. It has a bakery.",
        context=EIFFEL_CONTEXT,
    )
    result = score(gateway, ContextRecall(), case, "output is not used")
    assert result.value == 0.5
    assert result.reason == (
        "1 of 2 reference statements are attributable to the context"
    )
    first = user_message(scripted_requests(upstream)[-2])
    assert "<text>\nThe tower is in Paris. It has a bakery.\n</text>" in first
    assert "output is not used" not in first


CHUNKS = (
    "Chunk one: the Eiffel Tower was completed in 1889.",
    "Chunk two: bread needs flour.",
    "Chunk three: the tower opened for the 1889 World's Fair.",
)
USEFUL = '{"reason": "It dates the tower.", "verdict": 1}'
USELESS = '{"reason": "Off topic.", "verdict": 0}'


def test_precision_relevant_first_and_third(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script({"Chunk one": USEFUL, "Chunk two": USELESS, "Chunk three": USEFUL})
    case = Case(
        key="precision",
        variables={"question": "When was the tower completed?"},
        expected="In 1889.",
        context=CHUNKS,
    )
    result = score(gateway, ContextPrecision(), case, "1889")
    assert result.value == pytest.approx(0.8333, abs=1e-4)
    assert [v["verdict"] for v in result.details["verdicts"]] == [1, 0, 1]
    assert [v["chunk"] for v in result.details["verdicts"]] == [0, 1, 2]
    assert result.details["verdicts"][1]["reason"] == "Off topic."
    assert result.details["reference_source"] == "expected"
    assert result.reason == (
        "2 of 3 chunks are relevant, at ranks 1, 3; average precision 0.833"
    )
    for request in scripted_requests(upstream)[-3:]:
        assert "<answer>\nIn 1889.\n</answer>" in user_message(request)


def test_precision_relevant_second(gateway: GatewayLoop, upstream: FakeOpenAI) -> None:
    upstream.script({"Chunk one": USELESS, "Chunk two": USEFUL})
    case = Case(key="second", expected="Flour.", context=CHUNKS[:2])
    result = score(gateway, ContextPrecision(), case, "Flour.")
    assert result.value == 0.5


def test_precision_no_relevant_chunk_zero(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script({"Chunk": USELESS})
    case = Case(key="none", expected="Rome.", context=CHUNKS)
    result = score(gateway, ContextPrecision(), case, "Rome.")
    assert result.status == "ok"
    assert result.value == 0.0
    assert result.passed is False
    assert result.reason == "none of the 3 chunks is relevant"


def test_precision_without_expected_uses_output(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script({"Chunk": USEFUL})
    case = Case(key="noref", context=CHUNKS[:1])
    result = score(gateway, ContextPrecision(), case, "It was finished in 1889.")
    assert result.value == 1.0
    assert result.details["reference_source"] == "output"
    sent = user_message(scripted_requests(upstream)[-1])
    assert "<answer>\nIt was finished in 1889.\n</answer>" in sent


def test_precision_unparseable_chunk_verdict(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script({"Chunk one": USEFUL, "Chunk two": "Not useful at all."})
    case = Case(key="bad", expected="1889", context=CHUNKS[:2])
    result = score(gateway, ContextPrecision(), case, "1889")
    assert result.status == "error"
    assert result.reason.startswith("judge output could not be parsed for chunk 2: ")
    assert result.details["raw_output"] == "Not useful at all."


def test_precision_unicode_chunks(gateway: GatewayLoop, upstream: FakeOpenAI) -> None:
    upstream.script({"日本の首都": USEFUL, "Lutèce": USELESS})
    case = Case(
        key="ja",
        expected="東京です。",
        context=("Lutèce était une ville gallo-romaine.", "日本の首都は東京です。"),
    )
    result = score(gateway, ContextPrecision(), case, "東京")
    assert [v["verdict"] for v in result.details["verdicts"]] == [0, 1]
    assert result.value == 0.5


QUESTION = "What is the capital of France?"
GENERATED = [
    "Which city is the capital of France?",
    "What is the largest city in France?",
    "Where is the Louvre?",
]
# Cosine similarities to the question: 1, 0.6 and 0.
TABLE = {
    QUESTION: [1.0, 0.0],
    GENERATED[0]: [1.0, 0.0],
    GENERATED[1]: [0.6, 0.8],
    GENERATED[2]: [0.0, 1.0],
}


def test_relevancy_mean_question_similarity(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script(['{"questions": ' + json_list(GENERATED) + ', "noncommittal": 0}'])
    services = Services(embed=TableEmbedder(TABLE), judge=gateway.client.judge)
    case = Case(key="france", variables={"question": QUESTION})
    result = score(gateway, AnswerRelevancy(), case, "Paris.", services)
    # (1 + 0.6 + 0) / 3
    assert result.value == pytest.approx(0.5333, abs=1e-4)
    assert result.passed is True
    assert [q["similarity"] for q in result.details["generated_questions"]] == [
        1.0,
        0.6,
        0.0,
    ]
    assert result.details["noncommittal"] is False
    assert "<answer>\nParis.\n</answer>" in user_message(
        scripted_requests(upstream)[-1]
    )
    assert "Write 3 different questions" in str(
        scripted_requests(upstream)[-1]["messages"][0]["content"]
    )


def test_relevancy_noncommittal_is_zero(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script(['{"questions": ' + json_list(GENERATED) + ', "noncommittal": 1}'])
    services = Services(embed=TableEmbedder(TABLE), judge=gateway.client.judge)
    case = Case(key="france", variables={"question": QUESTION})
    result = score(gateway, AnswerRelevancy(), case, "I am not sure.", services)
    assert result.status == "ok"
    assert result.value == 0.0
    assert result.reason == "the judge found the answer noncommittal"
    assert result.details["mean_similarity"] == pytest.approx(0.5333, abs=1e-4)


def test_relevancy_caps_generated_questions(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script(['{"questions": ' + json_list(GENERATED) + ', "noncommittal": 0}'])
    services = Services(embed=TableEmbedder(TABLE), judge=gateway.client.judge)
    case = Case(key="france", variables={"question": QUESTION})
    result = score(gateway, AnswerRelevancy(questions=2), case, "Paris.", services)
    # (1 + 0.6) / 2
    assert result.value == pytest.approx(0.8)


def test_relevancy_unparseable_questions(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script(["Which city is the capital of France?"])
    services = Services(embed=TableEmbedder(TABLE), judge=gateway.client.judge)
    case = Case(key="france", variables={"question": QUESTION})
    result = score(gateway, AnswerRelevancy(), case, "Paris.", services)
    assert result.status == "error"
    assert result.details["raw_output"] == "Which city is the capital of France?"


def test_judge_failure_is_an_error(gateway: GatewayLoop) -> None:
    result = score(gateway, Faithfulness(model="judge-down"), EIFFEL, "Paris.")
    assert result.status == "error"
    assert result.reason.startswith(
        "judge call failed (keelway-rag-statements@1.0.0): "
    )


# Embedding mode with the real MiniLM model


@pytest.mark.local_model
def test_embedding_faithfulness_copy_is_one(gateway: GatewayLoop) -> None:
    answer = "The Eiffel Tower is in Paris. It was completed in 1889."
    result = score(gateway, Faithfulness(mode="embedding"), EIFFEL, answer)
    assert result.value == 1.0
    assert [v["similarity"] for v in result.details["verdicts"]] == [1.0, 1.0]


@pytest.mark.local_model
def test_embedding_faithfulness_fabrication_lower(
    gateway: GatewayLoop,
) -> None:
    answer = (
        "The Eiffel Tower is in Paris. The tower was moved to Berlin during a "
        "storm in 1990. Its elevators are powered by bicycles."
    )
    result = score(gateway, Faithfulness(mode="embedding"), EIFFEL, answer)
    assert [v["verdict"] for v in result.details["verdicts"]] == [1, 0, 0]
    assert result.value == pytest.approx(1 / 3)
    assert result.passed is False
    assert result.details["verdicts"][1]["similarity"] < 0.6


@pytest.mark.local_model
def test_embedding_faithfulness_unrelated_zero(
    gateway: GatewayLoop,
) -> None:
    answer = "Tickets are free for cats on Tuesdays. Bananas are yellow."
    result = score(gateway, Faithfulness(mode="embedding"), EIFFEL, answer)
    assert result.value == 0.0


@pytest.mark.local_model
def test_embedding_context_recall(gateway: GatewayLoop) -> None:
    full = score(gateway, ContextRecall(mode="embedding"), EIFFEL, "unused")
    assert full.value == 1.0
    case = Case(
        key="half",
        expected="The Eiffel Tower is in Paris. It hosts a bakery run by cats.",
        context=EIFFEL_CONTEXT,
    )
    half = score(gateway, ContextRecall(mode="embedding"), case, "unused")
    assert [v["verdict"] for v in half.details["verdicts"]] == [1, 0]
    assert half.value == 0.5


@pytest.mark.local_model
def test_embedding_relevancy_ranks_relevant_first(
    gateway: GatewayLoop,
) -> None:
    case = Case(key="france", variables={"question": QUESTION})
    relevancy = AnswerRelevancy(mode="embedding")
    relevant = score(gateway, relevancy, case, "The capital of France is Paris.")
    unrelated = score(gateway, relevancy, case, "Bananas are rich in potassium.")
    assert relevant.value is not None
    assert unrelated.value is not None
    assert relevant.value > unrelated.value
    assert relevant.value > 0.5
    assert unrelated.value < 0.5


@pytest.mark.local_model
def test_embedding_context_precision(gateway: GatewayLoop) -> None:
    relevant = "The Eiffel Tower was completed in 1889 for the World's Fair."
    bread = "Bread recipes need flour, water and salt."
    cats = "Cats sleep for most of the day."
    reference = "The Eiffel Tower was completed in 1889."
    precision = ContextPrecision(mode="embedding")
    middle = Case(key="mid", expected=reference, context=(bread, relevant, cats))
    result = score(gateway, precision, middle, "unused")
    assert [v["verdict"] for v in result.details["verdicts"]] == [0, 1, 0]
    assert result.value == 0.5
    ends = Case(
        key="ends",
        expected=reference,
        context=(relevant, bread, "Construction of the tower finished in 1889."),
    )
    result = score(gateway, precision, ends, "unused")
    assert [v["verdict"] for v in result.details["verdicts"]] == [1, 0, 1]
    assert result.value == pytest.approx(0.8333, abs=1e-4)


@pytest.mark.local_model
def test_embedding_metrics_on_unicode_text(gateway: GatewayLoop) -> None:
    case = Case(
        key="ja",
        variables={"question": "日本の首都は？"},
        expected="東京は日本の首都です。",
        context=("東京は日本の首都です。人口は約1400万人です。", "Bread is baked."),
    )
    faithful = score(
        gateway, Faithfulness(mode="embedding"), case, "東京は日本の首都です。"
    )
    assert faithful.value == 1.0
    precision = score(gateway, ContextPrecision(mode="embedding"), case, "unused")
    assert [v["verdict"] for v in precision.details["verdicts"]] == [1, 0]
    assert precision.value == 1.0
