"""The embedded default end to end: the OpenAI SDK against local Gemma and MiniLM."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator

import openai
import pytest
import yaml

from keelway.config import default_config_text
from tests.servers import KeelwayServer
from tests.traces import wait_for_trace

pytestmark = pytest.mark.local_model

QUESTION = [
    {"role": "system", "content": "Answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def local(
    tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> Iterator[KeelwayServer]:
    models = yaml.safe_load(default_config_text())["models"]
    server = KeelwayServer(tmp_path_factory.mktemp("local"), database_url, models)
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def client(local: KeelwayServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=local.url + "/v1", api_key=local.key, max_retries=0, timeout=120
    )


def test_gemma_answers_the_question(
    client: openai.OpenAI, local: KeelwayServer
) -> None:
    request_id = f"local-{uuid.uuid4().hex}"
    response = client.chat.completions.create(
        model="gemma-3-270m",
        messages=QUESTION,
        max_tokens=24,
        temperature=0,
        extra_headers={"X-Request-Id": request_id},
    )
    answer = response.choices[0].message.content or ""
    assert "Paris" in answer
    assert response.usage is not None
    assert response.usage.completion_tokens > 0

    trace = wait_for_trace(local, request_id)
    assert trace["model"] == "gemma-3-270m"
    assert trace["provider"] == "local"
    assert trace["output_tokens"] == response.usage.completion_tokens
    assert trace["cost_usd"] == 0.0
    assert trace["usage_source"] == "provider"


def test_gemma_streams_with_usage(client: openai.OpenAI, local: KeelwayServer) -> None:
    request_id = f"local-{uuid.uuid4().hex}"
    stream = client.chat.completions.create(
        model="gemma-3-270m",
        messages=QUESTION,
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Request-Id": request_id},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert not text.startswith(" ")
    assert chunks[-1].usage is not None

    trace = wait_for_trace(local, request_id)
    assert trace["stream"] is True
    assert trace["ttft_ms"] is not None
    assert 0 < trace["ttft_ms"] < trace["latency_ms"]
    assert trace["output_tokens"] == chunks[-1].usage.completion_tokens

    shown = local.cli("traces", "show", trace["id"]).stdout
    assert f"output {trace['output_tokens']}" in shown
    assert "ttft" in shown
    assert "$0.000000" in shown
    listed = local.cli("traces", "list", "--model", "gemma-3-270m").stdout
    assert trace["id"] in listed


def test_gemma_honours_stop_and_n(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="gemma-3-270m",
        messages=[{"role": "user", "content": "Count: one, two, three, four, five"}],
        max_tokens=16,
        n=2,
        seed=1,
        stop=[","],
    )
    assert len(response.choices) == 2
    assert all("," not in (choice.message.content or "") for choice in response.choices)


def test_local_model_rejects_tools(client: openai.OpenAI) -> None:
    tool = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object"}},
    }
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="gemma-3-270m", messages=QUESTION, tools=[tool]
        )
    assert raised.value.body["param"] == "tools"


def test_minilm_embeds_normalized(client: openai.OpenAI, local: KeelwayServer) -> None:
    result = client.embeddings.create(
        model="all-minilm-l6-v2",
        input=["a cat sat on the mat", "the stock market fell"],
    )
    vectors = [item.embedding for item in result.data]
    assert len(vectors) == 2
    assert len(vectors[0]) == 384
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-4)
    assert result.usage.prompt_tokens > 0


def test_similar_texts_embed_closer(client: openai.OpenAI) -> None:
    texts = [
        "How do I reset my password?",
        "I forgot my password",
        "Bananas are yellow",
    ]
    vectors = [
        d.embedding
        for d in client.embeddings.create(model="all-minilm-l6-v2", input=texts).data
    ]
    close = sum(a * b for a, b in zip(vectors[0], vectors[1], strict=True))
    far = sum(a * b for a, b in zip(vectors[0], vectors[2], strict=True))
    assert close > far
