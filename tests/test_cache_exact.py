"""The exact cache: keys, scopes, and the memory and Redis backends."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from keelway.cache import (
    CacheConfig,
    CachedResponse,
    CacheScope,
    ExactCache,
    MemoryExactCache,
    RedisExactCache,
    build_exact_cache,
    exact_key,
)
from keelway.tracing.usage import Usage

T = TypeVar("T")

REDIS_URL = os.environ.get("KEELWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
]
BASE: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0}
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
}
SCOPE = CacheScope.for_request("gpt-4o", MESSAGES, access="team-a")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def response(text: str = "Paris.", scope: CacheScope = SCOPE) -> CachedResponse:
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
        "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
    }
    return CachedResponse(
        body=body,
        usage=Usage(input_tokens=20, output_tokens=2),
        cost_usd=0.00012,
        created_at=1700000000.0,
        scope=scope,
    )


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# Each variant changes one answer-changing field of BASE.
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("response_format text", {"response_format": {"type": "text"}}),
    ("response_format json_object", {"response_format": {"type": "json_object"}}),
    (
        "response_format json_schema",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "city", "schema": {"type": "object"}},
            }
        },
    ),
    ("tools", {"tools": [TOOL]}),
    (
        "tools with another parameter schema",
        {"tools": [{**TOOL, "function": {**TOOL["function"], "parameters": {}}}]},
    ),
    ("tool_choice none", {"tools": [TOOL], "tool_choice": "none"}),
    ("tool_choice required", {"tools": [TOOL], "tool_choice": "required"}),
    (
        "tool_choice named",
        {
            "tools": [TOOL],
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        },
    ),
    ("max_tokens 10", {"max_tokens": 10}),
    ("max_tokens 11", {"max_tokens": 11}),
    ("max_completion_tokens", {"max_completion_tokens": 10}),
    ("seed 1", {"seed": 1}),
    ("seed 2", {"seed": 2}),
    ("temperature 0.5", {"temperature": 0.5}),
    ("top_p", {"top_p": 0.5}),
    ("stop", {"stop": ["\n"]}),
    ("n", {"n": 2}),
    ("presence_penalty", {"presence_penalty": 0.5}),
    ("frequency_penalty", {"frequency_penalty": 0.5}),
    ("logit_bias", {"logit_bias": {"1234": -100}}),
    ("logprobs", {"logprobs": True}),
    ("top_logprobs", {"logprobs": True, "top_logprobs": 3}),
    ("reasoning_effort", {"reasoning_effort": "high"}),
    ("parallel_tool_calls", {"tools": [TOOL], "parallel_tool_calls": False}),
    ("unknown provider field", {"vendor_extension": {"mode": "x"}}),
    ("model", {"model": "gpt-4o-mini"}),
    (
        "last message",
        {"messages": [MESSAGES[0], {"role": "user", "content": "And of Spain?"}]},
    ),
    ("no system message", {"messages": MESSAGES[1:]}),
]


def test_variants_never_share_an_exact_key() -> None:
    keys = {name: exact_key({**BASE, **change}, SCOPE) for name, change in VARIANTS}
    keys["base"] = exact_key(BASE, SCOPE)
    assert len(set(keys.values())) == len(keys)


@pytest.mark.parametrize(("name", "change"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_answer_changing_field_changes_the_key(
    name: str, change: dict[str, Any]
) -> None:
    assert exact_key({**BASE, **change}, SCOPE) != exact_key(BASE, SCOPE)


@pytest.mark.parametrize(
    "neutral",
    [
        {"stream": True},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"user": "user-42"},
        {"metadata": {"cache": "force", "trace": "x"}},
        {"seed": None},
    ],
    ids=["stream", "stream_options", "user", "metadata", "null seed"],
)
def test_answer_neutral_fields_keep_the_key(neutral: dict[str, Any]) -> None:
    assert exact_key({**BASE, **neutral}, SCOPE) == exact_key(BASE, SCOPE)


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(item) for item in value]
    return value


def test_key_order_and_whitespace_do_not_change_the_key() -> None:
    body = {**BASE, "tools": [TOOL], "response_format": {"type": "json_object"}}
    reordered = _reverse_keys(body)
    assert list(reordered) != list(body)
    spaced = json.loads(json.dumps(body, indent=4))
    key = exact_key(body, SCOPE)
    assert exact_key(reordered, SCOPE) == key
    assert exact_key(spaced, SCOPE) == key


def test_integral_float_equals_int() -> None:
    assert exact_key({**BASE, "temperature": 0.0}, SCOPE) == exact_key(BASE, SCOPE)


def test_message_order_changes_the_key() -> None:
    turns = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    swapped = [turns[2], turns[1], turns[0]]
    assert exact_key({**BASE, "messages": turns}, SCOPE) != exact_key(
        {**BASE, "messages": swapped}, SCOPE
    )


def test_key_is_a_sha256_hex_digest() -> None:
    key = exact_key(BASE, SCOPE)
    assert len(key) == 64
    assert int(key, 16) >= 0


def test_unencodable_body_raises_value_error() -> None:
    with pytest.raises(ValueError, match="canonical JSON"):
        exact_key({**BASE, "seed": 2**70}, SCOPE)


OTHER_SCOPES = {
    "model group": CacheScope.for_request("gpt-4o-mini", MESSAGES, "team-a"),
    "prompt version": CacheScope.for_request("gpt-4o", MESSAGES, "team-a", "v2"),
    "system prompt": CacheScope.for_request(
        "gpt-4o", [{"role": "system", "content": "Be verbose."}], "team-a"
    ),
    "team": CacheScope.for_request("gpt-4o", MESSAGES, "team-b"),
}


@pytest.mark.parametrize("name", list(OTHER_SCOPES))
def test_scope_separates_keys(name: str) -> None:
    assert exact_key(BASE, OTHER_SCOPES[name]) != exact_key(BASE, SCOPE)


def test_system_prompt_hash_ignores_user_turns() -> None:
    other_question = [MESSAGES[0], {"role": "user", "content": "Anything else"}]
    assert CacheScope.for_request("gpt-4o", other_question, "team-a") == SCOPE


@pytest.mark.parametrize("field", ["model_group", "access", "system_prompt_hash"])
def test_scope_rejects_empty_fields(field: str) -> None:
    values = {**SCOPE.to_dict(), field: ""}
    with pytest.raises(ValueError, match=field):
        CacheScope(**values)  # type: ignore[arg-type]


def test_cached_response_round_trips() -> None:
    entry = response()
    assert CachedResponse.from_json(entry.to_json()) == entry


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[]", b'{"body": {}}', b'{"body": {}, "created_at": "x"}'],
)
def test_malformed_cached_response_raises(payload: bytes) -> None:
    with pytest.raises(ValueError):
        CachedResponse.from_json(payload)


# The memory backend.


def test_memory_get_returns_what_was_set() -> None:
    cache = MemoryExactCache(10, 60)
    assert isinstance(cache, ExactCache)

    async def scenario() -> CachedResponse | None:
        await cache.set("k", response())
        return await cache.get("k")

    assert run(scenario()) == response()
    assert run(cache.get("missing")) is None


def test_memory_hit_is_a_copy() -> None:
    cache = MemoryExactCache(10, 60)

    async def scenario() -> tuple[CachedResponse | None, CachedResponse | None]:
        await cache.set("k", response())
        first = await cache.get("k")
        assert first is not None
        first.body["choices"][0]["message"]["content"] = "changed"
        return first, await cache.get("k")

    _, second = run(scenario())
    assert second == response()


def test_memory_entry_expires_after_its_ttl() -> None:
    clock = FakeClock()
    cache = MemoryExactCache(10, default_ttl=60, clock=clock)

    async def scenario() -> list[bool]:
        await cache.set("default", response())
        await cache.set("short", response(), ttl=5)
        seen = [await cache.get("short") is not None]
        clock.now += 5
        seen += [await cache.get("short") is not None]
        seen += [await cache.get("default") is not None]
        clock.now += 55
        seen += [await cache.get("default") is not None]
        return seen

    assert run(scenario()) == [True, False, True, False]
    assert len(cache) == 0


def test_memory_evicts_the_least_recently_used() -> None:
    cache = MemoryExactCache(max_entries=2, default_ttl=60)

    async def scenario() -> dict[str, bool]:
        await cache.set("a", response("A"))
        await cache.set("b", response("B"))
        await cache.get("a")  # "b" is now the least recently used
        await cache.set("c", response("C"))
        return {key: await cache.get(key) is not None for key in "abc"}

    assert run(scenario()) == {"a": True, "b": False, "c": True}
    assert len(cache) == 2


def test_memory_overwrite_keeps_one_entry() -> None:
    cache = MemoryExactCache(max_entries=2, default_ttl=60)

    async def scenario() -> CachedResponse | None:
        await cache.set("a", response("old"))
        await cache.set("a", response("new"))
        return await cache.get("a")

    hit = run(scenario())
    assert hit is not None
    assert hit.body["choices"][0]["message"]["content"] == "new"
    assert len(cache) == 1


@pytest.mark.parametrize("ttl", [0, -1.0, float("nan")])
def test_memory_rejects_a_non_positive_ttl(ttl: float) -> None:
    cache = MemoryExactCache(2, 60)
    with pytest.raises(ValueError, match="ttl"):
        run(cache.set("a", response(), ttl=ttl))


def test_memory_rejects_a_zero_bound() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryExactCache(0, 60)


# The Redis backend, against the Redis server on 127.0.0.1.


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


def _redis_keys(prefix: str) -> set[str]:
    with redis.Redis.from_url(REDIS_URL) as client:
        return {key.decode() for key in client.scan_iter(match=f"{prefix}*")}


def test_redis_get_returns_what_was_set(redis_prefix: str) -> None:
    async def scenario() -> tuple[CachedResponse | None, CachedResponse | None]:
        cache = RedisExactCache(REDIS_URL, prefix=redis_prefix, default_ttl=60)
        try:
            await cache.set("k", response())
            return await cache.get("k"), await cache.get("missing")
        finally:
            await cache.close()

    hit, miss = run(scenario())
    assert hit == response()
    assert miss is None
    assert _redis_keys(redis_prefix) == {f"{redis_prefix}k"}


def test_redis_sets_the_ttl_on_the_key(redis_prefix: str) -> None:
    async def scenario() -> None:
        cache = RedisExactCache(REDIS_URL, prefix=redis_prefix, default_ttl=60)
        try:
            await cache.set("default", response())
            await cache.set("short", response(), ttl=5)
        finally:
            await cache.close()

    run(scenario())
    with redis.Redis.from_url(REDIS_URL) as client:
        assert 0 < client.pttl(f"{redis_prefix}short") <= 5000
        assert 5000 < client.pttl(f"{redis_prefix}default") <= 60000


def test_redis_expired_entry_is_not_returned(redis_prefix: str) -> None:
    async def scenario() -> CachedResponse | None:
        cache = RedisExactCache(REDIS_URL, prefix=redis_prefix)
        try:
            await cache.set("k", response(), ttl=60)
            # Expire it now instead of waiting a minute.
            with redis.Redis.from_url(REDIS_URL) as client:
                client.pexpire(f"{redis_prefix}k", 1)
                while client.exists(f"{redis_prefix}k"):
                    await asyncio.sleep(0.005)
            return await cache.get("k")
        finally:
            await cache.close()

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=10)) is None


def test_redis_capped_index_evicts_the_oldest(redis_prefix: str) -> None:
    clock = FakeClock(1_700_000_000.0)

    async def scenario() -> dict[str, bool]:
        cache = RedisExactCache(
            REDIS_URL, prefix=redis_prefix, max_entries=2, default_ttl=60, clock=clock
        )
        try:
            for key in "abc":
                await cache.set(key, response(key))
                clock.now += 1
            return {key: await cache.get(key) is not None for key in "abc"}
        finally:
            await cache.close()

    assert run(scenario()) == {"a": False, "b": True, "c": True}
    assert _redis_keys(redis_prefix) == {
        f"{redis_prefix}b",
        f"{redis_prefix}c",
        f"{redis_prefix}index",
    }


def test_redis_prefixes_do_not_share_entries(redis_prefix: str) -> None:
    async def scenario() -> CachedResponse | None:
        client = AsyncRedis.from_url(REDIS_URL)
        first = RedisExactCache(client, prefix=f"{redis_prefix}one:")
        second = RedisExactCache(client, prefix=f"{redis_prefix}two:")
        try:
            await first.set("k", response())
            return await second.get("k")
        finally:
            await first.close()
            await second.close()
            await client.aclose()

    assert run(scenario()) is None


def test_redis_unreadable_entry_is_a_miss(redis_prefix: str) -> None:
    with redis.Redis.from_url(REDIS_URL) as client:
        client.set(f"{redis_prefix}k", b"not json", ex=60)

    async def scenario() -> CachedResponse | None:
        cache = RedisExactCache(REDIS_URL, prefix=redis_prefix)
        try:
            return await cache.get("k")
        finally:
            await cache.close()

    assert run(scenario()) is None


def test_redis_rejects_a_url_of_another_scheme() -> None:
    with pytest.raises(ValueError, match="'http'"):
        RedisExactCache("http://user:secret@127.0.0.1:6379")


def test_build_exact_cache_from_config(redis_prefix: str) -> None:
    memory = build_exact_cache(CacheConfig())
    assert isinstance(memory, MemoryExactCache)
    config = CacheConfig(backend="redis", redis_url=REDIS_URL, prefix=redis_prefix)

    async def scenario() -> CachedResponse | None:
        cache = build_exact_cache(config)
        assert isinstance(cache, RedisExactCache)
        try:
            await cache.set("k", response())
            return await cache.get("k")
        finally:
            await cache.close()

    assert run(scenario()) == response()
    assert f"{redis_prefix}exact:k" in _redis_keys(redis_prefix)


def test_body_is_not_changed_by_hashing() -> None:
    body = copy.deepcopy({**BASE, "temperature": 0.0, "stream": True})
    before = copy.deepcopy(body)
    exact_key(body, SCOPE)
    assert body == before
