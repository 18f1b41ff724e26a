"""The response cache through the gateway: keys, scopes, controls and replay."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import openai_models
from tests.fakes.openai_upstream import ANSWER, API_KEY, FakeOpenAI
from tests.servers import KeelwayServer
from tests.traces import wait_for_trace

CHAT = "/v1/chat/completions"
TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object"}},
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(record=False) as fake:
        yield fake


@pytest.fixture(scope="module")
def cached(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, upstream: FakeOpenAI
) -> Iterator[KeelwayServer]:
    server = KeelwayServer(
        tmp_path_factory.mktemp("cache"),
        database_url,
        openai_models(upstream.base_url, ["gpt-4o"]),
        # The store backend, so the suite's SQLite and PostgreSQL runs both
        # carry the cache through the database.
        settings={"cache": {"backend": "store", "exact": {"enabled": True}}},
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    server.start()
    yield server
    server.close()


def _question() -> str:
    return f"What is the answer to question {uuid.uuid4().hex}?"


def _body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": text}],
        "temperature": 0,
        **extra,
    }


def _post(
    server: KeelwayServer, body: dict[str, Any], key: str | None = None, **headers: str
) -> tuple[httpx.Response, dict[str, Any]]:
    request_id = f"cache-{uuid.uuid4().hex}"
    response = httpx.post(
        server.url + CHAT,
        json=body,
        headers={
            "Authorization": f"Bearer {key or server.key}",
            "X-Request-Id": request_id,
            **headers,
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response, wait_for_trace(server, request_id)


def test_repeat_is_served_from_cache(
    cached: KeelwayServer, upstream: FakeOpenAI
) -> None:
    body = _body(_question())
    before = upstream.calls
    first, first_trace = _post(cached, body)
    second, second_trace = _post(cached, body)
    assert upstream.calls == before + 1
    assert second.json() == first.json()
    assert "cache" not in (first_trace["attributes"] or {})
    hit = second_trace["attributes"]["cache"]
    assert hit["hit"] == "exact"
    # gpt-4o's default fake usage: 12 input and 6 output tokens.
    assert hit["cost_saved_usd"] == pytest.approx(first_trace["cost_usd"])
    assert first_trace["cost_usd"] > 0
    assert second_trace["cost_usd"] == 0
    assert second_trace["deployment"] is None
    assert "cache" in [span["name"] for span in second_trace["spans"]]


VARIANTS = [
    ("response_format", {"response_format": {"type": "json_object"}}),
    ("tools", {"tools": [TOOL]}),
    ("tool_choice", {"tools": [TOOL], "tool_choice": "none"}),
    ("max_tokens", {"max_tokens": 17}),
    ("seed", {"seed": 42}),
]


@pytest.mark.parametrize(
    "extra", [extra for _, extra in VARIANTS], ids=[name for name, _ in VARIANTS]
)
def test_answer_changing_fields_split_entries(
    cached: KeelwayServer, upstream: FakeOpenAI, extra: dict[str, Any]
) -> None:
    text = _question()
    base = _body(text, tools=[TOOL]) if "tool_choice" in extra else _body(text)
    _post(cached, base)
    before = upstream.calls
    _, trace = _post(cached, {**base, **extra})
    assert upstream.calls == before + 1
    assert "cache" not in (trace["attributes"] or {})


def test_random_sampling_is_not_cached(
    cached: KeelwayServer, upstream: FakeOpenAI
) -> None:
    body = _body(_question(), temperature=0.8)
    before = upstream.calls
    _post(cached, body)
    _post(cached, body)
    assert upstream.calls == before + 2


def test_force_opts_sampling_in(cached: KeelwayServer, upstream: FakeOpenAI) -> None:
    body = _body(_question(), temperature=0.8)
    before = upstream.calls
    _post(cached, body, **{"X-Keelway-Cache": "force"})
    _, trace = _post(cached, body, **{"X-Keelway-Cache": "force"})
    assert upstream.calls == before + 1
    assert trace["attributes"]["cache"]["hit"] == "exact"


def test_no_store_and_no_cache(cached: KeelwayServer, upstream: FakeOpenAI) -> None:
    body = _body(_question())
    before = upstream.calls
    _post(cached, body, **{"Cache-Control": "no-store"})
    _post(cached, body)
    assert upstream.calls == before + 2
    # The second request stored its response, but no-cache skips reading it.
    _post(cached, body, **{"Cache-Control": "no-cache"})
    assert upstream.calls == before + 3
    _, trace = _post(cached, body)
    assert upstream.calls == before + 3
    assert trace["attributes"]["cache"]["hit"] == "exact"


def test_metadata_controls_cache(cached: KeelwayServer, upstream: FakeOpenAI) -> None:
    body = _body(_question(), metadata={"cache": "no-store"})
    before = upstream.calls
    _post(cached, body)
    _post(cached, body)
    assert upstream.calls == before + 2


def test_unknown_directive_is_400(cached: KeelwayServer) -> None:
    response = httpx.post(
        cached.url + CHAT,
        json=_body(_question()),
        headers={
            "Authorization": f"Bearer {cached.key}",
            "X-Keelway-Cache": "sometimes",
        },
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cache_directive"


def test_teams_do_not_share_entries(
    cached: KeelwayServer, upstream: FakeOpenAI
) -> None:
    _, other_key = cached.keys.create(f"other-{uuid.uuid4().hex[:8]}", team="other")
    body = _body(_question())
    before = upstream.calls
    _post(cached, body)
    _, trace = _post(cached, body, key=other_key)
    assert upstream.calls == before + 2
    assert "cache" not in (trace["attributes"] or {})


def test_system_prompt_splits_entries(
    cached: KeelwayServer, upstream: FakeOpenAI
) -> None:
    text = _question()
    plain = _body(text)
    with_system = {
        **plain,
        "messages": [{"role": "system", "content": "Be brief."}, *plain["messages"]],
    }
    before = upstream.calls
    _post(cached, plain)
    _post(cached, with_system)
    assert upstream.calls == before + 2


def test_stream_replays_cached_answer(
    cached: KeelwayServer, upstream: FakeOpenAI
) -> None:
    body = _body(_question())
    _post(cached, body)
    before = upstream.calls
    client = openai.OpenAI(
        base_url=cached.url + "/v1", api_key=cached.key, max_retries=0
    )
    request_id = f"replay-{uuid.uuid4().hex}"
    stream = client.chat.completions.create(
        **body,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Request-Id": request_id},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    assert upstream.calls == before
    trace = wait_for_trace(cached, request_id)
    assert trace["attributes"]["cache"]["hit"] == "exact"
    assert trace["stream"] is True


def test_stream_answer_is_cached(cached: KeelwayServer, upstream: FakeOpenAI) -> None:
    body = _body(_question())
    with httpx.stream(
        "POST",
        cached.url + CHAT,
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {cached.key}"},
        timeout=30,
    ) as response:
        response.read()
    before = upstream.calls
    second, trace = _post(cached, body)
    assert upstream.calls == before
    assert second.json()["choices"][0]["message"]["content"] == ANSWER
    assert trace["attributes"]["cache"]["hit"] == "exact"


@pytest.fixture(scope="module")
def semantic(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, upstream: FakeOpenAI
) -> Iterator[KeelwayServer]:
    models = {
        **openai_models(upstream.base_url, ["gpt-4o"]),
        "minilm": {
            "deployments": [
                {"provider": "local-embeddings", "model": "all-minilm-l6-v2"}
            ]
        },
    }
    server = KeelwayServer(
        tmp_path_factory.mktemp("semantic"),
        database_url,
        models,
        settings={
            "cache": {"semantic": {"enabled": True, "embedding_model": "minilm"}}
        },
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    server.start()
    yield server
    server.close()


@pytest.mark.local_model
def test_semantic_paraphrase_hits(
    semantic: KeelwayServer, upstream: FakeOpenAI
) -> None:
    _post(semantic, _body("Can I get a refund for my order?"))
    before = upstream.calls
    _, trace = _post(semantic, _body("Is it possible to get a refund for my order?"))
    assert upstream.calls == before
    hit = trace["attributes"]["cache"]
    assert hit["hit"] == "semantic"
    assert hit["similarity"] >= 0.9


@pytest.mark.local_model
def test_semantic_other_entity_misses(
    semantic: KeelwayServer, upstream: FakeOpenAI
) -> None:
    _post(semantic, _body("What is the refund policy for orders in the EU?"))
    before = upstream.calls
    _, trace = _post(semantic, _body("What is the refund policy for orders in the US?"))
    assert upstream.calls == before + 1
    assert "cache" not in (trace["attributes"] or {})


@pytest.mark.local_model
def test_semantic_negation_misses(
    semantic: KeelwayServer, upstream: FakeOpenAI
) -> None:
    _post(semantic, _body("Is the API available on weekends?"))
    before = upstream.calls
    _post(semantic, _body("Is the API not available on weekends?"))
    assert upstream.calls == before + 1


@pytest.mark.local_model
def test_semantic_entries_stay_in_team(
    semantic: KeelwayServer, upstream: FakeOpenAI
) -> None:
    _, other_key = semantic.keys.create(f"sem-{uuid.uuid4().hex[:8]}", team="elsewhere")
    _post(semantic, _body("How do I export my data as CSV?"))
    before = upstream.calls
    _post(semantic, _body("How can I export my data as CSV?"), key=other_key)
    assert upstream.calls == before + 1
