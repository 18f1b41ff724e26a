"""The store: migrations on SQLite and PostgreSQL, keys and trace queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text

from keelway.monitoring.metrics import Metrics
from keelway.store.database import Database, StoreError, open_database
from keelway.store.keys import KeyNameTaken, KeyStore
from keelway.store.traces import TraceStore
from keelway.tracing.records import TraceRecord
from keelway.tracing.usage import Usage
from keelway.tracing.writer import TraceWriter


@pytest.fixture(scope="module")
def database(database_url: str) -> Database:
    database = open_database(database_url)
    yield database  # type: ignore[misc]
    database.close()


def test_migrations_create_tables(database: Database) -> None:
    tables = set(inspect(database.engine).get_table_names())
    assert {"api_keys", "traces", "spans", "alembic_version"} <= tables


def test_migrating_again_changes_nothing(database: Database) -> None:
    database.migrate()
    with database.engine.connect() as connection:
        version = connection.execute(
            text("SELECT version_num FROM alembic_version")
        ).scalar()
    assert version == "0008"


def test_migrations_match_models(database: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from keelway.store.models import Base

    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_sqlite_runs_in_wal_mode(database: Database) -> None:
    if database.engine.dialect.name != "sqlite":
        pytest.skip("WAL is a SQLite setting")
    with database.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_unreachable_store_fails_clearly() -> None:
    with pytest.raises(StoreError, match="cannot migrate the store"):
        open_database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")


def test_key_names_are_unique(database: Database) -> None:
    keys = KeyStore(database)
    keys.create("unique-name")
    with pytest.raises(KeyNameTaken):
        keys.create("unique-name")


def test_find_rejects_other_secrets(database: Database) -> None:
    keys = KeyStore(database)
    record, secret = keys.create("findable", team="t", models=["m"])
    found = keys.find(secret)
    assert found is not None
    assert found.id == record.id
    assert found.models == ("m",)
    assert keys.find(secret + "x") is None


def _stored_trace(
    user: str, model: str, cost: float | None, age: timedelta
) -> TraceRecord:
    trace = TraceRecord(route="chat", request_id=f"{user}-{model}")
    trace.started_at = datetime.now(UTC) - age
    trace.model, trace.user = model, user
    trace.usage = Usage(input_tokens=100, cache_read_tokens=10, output_tokens=20)
    trace.cost_usd = cost
    return trace


def test_usage_sums_by_group(database: Database) -> None:
    writer = TraceWriter(database, Metrics())
    writer.write_batch(
        [
            _stored_trace("u1", "usage-a", 0.5, timedelta(minutes=1)),
            _stored_trace("u1", "usage-b", None, timedelta(minutes=2)),
            _stored_trace("u2", "usage-a", 0.25, timedelta(days=3)),
        ]
    )
    store = TraceStore(database)
    rows = {
        row.group: row
        for row in store.usage(by="model")
        if row.group and row.group.startswith("usage-")
    }
    assert rows["usage-a"].requests == 2
    assert rows["usage-a"].cost_usd == pytest.approx(0.75)
    assert rows["usage-a"].input_tokens == 200
    assert rows["usage-b"].unpriced == 1
    recent = {
        row.group: row
        for row in store.usage(by="user", since=datetime.now(UTC) - timedelta(hours=1))
    }
    assert recent["u1"].requests == 2
    assert "u2" not in recent


def test_list_filters_by_user_and_model(database: Database) -> None:
    store = TraceStore(database)
    assert {t["model"] for t in store.recent(user="u1")} == {"usage-a", "usage-b"}
    assert [t["user"] for t in store.recent(model="usage-b")] == ["u1"]


def test_get_accepts_unique_prefix(database: Database) -> None:
    trace = _stored_trace("prefix-user", "prefix-model", 0.1, timedelta(0))
    TraceWriter(database, Metrics()).write_batch([trace])
    store = TraceStore(database)
    found = store.get(trace.id[:8])
    assert found is not None
    assert found["id"] == trace.id
    assert store.get(trace.id[:3]) is None


def test_nul_characters_do_not_block_writes(database: Database) -> None:
    # PostgreSQL text columns reject NUL, which a JSON string can carry.
    poisoned = _stored_trace("nul\x00user", "nul\x00model", 0.1, timedelta(0))
    poisoned.tags = ["a\x00b"]
    poisoned.error_message = "model 'x\x00' not found"
    clean = _stored_trace("clean-user", "clean-model", 0.1, timedelta(0))
    TraceWriter(database, Metrics()).write_batch([poisoned, clean])
    store = TraceStore(database)
    stored = store.get(poisoned.id)
    assert stored is not None
    assert stored["user"] == "nul\ufffduser"
    assert stored["tags"] == ["a\ufffdb"]
    assert store.get(clean.id) is not None
