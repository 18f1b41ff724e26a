"""Feedback scores through a real gateway, read back by ``traces show`` and ``usage``.

Requests go through keelway to the fake OpenAI upstream with a virtual key,
then POST /v1/feedback scores their traces. The expected counts and means
below are worked out by hand from the scores the module fixture sends.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from keelway.store.models import TraceScore
from tests.cli_in_process import run_cli
from tests.conftest import openai_models
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer

MODELS = ["gpt-4o", "o4-mini", "unpriced-model"]
UNICODE_COMMENT = "très bien — 👍 Ünïcödé, 日本語も大丈夫"
# A comment of several lines, longer than the 200 characters that
# ``traces show`` prints.
LONG_COMMENT = "first line\nsecond line\t" + "é" * 300
# Existing ``usage --json`` fields, which the feedback columns must not change.
USAGE_FIELDS = {
    "model",
    "requests",
    "errors",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced",
}


@dataclass(frozen=True)
class Scored:
    """Trace ids by role in the module's scenario, and the rejected response."""

    liked: str  # gpt-4o: thumbs up, a 0.4 score with a comment, an eval score
    disliked: str  # gpt-4o: thumbs down
    unscored: str  # gpt-4o: no scores at all
    long_comment: str  # o4-mini: one 0.75 score with a long comment
    unrated: str  # o4-mini: no scores
    unpriced: str  # unpriced-model: no scores
    other_key_response: httpx.Response


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, fake_openai: FakeOpenAI
) -> Iterator[KeelwayServer]:
    server = KeelwayServer(
        tmp_path_factory.mktemp("feedback"),
        database_url,
        openai_models(fake_openai.base_url, MODELS),
        env={"FAKE_OPENAI_KEY": API_KEY},
    )
    server.start()
    yield server
    server.close()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _chat(server: KeelwayServer, model: str) -> str:
    """Send one chat request and return the id of its trace."""
    response = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers=_auth(server.key),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-keelway-trace-id"]


def _feedback(
    server: KeelwayServer, key: str, body: dict[str, Any], timeout: float = 10
) -> httpx.Response:
    """POST feedback, retrying while the trace is not written yet (404)."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.post(
            server.url + "/v1/feedback", json=body, headers=_auth(key), timeout=10
        )
        if response.status_code != 404 or time.monotonic() >= deadline:
            return response
        time.sleep(0.05)


def _send_feedback(server: KeelwayServer, body: dict[str, Any]) -> None:
    response = _feedback(server, server.key, body)
    assert response.status_code == 201, response.text


def _add_eval_score(server: KeelwayServer, trace_id: str) -> None:
    """Store a score as online evaluation writes one, straight to the store."""
    with server.database.session() as session, session.begin():
        session.add(
            TraceScore(
                id=uuid.uuid4().hex,
                trace_id=trace_id,
                name="faithfulness",
                value=0.9,
                source="online_eval",
                comment=None,
                author=None,
                created_at=datetime.now(UTC),
            )
        )


@pytest.fixture(scope="module")
def scored(server: KeelwayServer) -> Scored:
    liked, disliked, unscored = (_chat(server, "gpt-4o") for _ in range(3))
    long_comment, unrated = (_chat(server, "o4-mini") for _ in range(2))
    unpriced = _chat(server, "unpriced-model")

    _send_feedback(server, {"trace_id": liked, "thumbs": "up"})
    _send_feedback(
        server,
        {
            "trace_id": liked,
            "name": "helpfulness",
            "score": 0.4,
            "comment": UNICODE_COMMENT,
        },
    )
    _add_eval_score(server, liked)
    _send_feedback(server, {"trace_id": disliked, "thumbs": "down"})
    _send_feedback(
        server,
        {"trace_id": long_comment, "score": 0.75, "comment": LONG_COMMENT},
    )

    # The trace is written by now (its own key's feedback was accepted), so
    # a 404 here comes from the key check and not from the trace writer.
    _, other_key = server.keys.create(f"other-{uuid.uuid4().hex[:8]}", team="tests")
    rejected = httpx.post(
        server.url + "/v1/feedback",
        json={"trace_id": disliked, "thumbs": "up", "comment": "not my trace"},
        headers=_auth(other_key),
        timeout=10,
    )
    return Scored(liked, disliked, unscored, long_comment, unrated, unpriced, rejected)


class Reader:
    """Runner of read-only ``keelway`` commands that keeps each one's output.

    The tests only read, so they share one run of each command.
    """

    def __init__(self, server: KeelwayServer) -> None:
        self.server = server
        self.outputs: dict[tuple[str, ...], str] = {}

    def run(self, *args: str) -> str:
        if args not in self.outputs:
            self.outputs[args] = run_cli(
                [*args, "--config", str(self.server.config_path)], self.server.env
            ).stdout
        return self.outputs[args]

    def show(self, trace_id: str) -> str:
        return self.run("traces", "show", trace_id)

    def show_json(self, trace_id: str) -> dict[str, Any]:
        trace: dict[str, Any] = json.loads(
            self.run("traces", "show", trace_id, "--json")
        )
        return trace


@pytest.fixture(scope="module")
def cli(server: KeelwayServer, scored: Scored) -> Reader:
    """A reader of the store once the module's scores are all sent."""
    return Reader(server)


