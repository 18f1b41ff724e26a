"""Routing by task complexity: features, the embedding classifier, the gateway."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from keelway.config import ComplexityRouterConfig, ConfigError, parse_config
from keelway.routing import Router
from keelway.routing.complexity import (
    ComplexityRouter,
    extract_features,
    feature_score,
    group_embedder,
)
from tests.conftest import openai_models
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer
from tests.traces import wait_for_trace

CODE_PROMPT = (
    "Refactor this function so it handles the edge case of an empty list:\n"
    "```python\ndef mean(xs):\n    return sum(xs) / len(xs)\n```"
)
EXAMPLES = {
    "simple": [
        "What is the capital of France?",
        "Say hello to my friend.",
        "Translate 'cat' into Spanish.",
        "What time zone is Tokyo in?",
        "Give me a synonym for happy.",
    ],
    "complex": [
        "Design a distributed rate limiter that stays exact across replicas.",
        "Prove that the square root of two is irrational.",
        "Compare B-trees and LSM trees for a write-heavy workload.",
        "Plan a migration of a monolith to services without downtime.",
        "Analyze the time complexity of this recursive algorithm.",
    ],
}


@pytest.fixture(autouse=True)
def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # Configs built here reference the fake upstream's key, as servers' do.
    monkeypatch.setenv("FAKE_OPENAI_KEY", API_KEY)


def _body(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def test_features_of_plain_question() -> None:
    features = extract_features(_body("What is the capital of France?"))
    assert features.code is False
    assert features.reasoning_cues == ()
    assert features.tools is False
    assert features.turns == 1
    assert feature_score(features)[0] == 0


def test_features_find_code_and_cues() -> None:
    features = extract_features(_body(CODE_PROMPT))
    assert features.code is True
    assert "refactor" in features.reasoning_cues
    assert "edge case" in features.reasoning_cues
    score, reasons = feature_score(features)
    assert score == pytest.approx(0.55)
    assert any("code" in reason for reason in reasons)


def test_features_count_tools_and_turns() -> None:
    turns = [{"role": "user", "content": "hi"}] * 8
    features = extract_features({"messages": turns, "tools": [{"type": "function"}]})
    assert features.tools is True
    assert features.turns == 8
    assert feature_score(features)[0] == pytest.approx(0.3)


def test_long_prompt_adds_length_share() -> None:
    features = extract_features(_body("word " * 1200))
    assert features.tokens == 1500
    assert feature_score(features)[0] == pytest.approx(0.3)


def _feature_router(threshold: float = 0.5) -> ComplexityRouter:
    config = ComplexityRouterConfig(
        simple="small", complex="large", threshold=threshold
    )
    return ComplexityRouter("auto", config, None)


def test_feature_router_decides() -> None:
    router = _feature_router()
    simple = asyncio.run(router.decide(_body("What is 2 + 2?")))
    hard = asyncio.run(router.decide(_body(CODE_PROMPT)))
    assert simple.target == "small"
    assert simple.embedding_score is None
    assert hard.target == "large"
    assert hard.score >= 0.5


def test_router_config_checks_targets() -> None:
    models = openai_models("http://127.0.0.1:1/v1", ["small"])
    with pytest.raises(ConfigError, match=r"routers\.auto\.complex: no model group"):
        parse_config(
            {"models": models, "routers": {"auto": {"simple": "small", "complex": "x"}}}
        )


def test_embedding_router_needs_examples() -> None:
    models = openai_models("http://127.0.0.1:1/v1", ["small", "large", "emb"])
    router = {"simple": "small", "complex": "large", "embedding_model": "emb"}
    with pytest.raises(ConfigError, match=r"routers\.auto\.examples"):
        parse_config({"models": models, "routers": {"auto": router}})


@pytest.mark.local_model
def test_embedding_classifier_generalizes() -> None:
    models = {
        "minilm": {
            "deployments": [
                {"provider": "local-embeddings", "model": "all-minilm-l6-v2"}
            ]
        },
        **openai_models("http://127.0.0.1:1/v1", ["small", "large"]),
    }
    spec = {
        "simple": "small",
        "complex": "large",
        "embedding_model": "minilm",
        "embedding_weight": 1.0,
        "examples": EXAMPLES,
    }
    config = parse_config({"models": models, "routers": {"auto": spec}})
    router = Router.from_config(config)
    complexity = ComplexityRouter(
        "auto", config.routers["auto"], group_embedder(router, "minilm")
    )

    async def decide(text: str) -> str:
        return (await complexity.decide(_body(text))).target

    async def scenario() -> list[str]:
        await router.first("minilm").provider.start()
        try:
            return [
                await decide("What is the capital of Italy?"),
                await decide("Say good morning to the team."),
                await decide(
                    "Weigh strong against eventual consistency for a replicated"
                    " database under network partitions."
                ),
                await decide("Prove that there are infinitely many primes."),
            ]
        finally:
            await router.close()

    assert asyncio.run(scenario()) == ["small", "small", "large", "large"]


@pytest.fixture(scope="module")
def routed(
    tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> Iterator[tuple[KeelwayServer, FakeOpenAI, FakeOpenAI]]:
    with FakeOpenAI(record=False) as small, FakeOpenAI(record=False) as large:
        models = {
            **openai_models(small.base_url, ["small"]),
            **openai_models(large.base_url, ["large"]),
        }
        server = KeelwayServer(
            tmp_path_factory.mktemp("complexity"),
            database_url,
            models,
            settings={"routers": {"auto": {"simple": "small", "complex": "large"}}},
            env={"FAKE_OPENAI_KEY": API_KEY},
        )
        server.start()
        yield server, small, large
        server.close()


def _send(server: KeelwayServer, text: str) -> dict[str, Any]:
    request_id = f"cx-{uuid.uuid4().hex}"
    response = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": text}]},
        headers={"Authorization": f"Bearer {server.key}", "X-Request-Id": request_id},
        timeout=30,
    )
    assert response.status_code == 200
    return wait_for_trace(server, request_id)


def test_gateway_routes_by_complexity(
    routed: tuple[KeelwayServer, FakeOpenAI, FakeOpenAI],
) -> None:
    server, small, large = routed
    easy = _send(server, "What is 2 + 2?")
    hard = _send(server, CODE_PROMPT)
    assert easy["model"] == "small"
    assert hard["model"] == "large"
    assert small.calls == 1
    assert large.calls == 1
    decision = hard["attributes"]["complexity"]
    assert decision["router"] == "auto"
    assert decision["target"] == "large"
    assert decision["features"]["code"] is True
    assert "complexity" in [span["name"] for span in hard["spans"]]


def test_router_listed_in_models(
    routed: tuple[KeelwayServer, FakeOpenAI, FakeOpenAI],
) -> None:
    server, _, _ = routed
    response = httpx.get(
        server.url + "/v1/models",
        headers={"Authorization": f"Bearer {server.key}"},
        timeout=10,
    )
    assert "auto" in [model["id"] for model in response.json()["data"]]


def test_route_explain_prints_decision(
    routed: tuple[KeelwayServer, FakeOpenAI, FakeOpenAI],
) -> None:
    server, _, _ = routed
    shown = server.cli("route", "explain", CODE_PROMPT).stdout
    assert "target   large" in shown
    assert "contains code" in shown
    as_json = server.cli("route", "explain", "hello there", "--json").stdout
    assert yaml.safe_load(as_json)["target"] == "small"
