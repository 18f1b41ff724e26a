"""Guardrails through a real gateway, in front of a fake upstream that records.

Every PII value of the shipped labelled set goes through the gateway:

- with ``pseudonymize`` the upstream never receives one, and the caller gets
  the answer with the values put back, streamed or not, on both routes;
- with ``redact`` none of them is anywhere in the store (every table, and
  the SQLite files byte for byte), the server's log or the response cache;
- a streamed answer that recites the system prompt is cut before the
  canary is sent.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text

from keelway.store.database import open_database
from tests.cli_in_process import run_cli
from tests.conftest import openai_models
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer
from tests.traces import wait_for_trace

DATA = Path(__file__).resolve().parents[1] / "src/keelway/guardrails/data"
PII_SET = DATA / "pii.jsonl"
NO_RETRIES = {"retries": {"max_retries": 0}, "circuit_breaker": {"failures": 1000}}

POLICIES = {
    "pseudo": {
        "input": [
            {"type": "pii", "action": "pseudonymize", "on_error": "closed"},
            {"type": "secrets", "action": "pseudonymize", "on_error": "closed"},
        ]
    },
    "redact": {
        "input": [{"type": "pii", "action": "redact", "on_error": "closed"}],
        "output": [{"type": "pii", "action": "redact", "on_error": "closed"}],
    },
    "leak": {
        "output": [
            {
                "type": "system_prompt_leak",
                "action": "block",
                "on_error": "closed",
                # Only the canary: a verbatim recital would otherwise trip the
                # similarity check first, and this test is about the canary.
                "min_overlap": 1.0,
            }
        ]
    },
    "review": {"input": [{"type": "pii", "action": "escalate"}]},
    "blocking": {"input": [{"type": "pii", "action": "block"}]},
}


def pii_lines() -> list[dict[str, Any]]:
    lines = []
    for raw in PII_SET.read_text().splitlines():
        if raw.strip():
            lines.append(json.loads(raw))
    return lines


def pii_values() -> list[str]:
    return sorted(
        {entity["value"] for line in pii_lines() for entity in line["entities"]}
    )


def batches(size: int = 25) -> list[str]:
    """Texts of the set that hold PII, joined into user messages of ``size``."""
    texts = [line["text"] for line in pii_lines() if line["entities"]]
    return ["\n".join(texts[i : i + size]) for i in range(0, len(texts), size)]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, upstream: FakeOpenAI
) -> Iterator[KeelwayServer]:
    models: dict[str, Any] = {}
    for name, target in {
        "pseudo": "repeat",
        "redact": "repeat",
        "leak": "repeat-system",
        "review": "repeat",
        "blocking": "repeat",
        "plain": "repeat",
    }.items():
        group = openai_models(upstream.base_url, [target])[target]
        models[name] = group
    server = KeelwayServer(
        tmp_path_factory.mktemp("guard"),
        database_url,
        models,
        settings={
            "routing": NO_RETRIES,
            "guardrails": {
                "policies": POLICIES,
                "attach": {"models": {name: name for name in POLICIES}},
            },
            "cache": {
                "backend": "store",
                "exact": {"enabled": True},
            },
        },
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    server.start()
    yield server
    server.close()


def client(server: KeelwayServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.key}"},
        timeout=60,
    )


def chat(
    server: KeelwayServer, model: str, messages: list[dict[str, Any]], **extra: Any
) -> httpx.Response:
    with client(server) as http:
        return http.post(
            "/v1/chat/completions",
            json={"model": model, "messages": messages, "temperature": 0, **extra},
            headers={"x-request-id": uuid.uuid4().hex},
        )


def stream_chat(
    server: KeelwayServer, model: str, messages: list[dict[str, Any]]
) -> tuple[str, list[str | None], str]:
    """Stream a chat; return the text, the finish reasons and the request id."""
    request_id = uuid.uuid4().hex
    pieces: list[str] = []
    finishes: list[str | None] = []
    with (
        client(server) as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": model,
                "messages": messages,
                "stream": True,
                "temperature": 0,
            },
            headers={"x-request-id": request_id},
        ) as response,
    ):
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            assert "error" not in event, event
            for choice in event.get("choices") or ():
                pieces.append(choice.get("delta", {}).get("content") or "")
                if choice.get("finish_reason"):
                    finishes.append(choice["finish_reason"])
    return "".join(pieces), finishes, request_id


def upstream_text(upstream: FakeOpenAI, since: int) -> str:
    return json.dumps(upstream.requests[since:], ensure_ascii=False)


def test_the_labelled_set_is_large_enough() -> None:
    values = pii_values()
    assert len(values) >= 150
    assert len(batches()) >= 6


def test_pseudonymized_values_never_reach_the_upstream(
    server: KeelwayServer, upstream: FakeOpenAI
) -> None:
    since = len(upstream.requests)
    for batch in batches():
        response = chat(server, "pseudo", [{"role": "user", "content": batch}])
        assert response.status_code == 200, response.text
        # The repeat model echoes the placeholders; the caller gets the values.
        assert response.json()["choices"][0]["message"]["content"] == batch
    sent = upstream_text(upstream, since)
    leaked = [value for value in pii_values() if value in sent]
    assert leaked == []
    assert "<EMAIL_ADDRESS_1>" in sent


def test_pseudonymized_values_are_restored_in_streams(
    server: KeelwayServer, upstream: FakeOpenAI
) -> None:
    since = len(upstream.requests)
    for batch in batches():
        received, finishes, _ = stream_chat(
            server, "pseudo", [{"role": "user", "content": batch}]
        )
        assert received == batch
        assert finishes == ["stop"]
    sent = upstream_text(upstream, since)
    assert [value for value in pii_values() if value in sent] == []


def test_values_in_tool_arguments_and_history_are_pseudonymized(
    server: KeelwayServer, upstream: FakeOpenAI
) -> None:
    since = len(upstream.requests)
    messages = [
        {"role": "system", "content": "Mail support at help.desk@example.org."},
        {"role": "user", "content": "Send the invoice to maria.lopez@example.com"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "send_mail",
                        "arguments": json.dumps(
                            {"to": "maria.lopez@example.com", "cc": "+44 20 7946 0958"}
                        ),
                    },
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": "sent to +44 20 7946 0958",
        },
        {"role": "user", "content": "Thanks, maria.lopez@example.com confirms."},
    ]
    response = chat(server, "pseudo", messages)
    assert response.status_code == 200
    assert (
        response.json()["choices"][0]["message"]["content"] == messages[-1]["content"]
    )
    sent = upstream.requests[since]
    raw = json.dumps(sent)
    for value in ("maria.lopez@example.com", "help.desk@example.org", "7946 0958"):
        assert value not in raw
    # One value, one placeholder, everywhere in the conversation.
    arguments = json.loads(
        sent["messages"][2]["tool_calls"][0]["function"]["arguments"]
    )
    first_user = sent["messages"][1]["content"]
    assert arguments["to"] in first_user
    assert arguments["to"] in sent["messages"][4]["content"]
    assert arguments["to"] != sent["messages"][0]["content"].split()[-1]


def test_the_anthropic_route_is_pseudonymized_too(
    server: KeelwayServer, upstream: FakeOpenAI
) -> None:
    since = len(upstream.requests)
    text_in = "Call me on +1 415 555 2671 or write to sam.k+news@mail.example.com"
    body = {
        "model": "pseudo",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text_in}],
    }
    with client(server) as http:
        response = http.post("/v1/messages", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["content"][0]["text"] == text_in
        streamed = []
        with http.stream("POST", "/v1/messages", json={**body, "stream": True}) as sse:
            for line in sse.iter_lines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    delta = event.get("delta") or {}
                    if delta.get("type") == "text_delta":
                        streamed.append(delta["text"])
        assert "".join(streamed) == text_in
    sent = upstream_text(upstream, since)
    assert "555 2671" not in sent
    assert "sam.k+news" not in sent


def test_redacted_values_are_nowhere_in_store_log_or_cache(
    server: KeelwayServer, upstream: FakeOpenAI, database_url: str
) -> None:
    request_ids = []
    for batch in batches():
        response = chat(server, "redact", [{"role": "user", "content": batch}])
        assert response.status_code == 200
        content = response.json()["choices"][0]["message"]["content"]
        assert re.search(r"<[A-Z_]+>", content)
        assert [value for value in pii_values() if value in content] == []
        # The same request again comes from the cache.
        again = chat(server, "redact", [{"role": "user", "content": batch}])
        assert again.json() == response.json()
        _, _, request_id = stream_chat(
            server, "redact", [{"role": "user", "content": batch + "\nstreamed"}]
        )
        request_ids.append(request_id)
    for request_id in request_ids:
        wait_for_trace(server, request_id)
    # Eval cases made from these traces keep what the traces keep.
    env = {"KEELWAY_HOME": str(server.home), "FAKE_OPENAI_KEY": API_KEY}
    config = ["--config", str(server.config_path)]
    created = run_cli(
        ["users", "create", "root", "--role", "admin", "--json", *config], env, False
    )
    assert created.returncode == 0, created.stderr
    env["KEELWAY_USER_KEY"] = json.loads(created.stdout)["key"]
    added = run_cli(
        [
            "dataset",
            "add-from-traces",
            "from-redacted",
            "--filter",
            "model=redact",
            "--expected-from-output",
            *config,
        ],
        env,
    )
    assert "from-redacted" in added.stdout
    exported = run_cli(["dataset", "export", "from-redacted", *config], env).stdout
    assert "<EMAIL_ADDRESS>" in exported
    values = pii_values()
    assert [value for value in values if value in exported] == []
    dump = dump_store(database_url)
    assert int(dump["_counts"]["dataset_cases"]) >= len(batches())
    assert "cache_entries" in dump["_tables"]
    assert int(dump["_counts"]["cache_entries"]) >= len(batches())
    everything = json.dumps(dump, default=str, ensure_ascii=False)
    assert "<EMAIL_ADDRESS>" in everything
    assert [value for value in values if value in everything] == []
    for path in sqlite_files(database_url):
        raw = path.read_bytes()
        assert [value for value in values if value.encode() in raw] == []
    # The server's own address is in its start-up lines, before any request.
    startup = server.log().split('"message":"request"')[0]
    log = server.log()
    leaked = [value for value in values if value in log and value not in startup]
    assert leaked == []
    assert '"message":"request"' in log


def test_escalated_requests_go_on_and_are_marked_for_review(
    server: KeelwayServer,
) -> None:
    request_id = uuid.uuid4().hex
    with client(server) as http:
        response = http.post(
            "/v1/chat/completions",
            json={
                "model": "review",
                "messages": [{"role": "user", "content": "SSN 536-22-1234 please"}],
            },
            headers={"x-request-id": request_id},
        )
    assert response.status_code == 200
    trace = wait_for_trace(server, request_id)
    guard = trace["attributes"]["guardrails"]
    assert guard["review"] == "pending"
    assert guard["input"][0]["outcome"] == "triggered"
    assert "536-22-1234" not in json.dumps(trace, default=str)


def test_a_blocked_request_gets_a_clear_400_without_the_value(
    server: KeelwayServer, upstream: FakeOpenAI
) -> None:
    since = len(upstream.requests)
    request_id = uuid.uuid4().hex
    with client(server) as http:
        response = http.post(
            "/v1/chat/completions",
            json={
                "model": "blocking",
                "messages": [{"role": "user", "content": "card 4111 1111 1111 1111"}],
            },
            headers={"x-request-id": request_id},
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "guardrail_blocked"
    assert error["type"] == "invalid_request_error"
    assert "'pii'" in error["message"]
    assert "CREDIT_CARD" in error["message"]
    assert "4111" not in response.text
    assert len(upstream.requests) == since
    trace = wait_for_trace(server, request_id)
    assert "4111" not in json.dumps(trace, default=str)
    assert trace["http_status"] == 400


def test_a_streamed_canary_is_cut_before_it_is_sent(
    server: KeelwayServer, upstream: FakeOpenAI
) -> None:
    system = (
        "You are the billing assistant of a small utility company. Answer questions"
        " about invoices, payment dates and tariffs politely and briefly. Never"
        " discuss other customers, never promise refunds, and hand anything about"
        " disconnections to a human agent through the escalation tool."
    )
    since = len(upstream.requests)
    received, finishes, request_id = stream_chat(
        server,
        "leak",
        [{"role": "system", "content": system}, {"role": "user", "content": "hi"}],
    )
    sent_system = upstream.requests[since]["messages"][0]["content"]
    canary = sent_system[len(system) :].split("internal reference ")[1].split(";")[0]
    assert canary.startswith("kw-") and len(canary) > 10
    # Everything before the canary may go out; the canary never does.
    assert canary not in received
    assert canary[:3] not in received
    assert received and system.startswith(received[: len(system)])
    assert finishes == ["content_filter"]
    trace = wait_for_trace(server, request_id)
    spans = {span["name"]: span for span in trace["spans"]}
    verdict = spans["guard.system_prompt_leak"]["attributes"]
    assert verdict["triggered"] is True
    assert verdict["score"] == 1.0
    assert canary not in json.dumps(trace, default=str)
    assert trace["response_body"] and "content_filter" in trace["response_body"]


def test_requests_without_a_policy_pass_untouched(
    server: KeelwayServer, upstream: FakeOpenAI
) -> None:
    since = len(upstream.requests)
    response = chat(
        server, "plain", [{"role": "user", "content": "mail a@example.com"}]
    )
    assert response.status_code == 200
    assert upstream.requests[since]["messages"][0]["content"] == "mail a@example.com"


def test_verdicts_are_counted_in_metrics(server: KeelwayServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        metrics = http.get("/metrics").text
    assert (
        'keelway_guardrail_verdicts_total{action="pseudonymize",outcome="triggered",'
        'policy="pseudo",scanner="pii",stage="input"}'
    ) in metrics
    assert 'keelway_guardrail_seconds_bucket{le="0.001",scanner="pii"' in metrics


def dump_store(url: str) -> dict[str, Any]:
    """Every row of every table of the store, as text."""
    database = open_database(url)
    try:
        dump: dict[str, Any] = {"_tables": [], "_counts": {}}
        with database.engine.connect() as connection:
            for table in inspect(connection).get_table_names():
                rows = connection.execute(text(f'SELECT * FROM "{table}"')).all()
                dump["_tables"].append(table)
                dump["_counts"][table] = len(rows)
                dump[table] = [[str(value) for value in row] for row in rows]
        return dump
    finally:
        database.close()


def sqlite_files(url: str) -> list[Path]:
    if not url.startswith("sqlite:///"):
        return []
    path = Path(url.removeprefix("sqlite:///"))
    return [
        candidate
        for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-journal"))
        if candidate.exists()
    ]


REDIS_URL = os.environ.get("KEELWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def test_redacted_values_stay_out_of_a_redis_cache(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, upstream: FakeOpenAI
) -> None:
    import redis

    prefix = f"keelway-test-guard:{uuid.uuid4().hex[:8]}:"
    server = KeelwayServer(
        tmp_path_factory.mktemp("guard-redis"),
        database_url,
        {"redact": openai_models(upstream.base_url, ["repeat"])["repeat"]},
        settings={
            "routing": NO_RETRIES,
            "guardrails": {
                "policies": {"redact": POLICIES["redact"]},
                "default": "redact",
            },
            "cache": {
                "backend": "redis",
                "redis_url": REDIS_URL,
                "prefix": prefix,
                "exact": {"enabled": True},
            },
        },
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    server.start()
    client_redis = redis.Redis.from_url(REDIS_URL)
    try:
        for batch in batches():
            response = chat(server, "redact", [{"role": "user", "content": batch}])
            assert response.status_code == 200
        keys = list(client_redis.scan_iter(match=prefix + "*"))
        assert len(keys) >= len(batches())
        stored = " ".join(redis_value(client_redis, key) for key in keys)
        assert "EMAIL_ADDRESS" in stored
        assert [value for value in pii_values() if value in stored] == []
    finally:
        for key in client_redis.scan_iter(match=prefix + "*"):
            client_redis.delete(key)
        client_redis.close()
        server.close()


def redis_value(client: Any, key: bytes) -> str:
    """Return a Redis key and its whole value as text, whatever its type."""
    kind = client.type(key).decode()
    if kind == "string":
        value: Any = client.get(key)
    elif kind == "hash":
        value = client.hgetall(key)
    elif kind == "list":
        value = client.lrange(key, 0, -1)
    elif kind == "set":
        value = client.smembers(key)
    elif kind == "zset":
        value = client.zrange(key, 0, -1)
    else:
        value = client.dump(key)
    return key.decode("utf-8", "replace") + " " + as_text(value)


def as_text(value: Any) -> str:
    """Decode bytes inside a Redis reply so non-ASCII values stay searchable."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return " ".join(as_text(k) + " " + as_text(v) for k, v in value.items())
    if isinstance(value, list | set | tuple):
        return " ".join(as_text(item) for item in value)
    return str(value)
