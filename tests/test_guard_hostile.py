"""Hostile inputs against the guardrails of a real gateway.

One server sits in front of a fake upstream that streams one character a
chunk, so every value and every placeholder arrives split. Each test sends
something a careless or hostile caller could send and checks an exact
outcome: what the upstream received, what the caller got back, what the
trace and the log keep, and that the gateway returns a JSON error
rather than a 500.

The test marked ``xfail(strict=True)`` shows a known gap of the PII
scanner; its reason describes it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from keelway.config import ConfigError, parse_config
from keelway.gateway.app import guard_engine
from keelway.monitoring.metrics import Metrics
from tests.conftest import NO_RETRIES, openai_models
from tests.fakes.openai_upstream import ANSWER, API_KEY, FakeOpenAI, _echo
from tests.servers import KeelwayServer
from tests.traces import wait_for_trace

ROOT = Path(__file__).resolve().parents[1]
NEEDLE = "tests.fakes.scanners:build_needle"
FAILING = "tests.fakes.scanners:build_failing"

EMAIL = "maria.lopez@example.com"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
SSN = "536-22-1234"
VALUES = (EMAIL, PHONE, CARD, IBAN, SSN)
# A street address the recognizer finds across a line break.
ADDRESS = "30 St Mary Axe,\nLondon EC3A 8EP"

PII_REDACT = {"type": "pii", "action": "redact", "on_error": "closed"}
PII_PSEUDO = {"type": "pii", "action": "pseudonymize", "on_error": "closed"}

POLICIES: dict[str, Any] = {
    "pseudo": {"input": [PII_PSEUDO]},
    "redact": {"input": [PII_REDACT], "output": [PII_REDACT]},
    # Values reach the upstream here, so the answer contains them and only
    # the output stage keeps them from the caller.
    "answer-redact": {"output": [PII_REDACT]},
    "narrow": {"input": [PII_PSEUDO], "stream_window": 16},
    "leak": {
        "output": [
            {"type": "system_prompt_leak", "action": "block", "min_overlap": 1.0}
        ]
    },
    "overlap": {
        "input": [
            {
                "type": "custom",
                "factory": NEEDLE,
                "word": "alice.b",
                "entity": "NAME",
                "action": "redact",
                "name": "name",
            },
            {
                "type": "custom",
                "factory": NEEDLE,
                "word": "b@example.com",
                "entity": "MAIL",
                "action": "redact",
                "name": "mail",
            },
        ]
    },
    "separator": {
        "input": [{"type": "deny", "regexes": [r"\s+token-\d+"], "action": "redact"}]
    },
    "failing": {
        "input": [
            PII_PSEUDO,
            {"type": "custom", "factory": FAILING, "action": "block"},
        ]
    },
}
# Public model name -> (policy, upstream model).
MODELS = {
    "pseudo": ("pseudo", "repeat"),
    "redact": ("redact", "repeat"),
    "answer-redact": ("answer-redact", "repeat"),
    "narrow": ("narrow", "repeat"),
    "leak": ("leak", "repeat-system"),
    "overlap": ("overlap", "repeat"),
    "separator": ("separator", "repeat"),
    "failing": ("failing", "repeat"),
    "tools": ("pseudo", "tool-echo"),
}


class Upstream(FakeOpenAI):
    """The fake upstream, plus ``tool-echo``: a tool call that quotes the user.

    ``tool-echo`` returns one call of a ``post`` tool whose arguments
    are ``{"text": <the last user message>}``, so the placeholders of that
    message come back inside JSON, as they do when a model passes a masked
    value on to a tool.
    """

    def _completion(self, body: dict[str, Any], answer: str = ANSWER) -> dict[str, Any]:
        result = super()._completion(body, answer)
        if body.get("model") == "tool-echo":
            result["choices"][0]["message"] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_echo",
                        "type": "function",
                        "function": {"name": "post", "arguments": self._args(body)},
                    }
                ],
            }
            result["choices"][0]["finish_reason"] = "tool_calls"
        return result

    @staticmethod
    def _args(body: dict[str, Any]) -> str:
        return json.dumps({"text": _echo(body)}, ensure_ascii=False)

    async def _stream(
        self, request: web.Request, body: dict[str, Any], *, slow: bool = False
    ) -> web.StreamResponse:
        if body.get("model") != "tool-echo":
            return await super()._stream(request, body, slow=slow)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        head = {"index": 0, "id": "call_echo", "type": "function"}
        head["function"] = {"name": "post", "arguments": ""}
        await response.write(
            self._chunk(body, {"role": "assistant", "tool_calls": [head]})
        )
        arguments = self._args(body)
        for start in range(0, len(arguments), 3):
            piece = {
                "index": 0,
                "function": {"arguments": arguments[start : start + 3]},
            }
            await response.write(self._chunk(body, {"tool_calls": [piece]}))
        await response.write(self._chunk(body, {}, "tool_calls"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as fake:
        # One character a chunk: the hardest split for the stream window.
        fake.echo_chunk = 1
        yield fake


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
) -> Iterator[KeelwayServer]:
    # A store of its own on SQLite: these tests are about what the guardrails
    # let through, which does not depend on the store; the gateway tests
    # check the stored traces on both backends.
    folder = tmp_path_factory.mktemp("hostile")
    database_url = f"sqlite:///{folder / 'keelway.db'}"
    models = {
        name: openai_models(upstream.base_url, [target])[target]
        for name, (_, target) in MODELS.items()
    }
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    server = KeelwayServer(
        folder,
        database_url,
        models,
        settings={
            "routing": NO_RETRIES,
            "guardrails": {
                "policies": POLICIES,
                "attach": {"models": {n: p for n, (p, _) in MODELS.items()}},
            },
        },
        # The custom scanners live in the test package, outside the install.
        env={"FAKE_OPENAI_KEY": API_KEY, "PYTHONPATH": path},
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
    server: KeelwayServer,
    model: str,
    messages: list[dict[str, Any]],
    request_id: str | None = None,
    **extra: Any,
) -> httpx.Response:
    with client(server) as http:
        return http.post(
            "/v1/chat/completions",
            json={"model": model, "messages": messages, **extra},
            headers={"x-request-id": request_id or uuid.uuid4().hex},
        )


def content(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


class Streamed:
    """The text, tool arguments, finish reasons and errors of a chat stream."""

    def __init__(self) -> None:
        self.text = ""
        self.arguments = ""
        self.finishes: list[str] = []
        self.errors: list[Any] = []


def stream_chat(
    server: KeelwayServer,
    model: str,
    messages: list[dict[str, Any]],
    request_id: str | None = None,
) -> Streamed:
    got = Streamed()
    with (
        client(server) as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": model, "messages": messages, "stream": True},
            headers={"x-request-id": request_id or uuid.uuid4().hex},
        ) as response,
    ):
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                got.errors.append(event["error"])
            for choice in event.get("choices") or ():
                delta = choice.get("delta") or {}
                got.text += delta.get("content") or ""
                for call in delta.get("tool_calls") or ():
                    got.arguments += (call.get("function") or {}).get("arguments") or ""
                if choice.get("finish_reason"):
                    got.finishes.append(choice["finish_reason"])
    return got


def stream_messages(server: KeelwayServer, body: dict[str, Any]) -> tuple[str, str]:
    """Stream an Anthropic request; return the text and the stop reason."""
    text, stop = "", ""
    with (
        client(server) as http,
        http.stream("POST", "/v1/messages", json={**body, "stream": True}) as sse,
    ):
        assert sse.status_code == 200, sse.read()
        for line in sse.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            assert event.get("type") != "error", event
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                text += delta["text"]
            if delta.get("stop_reason"):
                stop = delta["stop_reason"]
    return text, stop


def sent_since(upstream: Upstream, since: int) -> str:
    assert len(upstream.requests) > since, "nothing reached the upstream"
    return json.dumps(upstream.requests[since:], ensure_ascii=False)


def leaked(text: str, values: tuple[str, ...] | list[str] = VALUES) -> list[str]:
    return [value for value in values if value in text]


# -- placeholders the caller wrote, unicode, size ------------------------------


LITERALS = (
    f"Template fields <EMAIL_ADDRESS_1> and <PHONE_NUMBER_1> stay as written;"
    f" the real ones are {EMAIL} and {PHONE}. Half a tag <EMAIL_ADDRESS_2 and"
    f" <CREDIT_CARD_0> too, then {CARD} and <<EMAIL_ADDRESS_1>>."
)


def test_pseudonyms_keep_caller_placeholders(
    server: KeelwayServer, upstream: Upstream
) -> None:
    since = len(upstream.requests)
    messages = [{"role": "user", "content": LITERALS}]
    assert content(chat(server, "pseudo", messages)) == LITERALS
    streamed = stream_chat(server, "pseudo", messages)
    assert streamed.text == LITERALS
    assert streamed.finishes == ["stop"]
    sent = sent_since(upstream, since)
    assert leaked(sent) == []
    # The caller's own tags went up as written, and the values got others.
    masked = upstream.requests[since]["messages"][0]["content"]
    assert masked.count("<EMAIL_ADDRESS_1>") == 2
    assert "<EMAIL_ADDRESS_2>" in masked
    assert "<PHONE_NUMBER_2>" in masked


UNICODE = (
    f"📧{EMAIL}📞{PHONE}🙂 \u202e{EMAIL}\u202c مرحبا {CARD} شكرا"
    f" é {IBAN} é \u200f{SSN}\u200f 👍🏽"
)


def test_pseudonyms_among_emoji_and_rtl(
    server: KeelwayServer, upstream: Upstream
) -> None:
    since = len(upstream.requests)
    messages = [{"role": "user", "content": UNICODE}]
    assert content(chat(server, "pseudo", messages)) == UNICODE
    assert stream_chat(server, "pseudo", messages).text == UNICODE
    assert leaked(sent_since(upstream, since)) == []


@pytest.mark.xfail(
    strict=True,
    reason="pii.py: an email with a combining mark on its last letter, or"
    " written in fullwidth letters, is not found and goes upstream whole",
)
def test_pseudonyms_combining_and_fullwidth(
    server: KeelwayServer, upstream: Upstream
) -> None:
    since = len(upstream.requests)
    combining = EMAIL + "\u0301"
    fullwidth = "ｍａｒｉａ＠ｅｘａｍｐｌｅ．ｃｏｍ"
    text = f"write to {combining} or {fullwidth}"
    assert content(chat(server, "pseudo", [{"role": "user", "content": text}])) == text
    sent = sent_since(upstream, since)
    assert leaked(sent, [EMAIL, fullwidth]) == []


def test_pseudonyms_in_100kb_message(server: KeelwayServer, upstream: Upstream) -> None:
    filler = "The quick brown fox jumps over the lazy dog. " * 40
    emails = [f"person{i}.name@example{i % 7}.org" for i in range(50)]
    text = "".join(f"{filler}{email} {PHONE}\n" for email in emails)
    assert 90_000 < len(text) < 110_000
    since = len(upstream.requests)
    assert content(chat(server, "pseudo", [{"role": "user", "content": text}])) == text
    sent = sent_since(upstream, since)
    assert leaked(sent, [*emails, PHONE]) == []
    assert "<EMAIL_ADDRESS_50>" in sent
    assert "<EMAIL_ADDRESS_51>" not in sent


def test_pseudonyms_over_500_messages(
    server: KeelwayServer, upstream: Upstream
) -> None:
    messages = []
    for i in range(500):
        role = "user" if i % 2 == 0 else "assistant"
        messages.append(
            {"role": role, "content": f"turn {i}: user{i % 250}@example.com"}
        )
    messages.append(
        {"role": "user", "content": "last: user249@example.com, user0@example.com"}
    )
    since = len(upstream.requests)
    answer = content(chat(server, "pseudo", messages))
    assert answer == messages[-1]["content"]
    sent = upstream.requests[since]["messages"]
    assert leaked(json.dumps(sent), ["@example.com"]) == []
    # Numbered by first appearance: user0 is 1, user249 is 250.
    assert sent[-1]["content"] == "last: <EMAIL_ADDRESS_250>, <EMAIL_ADDRESS_1>"


def test_pseudonyms_of_1000_emails(server: KeelwayServer, upstream: Upstream) -> None:
    emails = [f"u{i:04d}@mail{i % 13}.example.net" for i in range(1000)]
    text = " | ".join(emails)
    messages = [{"role": "user", "content": text}]
    since = len(upstream.requests)
    assert content(chat(server, "pseudo", messages)) == text
    upstream.echo_chunk = 7
    try:
        assert stream_chat(server, "pseudo", messages).text == text
    finally:
        upstream.echo_chunk = 1
    sent = sent_since(upstream, since)
    assert leaked(sent, emails) == []
    assert "<EMAIL_ADDRESS_1000>" in sent


# -- every field that carries text -------------------------------------------


def test_pseudonyms_in_openai_fields(server: KeelwayServer, upstream: Upstream) -> None:
    messages = [
        {"role": "developer", "content": f"Escalate to {EMAIL}."},
        {"role": "system", "content": [{"type": "text", "text": f"IBAN {IBAN}"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"card {CARD}"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/a.png"},
                },
                {"type": "text", "text": f"ssn {SSN}"},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {
                        "name": "lookup",
                        "arguments": json.dumps(
                            {"who": {"phone": PHONE, "mail": EMAIL}}
                        ),
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": f"found {PHONE} / {SSN}"},
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": [{"type": "text", "text": f"and {CARD}"}],
        },
        {"role": "user", "content": f"so {EMAIL} it is"},
    ]
    since = len(upstream.requests)
    assert content(chat(server, "pseudo", messages)) == f"so {EMAIL} it is"
    assert leaked(sent_since(upstream, since)) == []


def test_pseudonyms_in_anthropic_fields(
    server: KeelwayServer, upstream: Upstream
) -> None:
    last = f"Confirm {EMAIL} and {PHONE}."
    body = {
        "model": "pseudo",
        "max_tokens": 200,
        "system": [
            {"type": "text", "text": f"Bank: {IBAN}"},
            {
                "type": "text",
                "text": f"Card on file {CARD}",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": f"I am {SSN}"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Looking you up."},
                    {
                        "type": "tool_use",
                        "id": "tu1",
                        "name": "lookup",
                        "input": {"contact": {"emails": [EMAIL], "phone": PHONE}},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu1",
                        "content": f"card {CARD}",
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu1",
                        "content": [{"type": "text", "text": f"iban {IBAN}"}],
                    },
                    {"type": "text", "text": last},
                ],
            },
        ],
    }
    since = len(upstream.requests)
    with client(server) as http:
        response = http.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == last
    assert stream_messages(server, body) == (last, "end_turn")
    body["system"] = f"Bank: {IBAN}"
    with client(server) as http:
        assert http.post("/v1/messages", json=body).status_code == 200
    assert leaked(sent_since(upstream, since)) == []


UNSCANNED = [
    pytest.param(
        "/v1/chat/completions",
        {
            "messages": [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "mail", "arguments": {"to": EMAIL}},
                        }
                    ],
                },
                {"role": "user", "content": "go on"},
            ]
        },
        id="tool-arguments-as-an-object",
    ),
    pytest.param(
        "/v1/chat/completions",
        {
            "messages": [
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {
                        "name": "mail",
                        "arguments": json.dumps({"to": EMAIL}),
                    },
                },
                {"role": "user", "content": "go on"},
            ]
        },
        id="legacy-function-call",
    ),
    pytest.param(
        "/v1/chat/completions",
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": {"a": EMAIL}}]}
            ]
        },
        id="text-part-that-is-an-object",
    ),
    pytest.param(
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "user": EMAIL},
        id="openai-user",
    ),
    pytest.param(
        "/v1/chat/completions",
        {
            "messages": [{"role": "user", "content": "fix the mail"}],
            "prediction": {"type": "content", "content": f"To: {EMAIL}"},
        },
        id="predicted-output",
    ),
    pytest.param(
        "/v1/messages",
        {
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": EMAIL},
        },
        id="anthropic-metadata-user-id",
    ),
]


@pytest.mark.parametrize(("route", "body"), UNSCANNED)
def test_pseudonyms_outside_messages(
    server: KeelwayServer, upstream: Upstream, route: str, body: dict[str, Any]
) -> None:
    since = len(upstream.requests)
    with client(server) as http:
        response = http.post(route, json={"model": "pseudo", **body})
    # Refusing the field would do as well as masking it.
    assert response.status_code in (200, 400), response.text
    assert leaked(json.dumps(upstream.requests[since:])) == []


# -- pseudonyms put back into tool-call arguments -----------------------------


def test_restore_multiline_value_in_arguments(
    server: KeelwayServer,
) -> None:
    text = f"Send the letter to {ADDRESS} today"
    response = chat(server, "tools", [{"role": "user", "content": text}])
    assert response.status_code == 200, response.text
    call = response.json()["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"text": text}


def test_restore_multiline_value_in_streamed_arguments(
    server: KeelwayServer,
) -> None:
    text = f"Send the letter to {ADDRESS} today"
    streamed = stream_chat(server, "tools", [{"role": "user", "content": text}])
    assert streamed.finishes == ["tool_calls"]
    assert json.loads(streamed.arguments) == {"text": text}


def test_restore_multiline_value_in_tool_use(
    server: KeelwayServer,
) -> None:
    text = f"Send the letter to {ADDRESS} today"
    body = {
        "model": "tools",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
    }
    with client(server) as http:
        response = http.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    blocks = response.json()["content"]
    assert blocks[-1]["type"] == "tool_use"
    assert blocks[-1]["input"] == {"text": text}


def test_restore_single_line_values_in_arguments(
    server: KeelwayServer, upstream: Upstream
) -> None:
    text = f"Mail {EMAIL} and call {PHONE}"
    since = len(upstream.requests)
    response = chat(server, "tools", [{"role": "user", "content": text}])
    call = response.json()["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"text": text}
    streamed = stream_chat(server, "tools", [{"role": "user", "content": text}])
    assert json.loads(streamed.arguments) == {"text": text}
    assert leaked(sent_since(upstream, since)) == []


# -- overlapping and misplaced findings ---------------------------------------


def test_redact_overlapping_findings(server: KeelwayServer, upstream: Upstream) -> None:
    since = len(upstream.requests)
    chat(
        server,
        "overlap",
        [{"role": "user", "content": "write alice.b@example.com now"}],
    )
    sent = upstream.requests[since]["messages"][0]["content"]
    assert "alice" not in sent
    assert sent.startswith("write <")
    assert sent.endswith("> now")


def test_redact_match_starting_between_messages(
    server: KeelwayServer, upstream: Upstream
) -> None:
    since = len(upstream.requests)
    messages = [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "token-1234 here"},
    ]
    assert chat(server, "separator", messages).status_code == 200
    assert "token-1234" not in sent_since(upstream, since)


# -- streamed answers ----------------------------------------------------------


def cards_answer() -> tuple[str, str]:
    """An answer with a card at every offset a window edge can fall on."""
    parts, masked = [], []
    for pad in range(0, 70):
        filler = "y" * pad + " "
        parts.append(f"{filler}{CARD} end.")
        masked.append(f"{filler}<CREDIT_CARD> end.")
    return " ".join(parts), " ".join(masked)


def test_answer_redact_cards(server: KeelwayServer) -> None:
    text, expected = cards_answer()
    answer = content(chat(server, "answer-redact", [{"role": "user", "content": text}]))
    assert answer == expected


def test_stream_redact_cards_one_character_chunks(
    server: KeelwayServer,
) -> None:
    text, expected = cards_answer()
    streamed = stream_chat(server, "answer-redact", [{"role": "user", "content": text}])
    assert streamed.finishes == ["stop"]
    # The filler has no digits, so any digit sent is part of a card.
    assert re.findall(r"\d+", streamed.text) == []
    assert streamed.text == expected


def test_stream_restore_placeholder_longer_than_window(
    server: KeelwayServer,
) -> None:
    text = "x" * 14 + f" {ADDRESS} done"
    streamed = stream_chat(server, "narrow", [{"role": "user", "content": text}])
    assert streamed.text == text


def test_stream_restore_emails_in_narrow_window(
    server: KeelwayServer,
) -> None:
    # The same window restores emails at every other offset, so the failure
    # above is the lone '<' and nothing else.
    text = " ".join("x" * pad + f" {EMAIL}" for pad in range(40))
    streamed = stream_chat(server, "narrow", [{"role": "user", "content": text}])
    assert streamed.text == text


SYSTEM = (
    "You are the billing assistant of a small utility company. Answer questions"
    " about invoices and tariffs politely and briefly."
)


def test_stream_canary_one_character_chunks(
    server: KeelwayServer, upstream: Upstream
) -> None:
    since = len(upstream.requests)
    request_id = uuid.uuid4().hex
    messages = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
        {"role": "user", "content": "hi"},
    ]
    streamed = stream_chat(server, "leak", messages, request_id)
    sent = upstream.requests[since]["messages"][0]["content"]
    canary = re.search(r"kw-[0-9a-f]{16}", json.dumps(sent))
    assert canary is not None
    assert "kw-" not in streamed.text
    assert "internal reference" not in streamed.text
    assert SYSTEM.startswith(streamed.text.rstrip())
    assert streamed.finishes == ["content_filter"]
    trace = wait_for_trace(server, request_id)
    assert canary.group(0) not in json.dumps(trace, default=str)


def test_stream_canary_on_anthropic_route(server: KeelwayServer) -> None:
    body = {
        "model": "leak",
        "max_tokens": 100,
        "system": [{"type": "text", "text": SYSTEM}],
        "messages": [{"role": "user", "content": "hi"}],
    }
    text, stop = stream_messages(server, body)
    assert "kw-" not in text
    assert stop == "refusal"
    with client(server) as http:
        response = http.post("/v1/messages", json=body)
    assert response.status_code == 200, response.text
    assert "kw-" not in response.text
    assert response.json()["stop_reason"] == "refusal"


# -- traces, logs and error messages ------------------------------------------


def test_failing_scanner_keeps_values_out(
    server: KeelwayServer,
) -> None:
    request_id = uuid.uuid4().hex
    text = f"mail {EMAIL}, card {CARD}"
    response = chat(server, "failing", [{"role": "user", "content": text}], request_id)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "guardrail_blocked"
    assert (
        error["message"]
        == "request blocked by guardrail 'custom' failed and fails closed"
    )
    trace = wait_for_trace(server, request_id)
    stored = json.dumps(trace, default=str)
    assert leaked(stored) == []
    assert "<EMAIL_ADDRESS_1>" in stored
    assert leaked(server.log()) == []
    assert "RuntimeError in scanner 'custom'" in server.log()


def test_stream_trace_keeps_placeholders(
    server: KeelwayServer,
) -> None:
    request_id = uuid.uuid4().hex
    text = f"mail {EMAIL} or {PHONE}"
    streamed = stream_chat(
        server, "pseudo", [{"role": "user", "content": text}], request_id
    )
    assert streamed.text == text
    trace = wait_for_trace(server, request_id)
    stored = json.dumps(trace, default=str)
    assert leaked(stored) == []
    assert "<EMAIL_ADDRESS_1>" in stored
    assert "<PHONE_NUMBER_1>" in stored


def test_trace_masks_request_for_output_pii(
    server: KeelwayServer,
) -> None:
    request_id = uuid.uuid4().hex
    response = chat(
        server,
        "answer-redact",
        [{"role": "user", "content": f"card {CARD}"}],
        request_id,
    )
    assert content(response) == "card <CREDIT_CARD>"
    trace = wait_for_trace(server, request_id)
    assert leaked(json.dumps(trace, default=str)) == []


# -- request bodies that must get a 4xx, not a 500 ------------------------------


ODD_BODIES = [
    {"messages": [{"role": "user", "content": [1, "two", None, {"type": "text"}]}]},
    {"messages": [{"role": "user", "content": ""}]},
    {"messages": [{"role": "tool", "content": None}]},
    {
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [1, {"function": "x"}, {"function": {"arguments": 5}}],
            }
        ]
    },
    {"messages": [{"role": "user", "content": "x"}], "variables": [EMAIL]},
    {"messages": [{"role": "user", "content": "x"}], "variables": {"a": {"b": EMAIL}}},
    {"messages": [{"role": "user", "content": "x"}], "n": 3, "stream": True},
    {"messages": [{"role": "user", "content": "<" * 5000 + "EMAIL_ADDRESS_1>"}]},
    {"messages": [{"role": "user", "content": "<EMAIL_ADDRESS_999999>" * 500 + EMAIL}]},
    {"messages": [{"role": "system", "content": "\u0000" + EMAIL + "\ufeff"}]},
]


@pytest.mark.parametrize(
    "body", ODD_BODIES, ids=[f"body{i}" for i in range(len(ODD_BODIES))]
)
@pytest.mark.parametrize("model", ["pseudo", "redact", "leak"])
def test_odd_bodies_get_json_answers(
    server: KeelwayServer, upstream: Upstream, model: str, body: dict[str, Any]
) -> None:
    since = len(upstream.requests)
    rest = {key: value for key, value in body.items() if key != "messages"}
    response = chat(server, model, body["messages"], **rest)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert set(response.json()["error"]) >= {"message", "type", "code"}
    assert "Traceback" not in response.text
    if model != "leak":
        assert leaked(json.dumps(upstream.requests[since:])) == []


# -- configuration mistakes ----------------------------------------------------


def guardrails_config(guardrails: Any) -> dict[str, Any]:
    return {
        "models": {
            "m": {
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "m",
                        "base_url": "http://127.0.0.1:9/v1",
                        "api_key": "x",
                    }
                ]
            }
        },
        "guardrails": guardrails,
    }


def one(scanner: dict[str, Any], stage: str = "input") -> dict[str, Any]:
    return {"policies": {"p": {stage: [scanner]}}}


CONFIG_MISTAKES = [
    pytest.param(one({"type": "nope"}), "unknown scanner 'nope'", id="unknown-type"),
    pytest.param(one({"type": "pii", "action": "explode"}), "action", id="bad-action"),
    pytest.param(
        one({"type": "max_tokens", "limit": 5, "action": "redact"}),
        "needs a scanner that finds spans",
        id="redact-on-whole-text",
    ),
    pytest.param(
        one({"type": "deny", "substrings": ["x"], "bogus": 1}),
        "no setting(s): bogus",
        id="unknown-setting",
    ),
    pytest.param(
        {"policies": {"p": {}}, "attach": {"keys": {"bot": "missing"}}},
        "attach.keys.bot: no policy named 'missing'",
        id="attach-to-missing-policy",
    ),
    pytest.param(
        one({"type": "custom", "factory": "tests.fakes.scanners:nope"}),
        "cannot load factory",
        id="missing-factory",
    ),
    pytest.param(
        one({"type": "deny", "regexes": ["(unclosed"]}),
        "is not a valid regular expression",
        id="invalid-regex",
    ),
    pytest.param(
        one({"type": "custom", "factory": NEEDLE}),
        "custom",
        id="factory-raises-key-error",
    ),
    pytest.param(
        one({"type": "custom", "factory": "tests.fakes.scanners:__doc__"}),
        "custom",
        id="factory-not-callable",
    ),
    pytest.param(
        one({"type": "pii", "countries": {1: "US"}}),
        "countries",
        id="setting-with-a-number-key",
    ),
    pytest.param(
        one({"type": "deny", "substrings": ["x"], "timeout_ms": 10**30}),
        "timeout_ms",
        id="setting-with-a-huge-integer",
    ),
    pytest.param(
        {"policies": {"p": {}}, "stored_pii": {"bogus": 1}},
        "stored_pii",
        id="bad-stored-pii-settings",
    ),
]


@pytest.mark.parametrize(("guardrails", "expected"), CONFIG_MISTAKES)
def test_config_mistake_is_config_error(
    guardrails: dict[str, Any], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The custom factories are imported from the test package.
    monkeypatch.syspath_prepend(str(ROOT))
    with pytest.raises(ConfigError) as caught:
        config = parse_config(guardrails_config(guardrails), "keelway.yaml")
        guard_engine(config, Metrics())
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_serve_broken_factory_one_line(tmp_path: Path) -> None:
    config = guardrails_config(one({"type": "custom", "factory": NEEDLE}))
    config["database"] = {"url": f"sqlite:///{tmp_path / 'keelway.db'}"}
    config["server"] = {"host": "127.0.0.1", "port": 0}
    path = tmp_path / "keelway.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "KEELWAY_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "keelway", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: ")
