"""The exact cache kept in keelway's store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from keelway.cache import CacheConfig, build_exact_cache
from keelway.cache.store_exact import StoreExactCache
from keelway.store.database import Database, open_database
from tests.test_cache_exact import FakeClock, response


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.close()


def test_store_returns_what_was_set(database: Database) -> None:
    cache = StoreExactCache(database, 10, 60)
    asyncio.run(cache.set("a" * 64, response("Paris.")))
    found = asyncio.run(cache.get("a" * 64))
    assert found is not None
    assert found.body["choices"][0]["message"]["content"] == "Paris."
    assert found.cost_usd == pytest.approx(0.00012)
    assert asyncio.run(cache.get("b" * 64)) is None


def test_store_overwrite_keeps_latest(database: Database) -> None:
    cache = StoreExactCache(database, 10, 60)
    asyncio.run(cache.set("c" * 64, response("First.")))
    asyncio.run(cache.set("c" * 64, response("Second.")))
    found = asyncio.run(cache.get("c" * 64))
    assert found is not None
    assert found.body["choices"][0]["message"]["content"] == "Second."


def test_store_entry_expires(database: Database) -> None:
    clock = FakeClock()
    cache = StoreExactCache(database, 10, 60, clock=clock)
    asyncio.run(cache.set("d" * 64, response()))
    clock.now += 59
    assert asyncio.run(cache.get("d" * 64)) is not None
    clock.now += 2
    assert asyncio.run(cache.get("d" * 64)) is None


def test_store_bound_drops_oldest(tmp_path: object) -> None:
    # A database of its own, so other tests' rows do not count to the bound.
    database = open_database(f"sqlite:///{tmp_path}/bound.db")
    clock = FakeClock()
    cache = StoreExactCache(database, 3, 600, clock=clock)
    try:
        for number in range(5):
            clock.now += 1
            asyncio.run(cache.set(f"{number:064d}", response(f"Answer {number}.")))
        kept = [
            number
            for number in range(5)
            if asyncio.run(cache.get(f"{number:064d}")) is not None
        ]
        assert kept == [2, 3, 4]
    finally:
        database.close()


def test_store_shared_by_two_caches(database: Database) -> None:
    # Two gateway replicas on one database see each other's entries.
    first = StoreExactCache(database, 10, 60)
    second = StoreExactCache(database, 10, 60)
    asyncio.run(first.set("e" * 64, response("Shared.")))
    found = asyncio.run(second.get("e" * 64))
    assert found is not None


def test_factory_builds_store_backend(database: Database) -> None:
    config = CacheConfig.model_validate(
        {"backend": "store", "exact": {"enabled": True}}
    )
    assert isinstance(build_exact_cache(config, database=database), StoreExactCache)
    with pytest.raises(ValueError, match="needs the gateway's database"):
        build_exact_cache(config)
