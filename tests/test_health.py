"""Liveness, readiness and the Prometheus metrics a request leaves behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import openai_models
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer, free_port

PATH = "/v1/chat/completions"


def scrape(
    server: KeelwayServer,
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Read ``/metrics`` into a map of (sample name, labels) to value."""
    response = httpx.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float],
    name: str,
    **labels: str,
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def half_down(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, fake_openai: FakeOpenAI
) -> Iterator[KeelwayServer]:
    """A server with one deployment up and one whose upstream port is closed."""
    models = {
        **openai_models(fake_openai.base_url, ["gpt-4o"]),
        **openai_models(f"http://127.0.0.1:{free_port()}/v1", ["gone"]),
    }
    server = KeelwayServer(
        tmp_path_factory.mktemp("half-down"),
        database_url,
        models,
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    server.start()
    yield server
    server.close()


def test_healthz_is_ok(gateway: KeelwayServer) -> None:
    response = httpx.get(gateway.url + "/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_ready_when_all_up(gateway: KeelwayServer) -> None:
    response = httpx.get(gateway.url + "/readyz", timeout=30)
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ready"
    assert body["store"]["ready"] is True
    assert body["deployments"]["gpt-4o/0"]["ready"] is True
    assert body["deployments"]["gpt-4o/0"]["provider"] == "openai"


def test_readyz_names_down_deployment(half_down: KeelwayServer) -> None:
    response = httpx.get(half_down.url + "/readyz", timeout=30)
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "not_ready"
    assert body["store"]["ready"] is True
    assert body["deployments"]["gpt-4o/0"]["ready"] is True
    assert body["deployments"]["gone/0"]["ready"] is False
    assert body["deployments"]["gone/0"]["detail"]

    samples = scrape(half_down)
    ready = "keelway_deployment_ready"
    assert value(samples, ready, model="gpt-4o", deployment="gpt-4o/0") == 1
    assert value(samples, ready, model="gone", deployment="gone/0") == 0


def test_metrics_count_a_completion(gateway: KeelwayServer) -> None:
    labels = {"route": "chat", "model": "gpt-4o", "deployment": "gpt-4o/0"}
    usage = {"model": "gpt-4o", "deployment": "gpt-4o/0"}
    before = scrape(gateway)

    client = openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=gateway.key, max_retries=0
    )
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Request-Id": f"metrics-{uuid.uuid4().hex}"},
    )
    after = scrape(gateway)

    def delta(name: str, **extra: str) -> float:
        return value(after, name, **extra) - value(before, name, **extra)

    assert delta("keelway_requests_total", **labels, status="200") == 1
    assert delta("keelway_request_latency_seconds_count", **labels) == 1
    assert delta("keelway_request_latency_seconds_sum", **labels) > 0
    # The fake reports 1000 prompt tokens (400 cached) and 200 completion
    # tokens (50 reasoning), which cost $0.004 at gpt-4o's list price.
    assert delta("keelway_tokens_total", **usage, kind="input") == 600
    assert delta("keelway_tokens_total", **usage, kind="cache_read") == 400
    assert delta("keelway_tokens_total", **usage, kind="output") == 200
    assert delta("keelway_tokens_total", **usage, kind="reasoning") == 50
    assert delta("keelway_cost_usd_total", **usage) == pytest.approx(0.004)


def test_metrics_count_upstream_errors(gateway: KeelwayServer) -> None:
    labels = {"route": "chat", "model": "error-500", "deployment": "error-500/0"}
    before = scrape(gateway)

    response = httpx.post(
        gateway.url + PATH,
        json={"model": "error-500", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {gateway.key}"},
        timeout=30,
    )
    assert response.status_code == 502
    after = scrape(gateway)

    errors = {
        dict(key)["type"]: value(after, name, **dict(key))
        - value(before, name, **dict(key))
        for (name, key) in after
        if name == "keelway_errors_total" and dict(key)["model"] == "error-500"
    }
    assert errors == {"upstream_error": 1}
    assert (
        value(after, "keelway_requests_total", **labels, status="502")
        - value(before, "keelway_requests_total", **labels, status="502")
        == 1
    )
