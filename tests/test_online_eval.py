"""Online evaluation of production traces on a real server."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from keelway.monitoring.online import sampled
from keelway.store.models import TraceScore
from tests.conftest import openai_models
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> Iterator[KeelwayServer]:
    with FakeOpenAI(record=False) as fake:
        online = {
            "enabled": True,
            "sample_rate": 1.0,
            "evaluators": [
                {"kind": "regex", "pattern": "Hello"},
                {"kind": "length", "max": 5},
                {"kind": "faithfulness", "mode": "embedding"},
            ],
        }
        keelway = KeelwayServer(
            tmp_path_factory.mktemp("online"),
            database_url,
            openai_models(fake.base_url, ["gpt-4o-mini"]),
            settings={"evals": {"online": online}},
            env={"FAKE_OPENAI_KEY": API_KEY},
        )
        yield keelway.start()
        keelway.close()


def _scores(server: KeelwayServer, count: int) -> list[TraceScore]:
    deadline = time.monotonic() + 30
    rows: list[TraceScore] = []
    while time.monotonic() < deadline:
        with server.database.session() as session:
            rows = list(
                session.scalars(
                    select(TraceScore).where(TraceScore.source == "online_eval")
                )
            )
        if len(rows) >= count:
            return rows
        time.sleep(0.2)
    return rows


def test_sampled_traces_get_scores(server: KeelwayServer) -> None:
    headers = {"authorization": f"Bearer {server.key}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    trace_ids = []
    for _ in range(5):
        response = httpx.post(
            server.url + "/v1/chat/completions", json=body, headers=headers, timeout=30
        )
        assert response.status_code == 200
        trace_ids.append(response.headers["x-keelway-trace-id"])
    skipped = httpx.post(
        server.url + "/v1/chat/completions",
        json=body,
        headers={**headers, "x-keelway-use-case": "eval"},
        timeout=30,
    )
    assert skipped.status_code == 200
    rows = _scores(server, 10)
    assert len(rows) == 10
    assert {row.trace_id for row in rows} == set(trace_ids)
    regex = [row for row in rows if row.name == "regex"]
    length = [row for row in rows if row.name == "length"]
    assert [row.value for row in regex] == [1.0] * 5
    assert [row.value for row in length] == [0.0] * 5
    assert all("more than the maximum" in (row.comment or "") for row in length)
    # Faithfulness needs a context variable, which these requests lack.
    assert not [row for row in rows if row.name == "faithfulness"]
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert (
        'keelway_online_eval_results_total{evaluator="regex",outcome="pass"} 5.0'
        in metrics
    )
    assert (
        'keelway_online_eval_results_total{evaluator="length",outcome="fail"} 5.0'
        in metrics
    )
    assert 'keelway_online_eval_failure_ratio{evaluator="length"} 1.0' in metrics
    assert 'keelway_online_eval_failure_ratio{evaluator="regex"} 0.0' in metrics
    assert (
        'keelway_online_eval_results_total{evaluator="faithfulness",outcome="error"}'
        " 5.0" in metrics
    )


def test_sample_share_follows_rate() -> None:
    ids = [uuid.UUID(int=index).hex for index in range(10_000)]
    share = sum(sampled(trace_id, 0.1) for trace_id in ids) / len(ids)
    assert 0.09 < share < 0.11
    assert all(sampled(trace_id, 1.0) for trace_id in ids[:100])
    assert not any(sampled(trace_id, 0.0) for trace_id in ids[:100])
