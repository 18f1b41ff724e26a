"""Keys never reach logs, traces or error messages."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest
from sqlalchemy import select, text

from keelway.store.models import ApiKey
from tests.conftest import UPSTREAM_MODELS, openai_models
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer

MASTER_KEY = "kw-master-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, fake_openai: FakeOpenAI
) -> Iterator[KeelwayServer]:
    instance = KeelwayServer(
        tmp_path_factory.mktemp("secrets"),
        database_url,
        openai_models(
            fake_openai.base_url, UPSTREAM_MODELS, timeout={"connect": 2, "total": 1.5}
        ),
        settings={"server": {"log_level": "debug"}},
        env={"FAKE_OPENAI_KEY": API_KEY, "KEELWAY_MASTER_KEY": MASTER_KEY},
    )
    instance.start()
    yield instance
    instance.close()


def _exercise(server: KeelwayServer) -> list[str]:
    """Send good and failing requests with every kind of key and return the bodies."""
    bodies = []
    for key in (server.key, MASTER_KEY, server.key + "x"):
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        for model in ("gpt-4o", "error-401", "slow", "garbage"):
            for stream in (False, True):
                try:
                    result = client.chat.completions.create(
                        model=model,
                        messages=[{"role": "user", "content": "hi"}],
                        stream=stream,
                    )
                    bodies.append(repr(list(result) if stream else result))
                except openai.APIError as error:
                    bodies.append(str(error) + repr(getattr(error, "body", "")))
    for path in ("/readyz", "/metrics", "/v1/models"):
        bodies.append(
            httpx.get(
                server.url + path, headers={"Authorization": f"Bearer {server.key}"}
            ).text
        )
    return bodies


def test_master_key_is_accepted(server: KeelwayServer) -> None:
    client = openai.OpenAI(
        base_url=server.url + "/v1", api_key=MASTER_KEY, max_retries=0
    )
    response = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert response.choices[0].message.content


def test_keys_absent_everywhere(server: KeelwayServer) -> None:
    bodies = _exercise(server)
    server.stop()
    secrets = {
        "virtual key": server.key,
        "master key": MASTER_KEY,
        "upstream key": API_KEY,
    }

    log = server.log()
    assert '"message":"request"' in log
    for name, secret in secrets.items():
        assert secret not in log, f"{name} in the server log"
        assert all(secret not in body for body in bodies), f"{name} in a response"

    with server.database.engine.connect() as connection:
        for table in ("traces", "spans", "api_keys"):
            for row in connection.execute(text(f"SELECT * FROM {table}")):
                dumped = repr(tuple(row))
                for name, secret in secrets.items():
                    assert secret not in dumped, f"{name} in table {table}"

    with server.database.session() as session:
        hashes = list(session.scalars(select(ApiKey.key_hash)))
    assert len(hashes) == 1
    assert len(hashes[0]) == 64
