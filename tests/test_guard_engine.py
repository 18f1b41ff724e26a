"""The guardrail engine and stream guard, with scanners whose matches are known.

These tests drive the engine directly: policies of ``custom`` scanners that
find a fixed word, and one that always raises. The gateway tests run the
same paths through a real server with the real PII scanner.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from keelway.guardrails.config import GuardrailsConfig
from keelway.guardrails.engine import Blocked, GuardEngine, InputResult, with_canary
from keelway.guardrails.stream import StreamGuard
from keelway.monitoring.metrics import Metrics
from keelway.tracing.records import TraceRecord

NEEDLE = "tests.fakes.scanners:build_needle"
FAILING = "tests.fakes.scanners:build_failing"


def needle(word: str, action: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "custom",
        "factory": NEEDLE,
        "word": word,
        "entity": "NAME",
        "action": action,
        "name": f"needle-{word}-{action}",
        **extra,
    }


def engine(policies: dict[str, Any], **config: Any) -> GuardEngine:
    parsed = GuardrailsConfig.model_validate({"policies": policies, **config})
    return GuardEngine(parsed, Metrics())


def chat(*messages: tuple[str, str]) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": role, "content": text} for role, text in messages],
    }


def run_input(
    guard: GuardEngine, body: dict[str, Any], policy: str = "p"
) -> tuple[InputResult, TraceRecord]:
    trace = TraceRecord(route="chat", request_id="r")
    result = asyncio.run(guard.check_input(guard.policies[policy], body, trace))
    return result, trace


def answer(text: str) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
    }


def test_pseudonyms_are_stable_and_restored() -> None:
    guard = engine({"p": {"input": [needle("alice", "pseudonymize")]}})
    body = chat(
        ("system", "You help alice."),
        ("user", "Write to alice and to alice again."),
    )
    result, trace = run_input(guard, body)
    sent = json.dumps(result.body)
    assert "alice" not in sent
    assert result.body["messages"][0]["content"] == "You help <NAME_1>."
    assert result.body["messages"][1]["content"] == (
        "Write to <NAME_1> and to <NAME_1> again."
    )
    assert result.stored == result.body
    # The caller's body is left alone.
    assert body["messages"][1]["content"] == "Write to alice and to alice again."
    out = asyncio.run(guard.check_output(result, answer("Dear <NAME_1>, hi."), trace))
    assert out.delivered["choices"][0]["message"]["content"] == "Dear alice, hi."
    assert out.stored["choices"][0]["message"]["content"] == "Dear <NAME_1>, hi."


def test_a_placeholder_the_caller_wrote_is_never_handed_out() -> None:
    guard = engine({"p": {"input": [needle("alice", "pseudonymize")]}})
    result, _ = run_input(guard, chat(("user", "Literal <NAME_1> then alice.")))
    assert result.body["messages"][0]["content"] == "Literal <NAME_1> then <NAME_2>."
    assert result.vault.restore("<NAME_1> <NAME_2>") == "<NAME_1> alice"


def test_redact_masks_every_occurrence_and_tool_arguments() -> None:
    guard = engine({"p": {"input": [needle("bob", "redact")]}})
    body = chat(("user", "bob, bob and bob"))
    body["messages"].append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "mail", "arguments": '{"to": "bob"}'},
                }
            ],
        }
    )
    result, _ = run_input(guard, body)
    assert result.body["messages"][0]["content"] == "<NAME>, <NAME> and <NAME>"
    arguments = result.body["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert arguments == '{"to": "<NAME>"}'


def test_flag_sends_the_value_but_stores_it_masked() -> None:
    guard = engine({"p": {"input": [needle("carol", "flag", sensitive=True)]}})
    # The needle scanner is not of a sensitive type, so mark the step by name.
    guard.policies["p"].input[0].sensitive = True
    result, trace = run_input(guard, chat(("user", "hello carol")))
    assert result.body["messages"][0]["content"] == "hello carol"
    assert result.stored["messages"][0]["content"] == "hello <NAME>"
    assert result.raw_upstream
    out = asyncio.run(guard.check_output(result, answer("bye carol"), trace))
    assert out.delivered["choices"][0]["message"]["content"] == "bye carol"
    assert out.stored["choices"][0]["message"]["content"] == "bye <NAME>"


def test_block_names_the_scanner_and_not_the_text() -> None:
    guard = engine({"p": {"input": [needle("dave", "block")]}})
    trace = TraceRecord(route="chat", request_id="r")
    with pytest.raises(Blocked) as caught:
        asyncio.run(
            guard.check_input(guard.policies["p"], chat(("user", "hi dave")), trace)
        )
    message = str(caught.value)
    assert "needle-dave-block" in message
    assert "NAME" in message
    assert "dave'" not in message.replace("needle-dave", "")
    assert caught.value.stored["messages"][0]["content"] == "hi dave"
    spans = {span.name: span for span in trace.spans}
    verdict = spans["guard.needle-dave-block"].attributes
    assert verdict["triggered"] is True
    assert verdict["spans"] == [
        {"type": "NAME", "start": 3, "end": 7, "score": 1.0, "in": "messages.0.content"}
    ]
    assert "dave" not in json.dumps(verdict).replace("needle-dave", "")


@pytest.mark.parametrize(
    ("on_error", "action", "blocks"),
    [
        ("closed", "block", True),
        ("open", "block", False),
        ("closed", "flag", False),
        ("open", "flag", False),
    ],
)
def test_a_failing_scanner_follows_its_on_error_setting(
    on_error: str, action: str, blocks: bool, caplog: pytest.LogCaptureFixture
) -> None:
    spec = {
        "type": "custom",
        "factory": FAILING,
        "action": action,
        "on_error": on_error,
    }
    guard = engine({"p": {"input": [spec]}})
    trace = TraceRecord(route="chat", request_id="r")
    body = chat(("user", "secret words 4111"))
    with caplog.at_level("WARNING", logger="keelway.guardrails"):
        if blocks:
            with pytest.raises(Blocked):
                asyncio.run(guard.check_input(guard.policies["p"], body, trace))
        else:
            result = asyncio.run(guard.check_input(guard.policies["p"], body, trace))
            assert result.body == body
    span = next(span for span in trace.spans if span.name == "guard.custom")
    assert span.status == "error"
    assert span.error == "RuntimeError in scanner 'custom'"
    assert span.attributes is not None and span.attributes["outcome"] == "error"
    logged = " ".join(str(record.__dict__) for record in caplog.records)
    assert "scanner failed" in caplog.text
    assert "secret words" not in logged
    metrics = guard.metrics
    assert metrics is not None
    value = metrics.guard_verdicts.labels(
        "p", "input", "custom", action, "error"
    )._value.get()
    assert value == 1


def test_a_masking_scanner_that_fails_closed_blocks() -> None:
    spec = {
        "type": "custom",
        "factory": FAILING,
        "action": "flag",
        "on_error": "closed",
    }
    guard = engine({"p": {"input": [spec]}})
    # flag fails closed by going on; a redacting one cannot, shown next.
    run_input(guard, chat(("user", "x")))
    failing_needle = {
        "type": "custom",
        "factory": FAILING,
        "action": "block",
        "on_error": "closed",
    }
    guard = engine({"p": {"output": [failing_needle]}})
    result, trace = run_input(guard, chat(("user", "x")))
    out = asyncio.run(guard.check_output(result, answer("anything"), trace))
    assert out.blocked is not None
    assert out.delivered["choices"][0]["finish_reason"] == "content_filter"
    assert out.delivered["choices"][0]["message"]["content"] is None


def test_span_actions_need_a_span_scanner() -> None:
    with pytest.raises(ValueError, match="needs a scanner that finds spans"):
        engine(
            {
                "p": {
                    "input": [
                        {"type": "custom", "factory": FAILING, "action": "redact"}
                    ]
                }
            }
        )


def test_policy_attachment_prefers_the_most_specific() -> None:
    guard = engine(
        {"a": {}, "b": {}, "c": {}, "d": {}, "e": {}},
        attach={
            "keys": {"k": "a"},
            "prompts": {"pr": "b"},
            "teams": {"t": "c"},
            "models": {"m": "d"},
        },
        default="e",
    )
    pick = guard.policy_for
    assert pick("k", "pr", "t", "m").name == "a"  # type: ignore[union-attr]
    assert pick("x", "pr", "t", "m").name == "b"  # type: ignore[union-attr]
    assert pick("x", "y", "t", "m").name == "c"  # type: ignore[union-attr]
    assert pick("x", "y", "z", "m").name == "d"  # type: ignore[union-attr]
    assert pick("x", "y", "z", "w").name == "e"  # type: ignore[union-attr]
    assert engine({"a": {}}).policy_for("k", None, None, "m") is None


def stream_chunks(text: str, size: int) -> list[dict[str, Any]]:
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    for start in range(0, len(text), size):
        chunks.append(
            {
                "choices": [
                    {"index": 0, "delta": {"content": text[start : start + size]}}
                ]
            }
        )
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return chunks


def relay(guard: StreamGuard, chunks: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """Feed chunks; return the text sent and the finish reasons seen."""
    sent: list[str] = []
    finishes: list[str] = []
    for chunk in chunks:
        for piece in guard.feed(chunk):
            for choice in piece["choices"]:
                sent.append(choice["delta"].get("content", ""))
                if choice.get("finish_reason"):
                    finishes.append(choice["finish_reason"])
        if guard.blocked is not None:
            break
    for piece in guard.finish():
        for choice in piece["choices"]:
            sent.append(choice["delta"].get("content", ""))
            if choice.get("finish_reason"):
                finishes.append(choice["finish_reason"])
    return "".join(sent), finishes


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
def test_streamed_placeholders_are_restored_whatever_the_chunking(size: int) -> None:
    guard = engine({"p": {"input": [needle("alice", "pseudonymize")]}})
    result, _ = run_input(guard, chat(("user", "about alice")))
    text = "Hi <NAME_1>! " + "padding words " * 30 + "Bye <NAME_1>."
    stream = StreamGuard(guard, result)
    sent, finishes = relay(stream, stream_chunks(text, size))
    assert sent == text.replace("<NAME_1>", "alice")
    assert finishes == ["stop"]
    stored = stream.stored(answer(text))
    assert stored["choices"][0]["message"]["content"] == text


@pytest.mark.parametrize("size", [1, 3, 8])
def test_a_streamed_block_cuts_before_the_match_is_sent(size: int) -> None:
    guard = engine({"p": {"output": [needle("TOPSECRET", "block")]}})
    result, trace = run_input(guard, chat(("user", "hi")))
    text = "benign start " * 40 + "TOPSECRET tail"
    stream = StreamGuard(guard, result)
    sent, finishes = relay(stream, stream_chunks(text, size))
    assert "TOPSECRET" not in sent
    assert "T" not in sent  # not even its first letter
    assert sent and text.startswith(sent)
    assert finishes == ["content_filter"]
    stream.record(trace)
    span = next(span for span in trace.spans if span.name.startswith("guard.needle"))
    assert span.attributes is not None and span.attributes["triggered"] is True


@pytest.mark.parametrize("size", [1, 4, 9])
def test_streamed_redaction_never_sends_a_split_value(size: int) -> None:
    guard = engine({"p": {"output": [needle("4111222233334444", "redact")]}})
    result, _ = run_input(guard, chat(("user", "hi")))
    text = "card 4111222233334444 and again 4111222233334444 done"
    stream = StreamGuard(guard, result)
    sent, _ = relay(stream, stream_chunks(text, size))
    assert sent == "card <NAME> and again <NAME> done"


def test_canary_goes_upstream_only() -> None:
    guard = engine(
        {"p": {"output": [{"type": "system_prompt_leak", "action": "block"}]}}
    )
    result, _ = run_input(guard, chat(("system", "Be kind."), ("user", "hi")))
    assert result.canary is not None and result.canary.startswith("kw-")
    assert result.canary not in json.dumps(result.body)
    upstream = with_canary(result.body, result.canary)
    assert result.canary in upstream["messages"][0]["content"]
    assert upstream["messages"][0]["content"].startswith("Be kind.")
