"""LLM-as-judge: reading judge replies, and grading through a real gateway.

The end-to-end tests run a keelway gateway in process, with the shipped
rubric prompts created in this module's store. Its ``judge`` model group
goes to the fake OpenAI upstream's ``scripted`` model, which answers each
call with the next reply a test scripted; ``judge-down`` goes to the fake's
``error-500`` model.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from keelway.config import Config, parse_config
from keelway.evals import rubrics
from keelway.evals.base import Case, EvaluatorConfigError, Sample, Services
from keelway.evals.client import GatewayClient, RetryPolicy, in_process_gateway
from keelway.evals.evaluators import KINDS, build
from keelway.evals.evaluators.judge import (
    DEFAULT_RUBRIC,
    POSITION_BIAS,
    JudgeOutputError,
    LLMJudge,
    ScoreOutOfScale,
    compare_pair,
    parse_judge_reply,
    parse_pair_reply,
)
from keelway.governance.audit import AuditLog
from keelway.governance.roles import Principal
from keelway.prompts.registry import PromptRegistry
from keelway.store.database import Database, open_database
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI

T = TypeVar("T")

# Retries fast enough for a test: two attempts, a few milliseconds apart.
FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.002, timeout=20)
FRANCE = Case(
    key="france",
    variables={"question": "What is the capital of France?"},
    expected="Paris",
)


class GatewayLoop:
    """An in-process gateway whose client lives on an event loop of its own.

    The loop runs in a thread for the whole module, so every test shares one
    gateway and submits its coroutines with :meth:`run`.
    """

    def __init__(
        self, config: Config, database: Database, retry: RetryPolicy = FAST_RETRY
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stack = contextlib.AsyncExitStack()
        self.client: GatewayClient = self.run(
            self.stack.enter_async_context(in_process_gateway(config, database, retry))
        )
        self.services = Services(embed=self.client.embed, judge=self.client.judge)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.run(self.stack.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def judge_models(upstream: FakeOpenAI) -> dict[str, Any]:
    """Model groups ``judge`` (scripted replies) and ``judge-down`` (500s)."""

    def group(model: str) -> dict[str, Any]:
        deployment = {
            "provider": "openai",
            "model": model,
            "base_url": upstream.base_url,
            "api_key": API_KEY,
            "timeout": {"connect": 2, "total": 10},
        }
        return {"deployments": [deployment]}

    return {"judge": group("scripted"), "judge-down": group("error-500")}


def gateway_config(models: dict[str, Any]) -> Config:
    """A gateway config whose failures reach the client unretried."""
    return parse_config(
        {
            "models": models,
            "routing": {
                "retries": {"max_retries": 0},
                "circuit_breaker": {"failures": 1000},
            },
        }
    )


def install_rubrics(database: Database) -> None:
    """Create every shipped rubric at version 1.0.0, as proposed versions."""
    registry = PromptRegistry(database, AuditLog(database))
    for name in rubrics.RUBRICS:
        registry.create(Principal.local(), name, rubrics.rubric_content(name))


def user_message(body: dict[str, Any]) -> str:
    users = [m for m in body["messages"] if m["role"] == "user"]
    return str(users[-1]["content"])


def scripted_requests(upstream: FakeOpenAI) -> list[dict[str, Any]]:
    return [r for r in upstream.requests if r.get("model") == "scripted"]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(database_url: str, upstream: FakeOpenAI) -> Iterator[GatewayLoop]:
    database = open_database(database_url)
    install_rubrics(database)
    loop = GatewayLoop(gateway_config(judge_models(upstream)), database)
    yield loop
    loop.close()
    database.close()


@pytest.fixture(autouse=True)
def fresh_script(upstream: FakeOpenAI) -> Iterator[None]:
    upstream.clear_script()
    yield
    upstream.clear_script()


# Reading a judge's reply


def test_plain_json_reply() -> None:
    verdict = parse_judge_reply('{"score": 0.8, "reason": "Mostly right."}')
    assert verdict.value == pytest.approx(0.8)
    assert verdict.reason == "Mostly right."


def test_fenced_reply_five_point_scale() -> None:
    text = 'My verdict:\n```json\n{"score": 4, "reason": "Terse."}\n```\nDone.'
    verdict = parse_judge_reply(text, (1, 5))
    assert verdict.score == 4
    # (4 - 1) / (5 - 1)
    assert verdict.value == pytest.approx(0.75)
    assert verdict.reason == "Terse."


def test_fence_without_language_tag() -> None:
    verdict = parse_judge_reply('```\n{"score": 0, "reason": "Wrong."}\n```')
    assert verdict.value == 0.0


def test_json_with_prose_around_it() -> None:
    text = 'Weighing {both} sides, {"score": 1, "reason": "Exact."} is fair.'
    verdict = parse_judge_reply(text)
    assert verdict.value == 1.0
    assert verdict.reason == "Exact."


def test_score_above_the_scale() -> None:
    with pytest.raises(ScoreOutOfScale, match=r"score 7 is outside the scale \[1, 5\]"):
        parse_judge_reply('{"score": 7, "reason": "Great."}', (1, 5))


def test_score_below_the_scale() -> None:
    with pytest.raises(ScoreOutOfScale, match="outside the scale"):
        parse_judge_reply('{"score": -0.1, "reason": "Bad."}')


def test_missing_score() -> None:
    with pytest.raises(JudgeOutputError, match='no "score"'):
        parse_judge_reply('{"reason": "Fine."}')


def test_score_given_as_text() -> None:
    with pytest.raises(JudgeOutputError, match="must be a number, got string"):
        parse_judge_reply('{"score": "0.8", "reason": "Fine."}')


def test_score_given_as_boolean() -> None:
    with pytest.raises(JudgeOutputError, match="must be a number, got boolean"):
        parse_judge_reply('{"score": true}')


def test_nan_score_is_not_json() -> None:
    with pytest.raises(JudgeOutputError, match="no JSON object"):
        parse_judge_reply('{"score": NaN, "reason": "?"}')


def test_prose_without_json() -> None:
    with pytest.raises(JudgeOutputError, match="no JSON object found"):
        parse_judge_reply("The answer is correct, I would give it a 1.")


def test_empty_reply() -> None:
    with pytest.raises(JudgeOutputError, match="the reply is empty"):
        parse_judge_reply("")


def test_blank_reply() -> None:
    with pytest.raises(JudgeOutputError, match="the reply is empty"):
        parse_judge_reply("  \n\t")


def test_reason_must_be_text() -> None:
    with pytest.raises(JudgeOutputError, match='"reason" must be a string'):
        parse_judge_reply('{"score": 1, "reason": ["a"]}')


def test_missing_reason_reads_as_empty() -> None:
    assert parse_judge_reply('{"score": 0.5}').reason == ""


def test_unicode_reason() -> None:
    reason = "Réponse exacte : 東京 est la capitale ✓"
    verdict = parse_judge_reply('{"score": 1, "reason": "' + reason + '"}')
    assert verdict.reason == reason


def test_escaped_unicode_reason() -> None:
    verdict = parse_judge_reply('{"score": 1, "reason": "caf\\u00e9"}')
    assert verdict.reason == "café"


def test_pair_reply_reads_winner_without_case() -> None:
    assert parse_pair_reply('{"winner": " b ", "reason": "Shorter."}') == (
        "B",
        "Shorter.",
    )


def test_pair_reply_tie() -> None:
    assert parse_pair_reply('{"winner": "TIE"}') == ("tie", "")


def test_pair_reply_unknown_winner() -> None:
    with pytest.raises(JudgeOutputError, match='must be "A", "B" or "tie"'):
        parse_pair_reply('{"winner": "C", "reason": "?"}')


# Settings


def test_registered_as_llm_judge() -> None:
    assert KINDS["llm_judge"] is LLMJudge


def test_build_from_spec() -> None:
    judge = build({"kind": "llm_judge", "name": "correct", "scale": [1, 5]})
    assert isinstance(judge, LLMJudge)
    assert judge.name == "correct"
    assert judge.scale == (1.0, 5.0)


def test_build_rejects_unknown_setting() -> None:
    with pytest.raises(EvaluatorConfigError, match="'llm_judge'.*'rubrics'"):
        build({"kind": "llm_judge", "rubrics": "x"})


def test_defaults() -> None:
    judge = LLMJudge()
    assert judge.name == "llm_judge"
    assert judge.rubric == DEFAULT_RUBRIC == "keelway-judge-correctness@1.0.0"
    assert judge.model is None
    assert judge.scale == (0.0, 1.0)
    assert judge.threshold == 0.5


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"scale": [5, 1]}, "scale must be \\[min, max\\] with min below max"),
        ({"scale": [1, 1]}, "min below max"),
        ({"scale": [0]}, "scale must be a list of two numbers"),
        ({"scale": "0-1"}, "scale must be a list of two numbers"),
        ({"scale": [0, True]}, "two finite numbers"),
        ({"scale": [0, float("inf")]}, "two finite numbers"),
        ({"rubric": "two@@ats"}, "rubric: invalid prompt reference"),
        ({"rubric": 7}, "rubric must be a prompt reference"),
        ({"model": ""}, "model must be the name of a model group"),
        ({"threshold": 2}, "threshold must be from 0 to 1"),
    ],
)
def test_invalid_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(EvaluatorConfigError, match=message) as raised:
        LLMJudge(name="grader", **settings)
    assert str(raised.value).startswith("grader: ")


def test_no_judge_configured() -> None:
    score = asyncio.run(LLMJudge().evaluate(Sample(FRANCE, "Paris"), Services()))
    assert score.status == "error"
    assert score.value is None
    assert score.reason == "no judge model is configured for this run"


# Grading through the gateway


def test_verdict_maps_to_unit_score(gateway: GatewayLoop, upstream: FakeOpenAI) -> None:
    reply = '{"score": 4, "reason": "Correct but terse."}'
    upstream.script([reply])
    judge = LLMJudge(scale=[1, 5])
    score = gateway.run(judge.evaluate(Sample(FRANCE, "Paris."), gateway.services))
    assert score.status == "ok"
    assert score.value == pytest.approx(0.75)
    assert score.passed is True
    assert score.reason == "Correct but terse."
    assert score.details["raw_output"] == reply
    assert score.details["judge_score"] == 4
    assert score.details["judge_model"]
    assert score.details["judge_trace_id"]
    assert score.details["rubric"] == "keelway-judge-correctness@1.0.0"


def test_rubric_receives_case_fields(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script(['{"score": 1, "reason": "Exact."}'])
    case = Case(
        key="eiffel",
        variables={"question": "When was the Eiffel Tower finished?"},
        expected="In 1889.",
        context=("The tower was completed in 1889.", "It is 330 m tall."),
    )
    gateway.run(LLMJudge().evaluate(Sample(case, "1889"), gateway.services))
    sent = scripted_requests(upstream)[-1]
    text = user_message(sent)
    assert "<question>\nWhen was the Eiffel Tower finished?\n</question>" in text
    assert "<reference>\nIn 1889.\n</reference>" in text
    assert "completed in 1889.\n\nIt is 330 m tall." in text
    assert text.endswith("<answer>\n1889\n</answer>\n")


def test_no_reference_omits_block(gateway: GatewayLoop, upstream: FakeOpenAI) -> None:
    upstream.script(['{"score": 1, "reason": "Right."}'])
    case = Case(key="bare", variables={"question": "2 + 2?"})
    score = gateway.run(LLMJudge().evaluate(Sample(case, "4"), gateway.services))
    assert score.value == 1.0
    assert "<reference>" not in user_message(scripted_requests(upstream)[-1])


def test_unparseable_verdict_is_error(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    reply = "I would give this answer a solid four out of five."
    upstream.script([reply])
    score = gateway.run(LLMJudge().evaluate(Sample(FRANCE, "Paris"), gateway.services))
    assert score.status == "error"
    assert score.value is None
    assert score.passed is None
    assert score.reason.startswith("judge output could not be parsed: ")
    assert score.details["raw_output"] == reply
    assert score.details["judge_trace_id"]


def test_out_of_scale_verdict_is_error(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    reply = '{"score": 9, "reason": "Superb."}'
    upstream.script([reply])
    judge = LLMJudge(scale=[1, 5])
    score = gateway.run(judge.evaluate(Sample(FRANCE, "Paris"), gateway.services))
    assert score.status == "error"
    assert score.reason == (
        "judge score is outside the scale: score 9 is outside the scale [1, 5]"
    )
    assert score.details["raw_output"] == reply


def test_unicode_verdict(gateway: GatewayLoop, upstream: FakeOpenAI) -> None:
    reply = '{"score": 0.5, "reason": "Réponse partielle : « Lutèce » ≠ Paris 🙂"}'
    upstream.script([reply])
    case = Case(key="fr", variables={"question": "Quelle est la capitale ?"})
    score = gateway.run(LLMJudge().evaluate(Sample(case, "Lutèce"), gateway.services))
    assert score.value == 0.5
    assert score.reason == "Réponse partielle : « Lutèce » ≠ Paris 🙂"
    assert "Quelle est la capitale ?" in user_message(scripted_requests(upstream)[-1])


def test_failing_judge_errors_after_retries(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    before = sum(1 for r in upstream.requests if r.get("model") == "error-500")
    judge = LLMJudge(model="judge-down")
    score = gateway.run(judge.evaluate(Sample(FRANCE, "Paris"), gateway.services))
    after = sum(1 for r in upstream.requests if r.get("model") == "error-500")
    assert score.status == "error"
    assert score.value is None
    assert score.reason.startswith("judge call failed: ")
    assert "failed after 2 attempts" in score.reason
    # One upstream call per client attempt: the gateway itself does not retry.
    assert after - before == 2


# Pairwise comparison


def test_pairwise_consistent_picks_winner(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script(
        [
            # Paris is shown first and wins.
            '{"winner": "A", "reason": "A names the capital."}',
            # Paris is shown second and wins again.
            '{"winner": "B", "reason": "B names the capital."}',
        ]
    )
    verdict = gateway.run(
        compare_pair(FRANCE, "Paris", "Lyon", gateway.services, model="judge")
    )
    assert verdict.status == "ok"
    assert verdict.winner == "A"
    assert verdict.reason == "A won in both orders: A names the capital."
    assert verdict.details["position_bias"] is False
    assert verdict.details["b_first"]["winner_as_shown"] == "B"
    assert verdict.details["b_first"]["winner"] == "A"
    first, second = scripted_requests(upstream)[-2:]
    assert "<answer_a>\nParis\n</answer_a>" in user_message(first)
    assert "<answer_a>\nLyon\n</answer_a>" in user_message(second)


def test_pairwise_second_output_wins(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script(['{"winner": "B"}', '{"winner": "A"}'])
    verdict = gateway.run(compare_pair(FRANCE, "Lyon", "Paris", gateway.services))
    assert verdict.winner == "B"
    assert verdict.reason == "B won in both orders"


def test_pairwise_flip_is_position_tie(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    first = '{"winner": "A", "reason": "The first answer is better."}'
    second = '{"winner": "A", "reason": "The first answer is better."}'
    upstream.script([first, second])
    verdict = gateway.run(compare_pair(FRANCE, "Paris", "Lyon", gateway.services))
    assert verdict.status == "ok"
    assert verdict.winner == "tie"
    assert verdict.reason == POSITION_BIAS
    assert verdict.details["position_bias"] is True
    assert verdict.details["a_first"]["raw_output"] == first
    assert verdict.details["b_first"]["raw_output"] == second
    assert verdict.details["b_first"]["winner"] == "B"


def test_pairwise_tie_in_both_orders(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script(['{"winner": "tie", "reason": "Same."}', '{"winner": "tie"}'])
    verdict = gateway.run(compare_pair(FRANCE, "Paris", "Paris.", gateway.services))
    assert verdict.winner == "tie"
    assert verdict.reason == "a tie in both orders: Same."
    assert verdict.details["position_bias"] is False


def test_pairwise_unparseable_is_error(
    gateway: GatewayLoop, upstream: FakeOpenAI
) -> None:
    upstream.script(['{"winner": "A"}', "Both are fine."])
    verdict = gateway.run(compare_pair(FRANCE, "Paris", "Lyon", gateway.services))
    assert verdict.status == "error"
    assert verdict.winner is None
    assert verdict.reason.startswith("judge output could not be parsed (b first): ")
    assert verdict.details["a_first"]["raw_output"] == '{"winner": "A"}'
    assert verdict.details["b_first"]["raw_output"] == "Both are fine."


def test_pairwise_failing_judge_is_error(gateway: GatewayLoop) -> None:
    verdict = gateway.run(
        compare_pair(FRANCE, "Paris", "Lyon", gateway.services, model="judge-down")
    )
    assert verdict.status == "error"
    assert verdict.winner is None
    assert verdict.reason.startswith("judge call failed (a first): ")


def test_pairwise_without_judge() -> None:
    verdict = asyncio.run(compare_pair(FRANCE, "Paris", "Lyon", Services()))
    assert verdict.status == "error"
    assert verdict.winner is None


# The shipped rubrics


@pytest.mark.parametrize("name", sorted(rubrics.RUBRICS))
def test_shipped_rubric_reads_back(name: str) -> None:
    content = rubrics.rubric_content(name)
    assert content.model.group == "judge"
    assert "JSON" in content.messages[0].content
    assert rubrics.reference(name) == f"{name}@1.0.0"


def test_grading_rubrics_declare_four_variables() -> None:
    for name in (rubrics.CORRECTNESS, rubrics.PAIRWISE):
        declared = {v.name: v for v in rubrics.rubric_content(name).variables}
        for variable in ("question", "expected", "context"):
            assert declared[variable].required is False, (name, variable)


def test_unknown_rubric_name() -> None:
    with pytest.raises(ValueError, match="no shipped rubric named 'nope'"):
        rubrics.rubric_text("nope")
