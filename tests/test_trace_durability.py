"""Traces under load: none lost, none duplicated, none dropped at SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator

import aiohttp
import pytest
from sqlalchemy import func, select

from keelway.store.models import Trace
from tests.conftest import openai_models
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def server(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, fake_openai: FakeOpenAI
) -> Iterator[KeelwayServer]:
    fake_openai.record = False
    instance = KeelwayServer(
        tmp_path_factory.mktemp("durability"),
        database_url,
        openai_models(fake_openai.base_url, ["gpt-4o"]),
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    instance.start()
    yield instance
    instance.close()
    fake_openai.record = True


def _stored(server: KeelwayServer, prefix: str) -> tuple[int, set[str]]:
    with server.database.session() as session:
        rows = list(
            session.scalars(
                select(Trace.request_id).where(Trace.request_id.startswith(prefix))
            )
        )
    return len(rows), set(rows)


def _count(server: KeelwayServer) -> int:
    with server.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(Trace)) or 0)


async def _load(
    url: str,
    key: str,
    prefix: str,
    total: int,
    concurrency: int,
    answered: list[str],
    stop_after: float,
) -> None:
    """Send ``total`` requests, ``concurrency`` at a time, for ``stop_after`` s."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(total):
        queue.put_nowait(number)
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + stop_after
    timeout = aiohttp.ClientTimeout(total=30)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty() and time.monotonic() < deadline:
            request_id = f"{prefix}{queue.get_nowait()}"
            try:
                async with session.post(
                    url, json=BODY, headers={**headers, "X-Request-Id": request_id}
                ) as response:
                    await response.read()
                    if response.status == 200:
                        answered.append(request_id)
            except (TimeoutError, aiohttp.ClientError):
                continue

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


def _wait_for_count(server: KeelwayServer, expected: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    count = _count(server)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        count = _count(server)
    time.sleep(0.5)
    return _count(server)


def test_2000_requests_store_2000_traces(server: KeelwayServer) -> None:
    answered: list[str] = []
    url = server.url + "/v1/chat/completions"
    asyncio.run(_load(url, server.key, "load-", 2000, 32, answered, stop_after=240))
    assert len(answered) == 2000
    assert _wait_for_count(server, 2000) == 2000
    count, ids = _stored(server, "load-")
    assert count == 2000
    assert ids == set(answered)


def test_sigterm_keeps_answered_traces(server: KeelwayServer) -> None:
    answered: list[str] = []
    url = server.url + "/v1/chat/completions"

    def terminate_when_busy() -> None:
        deadline = time.monotonic() + 60
        while len(answered) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)

    killer = threading.Thread(target=terminate_when_busy)
    killer.start()
    asyncio.run(_load(url, server.key, "term-", 5000, 32, answered, stop_after=120))
    killer.join()
    assert server.process is not None
    # uvicorn re-raises SIGTERM after its graceful shutdown, as a signal exit.
    assert server.process.wait(60) in (0, -signal.SIGTERM)
    assert "gateway stopped" in server.log()
    assert 300 <= len(answered) < 5000
    count, ids = _stored(server, "term-")
    assert set(answered) <= ids
    assert count == len(ids)
