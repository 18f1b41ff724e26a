"""Measure response cache lookups at 10,000 and 100,000 entries.

For each size the script fills a cache and then times lookups of keys that
are in it (hits) and keys that are not (misses):

- the exact cache in memory and in Redis (the machine's server at
  ``--redis-url``, under a key prefix of its own that is deleted at the
  end);
- the semantic cache in memory, with every entry in one scope, the worst
  case for a lookup. Embedding the question is left out of the timing: the
  embed function returns stored unit vectors, so the figures are the
  search and the lexical guard alone. Embedding one short question with
  the local MiniLM model adds its own time, reported separately with
  ``--embed``.

It prints the median and p99 of each case in microseconds over ``--lookups``
lookups, and the median over ``--runs`` runs of those medians.

Run it from the repository root::

    python bench/cache_lookup.py [--sizes 10000,100000] [--lookups 2000]
        [--runs 3] [--redis-url redis://127.0.0.1:6379/0] [--embed]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import numpy as np
import redis.asyncio as aioredis

from keelway.cache import (
    CachedResponse,
    CacheScope,
    ExactCache,
    MemoryExactCache,
    RedisExactCache,
    SemanticCache,
    exact_key,
)

DIMENSIONS = 384
ANSWER = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "A short cached answer."},
            "finish_reason": "stop",
        }
    ],
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--embed", action="store_true", help="also time MiniLM embedding one question"
    )
    return parser.parse_args()


def body(number: int) -> dict[str, object]:
    text = f"Question number {number} about the refund policy of order {number}?"
    return {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": text}],
        "temperature": 0,
    }


SCOPE = CacheScope.for_request("gpt-4o", [], "team:bench")


def entry() -> CachedResponse:
    return CachedResponse(ANSWER, None, 0.001, time.time(), SCOPE)


async def timed(
    lookups: int, lookup: Callable[[int], Awaitable[object]]
) -> list[float]:
    """Return each lookup's time in microseconds."""
    times = []
    for number in range(lookups):
        started = time.perf_counter()
        await lookup(number)
        times.append((time.perf_counter() - started) * 1e6)
    return times


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


async def exact_case(
    cache: ExactCache, size: int, lookups: int
) -> dict[str, list[float]]:
    keys = [exact_key(body(n), SCOPE) for n in range(size)]
    stored = entry()
    for start in range(0, size, 50):
        await asyncio.gather(
            *(cache.set(key, stored) for key in keys[start : start + 50])
        )
    stride = max(1, size // lookups)

    async def hit(number: int) -> object:
        return await cache.get(keys[(number * stride) % size])

    async def miss(number: int) -> object:
        return await cache.get(exact_key(body(size + number), SCOPE))

    return {"hit": await timed(lookups, hit), "miss": await timed(lookups, miss)}


async def semantic_case(size: int, lookups: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((size + lookups, DIMENSIONS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [str(body(n)["messages"][0]["content"]) for n in range(size)]  # type: ignore[index]
    by_text = {text: vectors[n] for n, text in enumerate(texts)}

    async def embed(batch: list[str]) -> list[list[float]]:
        return [by_text[text].tolist() for text in batch]

    cache = SemanticCache(embed, 0.9, 3600, size)
    stored = entry()
    for n, text in enumerate(texts):
        await cache.add(SCOPE, text, stored, vector=vectors[n])
    stride = max(1, size // lookups)

    async def hit(number: int) -> object:
        text = texts[(number * stride) % size]
        return await cache.lookup(SCOPE, text)

    misses = [
        f"An unrelated question {n} about shipping to Norway?" for n in range(lookups)
    ]
    for n, text in enumerate(misses):
        by_text[text] = vectors[size + n]

    async def miss(number: int) -> object:
        return await cache.lookup(SCOPE, misses[number])

    return {"hit": await timed(lookups, hit), "miss": await timed(lookups, miss)}


async def embed_case(lookups: int) -> list[float]:
    from keelway.config import DeploymentConfig
    from keelway.providers.embeddings import LocalEmbeddingProvider

    provider = LocalEmbeddingProvider(
        DeploymentConfig(provider="local-embeddings", model="all-minilm-l6-v2")
    )
    await provider.start()
    await provider.embed({"input": ["warm up"]})

    async def one(number: int) -> object:
        return await provider.embed(
            {"input": [f"Can I get a refund for order {number}?"]}
        )

    try:
        return await timed(min(lookups, 300), one)
    finally:
        await provider.close()


async def main() -> None:
    args = parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, Python {platform.python_version()}")
    print(f"{args.lookups} lookups per case and run, {args.runs} runs; microseconds\n")
    print("| cache | entries | hit p50 | hit p99 | miss p50 | miss p99 |")
    print("| --- | --- | --- | --- | --- | --- |")
    client = aioredis.Redis.from_url(args.redis_url)
    prefix = f"keelway-bench:{uuid.uuid4().hex[:8]}:"
    try:
        for size in sizes:
            cases: dict[str, Callable[[], Awaitable[dict[str, list[float]]]]] = {
                "exact, memory": lambda size=size: exact_case(
                    MemoryExactCache(size, 3600), size, args.lookups
                ),
                "exact, Redis": lambda size=size: exact_case(
                    RedisExactCache(client, prefix=prefix, max_entries=size * 2),
                    size,
                    args.lookups,
                ),
                "semantic, memory": lambda size=size: semantic_case(size, args.lookups),
            }
            for name, run in cases.items():
                results = [await run() for _ in range(args.runs)]
                hits = [summary(r["hit"]) for r in results]
                misses = [summary(r["miss"]) for r in results]
                print(
                    f"| {name} | {size:,} "
                    f"| {statistics.median(h[0] for h in hits):.0f} "
                    f"| {statistics.median(h[1] for h in hits):.0f} "
                    f"| {statistics.median(m[0] for m in misses):.0f} "
                    f"| {statistics.median(m[1] for m in misses):.0f} |"
                )
                keys = [
                    key
                    async for key in client.scan_iter(match=f"{prefix}*", count=5000)
                ]
                for start in range(0, len(keys), 5000):
                    await client.delete(*keys[start : start + 5000])
        if args.embed:
            p50, p99 = summary(await embed_case(args.lookups))
            print(f"\nMiniLM embedding of one question: p50 {p50:.0f} us", end="")
            print(f", p99 {p99:.0f} us")
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