def _score_lines(output: str) -> list[str]:
    """Return the indented lines of the ``scores:`` section of ``traces show``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("scores:"))
    section = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        section.append(line)
    return section


def _usage_json(cli: Reader) -> dict[str, dict[str, Any]]:
    output = cli.run("usage", "--by", "model", "--json")
    rows = [json.loads(line) for line in output.splitlines()]
    return {row["model"]: row for row in rows}


def _usage_text(cli: Reader) -> dict[str, list[str]]:
    output = cli.run("usage", "--by", "model")
    lines = output.splitlines()
    assert lines[0].split()[-3:] == ["FEEDBACK", "FB", "MEAN"]
    return {line.split()[0]: line.split() for line in lines[1:]}


def test_show_lists_scores(cli: Reader, scored: Scored) -> None:
    key_name = cli.show_json(scored.liked)["key_name"]
    output = cli.show(scored.liked)
    lines = _score_lines(output)
    assert len(lines) == 3, output
    assert lines[0].split()[:5] == ["user_feedback", "1.00", "feedback", "by", key_name]
    assert lines[1].split()[:5] == ["helpfulness", "0.40", "feedback", "by", key_name]
    assert lines[1].endswith(f'"{UNICODE_COMMENT}"')
    assert lines[2].split()[:5] == ["faithfulness", "0.90", "online_eval", "by", "-"]
    assert output.index("spans:") < output.index("scores:")


def test_show_json_lists_scores(cli: Reader, scored: Scored) -> None:
    trace = cli.show_json(scored.liked)
    scores = trace["scores"]
    assert [s["name"] for s in scores] == [
        "user_feedback",
        "helpfulness",
        "faithfulness",
    ]
    assert [s["value"] for s in scores] == [1.0, 0.4, 0.9]
    assert [s["source"] for s in scores] == ["feedback", "feedback", "online_eval"]
    assert [s["author"] for s in scores] == [trace["key_name"], trace["key_name"], None]
    assert [s["comment"] for s in scores] == [None, UNICODE_COMMENT, None]
    assert {s["trace_id"] for s in scores} == {scored.liked}
    times = [datetime.fromisoformat(s["created_at"]) for s in scores]
    assert times == sorted(times)


def test_show_without_scores(cli: Reader, scored: Scored) -> None:
    output = cli.show(scored.unscored)
    assert "scores:    none" in output.splitlines()
    assert _score_lines(output) == []
    assert cli.show_json(scored.unscored)["scores"] == []


def test_long_comment_on_one_line(cli: Reader, scored: Scored) -> None:
    output = cli.show(scored.long_comment)
    lines = _score_lines(output)
    assert len(lines) == 1, output
    comment = lines[0].split("  ")[-1]
    assert comment.startswith('"first line second line éé')
    assert comment.endswith('…"')
    assert len(comment) == 200 + 2
    assert cli.show_json(scored.long_comment)["scores"][0]["comment"] == (LONG_COMMENT)


def test_other_key_feedback_rejected(cli: Reader, scored: Scored) -> None:
    response = scored.other_key_response
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "trace_not_found"
    scores = cli.show_json(scored.disliked)["scores"]
    assert [(s["name"], s["value"]) for s in scores] == [("user_feedback", 0.0)]
    assert "not my trace" not in cli.show(scored.disliked)


def test_usage_json_feedback(cli: Reader, scored: Scored) -> None:
    rows = _usage_json(cli)
    # gpt-4o has thumbs up 1, score 0.4 (same trace) and thumbs down 0. The
    # online_eval score and the unscored trace do not count.
    assert rows["gpt-4o"]["feedback_count"] == 3
    assert rows["gpt-4o"]["feedback_mean"] == pytest.approx(1.4 / 3)
    assert rows["o4-mini"]["feedback_count"] == 1
    assert rows["o4-mini"]["feedback_mean"] == pytest.approx(0.75)
    assert rows["unpriced-model"]["feedback_count"] == 0
    assert rows["unpriced-model"]["feedback_mean"] is None


def test_usage_json_fields_unchanged(cli: Reader, scored: Scored) -> None:
    rows = _usage_json(cli)
    for row in rows.values():
        assert set(row) == USAGE_FIELDS | {"feedback_count", "feedback_mean"}
    # The join with several scores on one trace must not repeat its tokens.
    liked = cli.show_json(scored.liked)
    assert rows["gpt-4o"]["requests"] == 3
    assert rows["gpt-4o"]["input_tokens"] == 3 * liked["input_tokens"]
    assert rows["gpt-4o"]["cost_usd"] == pytest.approx(3 * liked["cost_usd"])
    assert rows["o4-mini"]["requests"] == 2
    assert rows["unpriced-model"]["requests"] == 1


def test_usage_text_feedback(cli: Reader, scored: Scored) -> None:
    rows = _usage_text(cli)
    assert rows["gpt-4o"][1] == "3"
    assert rows["gpt-4o"][-2:] == ["3", "0.47"]
    assert rows["o4-mini"][1] == "2"
    assert rows["o4-mini"][-2:] == ["1", "0.75"]
    assert rows["unpriced-model"][1] == "1"
    assert rows["unpriced-model"][-2:] == ["-", "-"]
