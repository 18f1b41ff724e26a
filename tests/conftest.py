"""Shared fixtures: the store backend, fake upstreams and keelway servers.

Set ``KEELWAY_TEST_DB=postgresql`` to run the same suite with the store on
the PostgreSQL server at 127.0.0.1 (``KEELWAY_TEST_PG_URL`` overrides the
admin URL); each run gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer

PG_ADMIN_URL = os.environ.get(
    "KEELWAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKEND = os.environ.get("KEELWAY_TEST_DB", "sqlite")

# Usage shapes the fake OpenAI upstream reports, keyed by upstream model.
OPENAI_USAGE = {
    # Cached tokens are a part of prompt tokens, reasoning a part of completion.
    "gpt-4o": {
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "total_tokens": 1200,
        "prompt_tokens_details": {"cached_tokens": 400},
        "completion_tokens_details": {"reasoning_tokens": 50},
    },
    "o4-mini": {
        "prompt_tokens": 300,
        "completion_tokens": 900,
        "total_tokens": 1200,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 700},
    },
}


def _postgres_database() -> Iterator[str]:
    import psycopg

    name = f"keelway_test_{uuid.uuid4().hex[:12]}"
    admin = PG_ADMIN_URL
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty store for each test module, on the backend under test."""
    if BACKEND == "postgresql":
        yield from _postgres_database()
        return
    folder = tmp_path_factory.mktemp("store")
    yield f"sqlite:///{folder / 'keelway.db'}"


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(OPENAI_USAGE, slow_seconds=3.0) as fake:
        yield fake


def openai_models(
    base_url: str, names: list[str], **deployment: object
) -> dict[str, object]:
    """Map each public model name to the fake upstream model of the same name."""
    return {
        name: {
            "deployments": [
                {
                    "provider": "openai",
                    "model": name,
                    "base_url": base_url,
                    "api_key": "${FAKE_OPENAI_KEY}",
                    **deployment,
                }
            ]
        }
        for name in names
    }


# Routing settings for servers whose tests check how each upstream failure
# is reported: the failure reaches the client unretried, every time.
NO_RETRIES = {"retries": {"max_retries": 0}, "circuit_breaker": {"failures": 1000}}

UPSTREAM_MODELS = [
    "gpt-4o",
    "o4-mini",
    "unpriced-model",
    "slow",
    "garbage",
    "error-429",
    "error-500",
    "error-401",
    "cut-stream",
    "no-usage",
    "long-answer",
]


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, fake_openai: FakeOpenAI
) -> Iterator[KeelwayServer]:
    """A keelway server in front of the fake OpenAI upstream."""
    models = openai_models(
        fake_openai.base_url, UPSTREAM_MODELS, timeout={"connect": 2, "total": 1.5}
    )
    server = KeelwayServer(
        tmp_path_factory.mktemp("gateway"),
        database_url,
        models,
        settings={
            "server": {"max_body_bytes": 65536, "body_timeout": 1.0},
            "routing": NO_RETRIES,
        },
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    server.start()
    yield server
    server.close()


def pytest_report_header() -> str:
    return f"keelway store backend: {BACKEND}"


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """On the PostgreSQL pass, keep only the tests that use the store under test.

    That pass exists to run the store on PostgreSQL. A test that never asks
    for ``database_url`` (directly or through another fixture) runs the
    same code on both passes, so it runs once, on the SQLite pass.
    """
    if BACKEND != "postgresql":
        return
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        uses_store = "database_url" in getattr(item, "fixturenames", ())
        (keep if uses_store else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
