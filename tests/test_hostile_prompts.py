"""Hostile input against the prompt registry, its admin API and the prompt step.

The tests above ``HANDLED`` each cover an input that once gave a 500, a wrong
response or lost data. ``HANDLED`` lists bad inputs that already got the right
OpenAI-style error, so that they keep getting it. The last tests check that
no attack changed the stored registry and that no key reached a log line, an
error message or the audit log.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select, update

from keelway.prompts import content as content_module
from keelway.prompts.content import PromptContent
from keelway.prompts.errors import TemplateError
from keelway.prompts.render import Renderer
from keelway.store.models import (
    Experiment,
    Prompt,
    PromptVersion,
    ShadowSample,
    Trace,
    User,
)
from tests.conftest import openai_models
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer

MASTER = "kw-master-hostile-prompts-key"
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
FEEDBACK = "/v1/feedback"
ERROR_KEYS = {"message", "type", "param", "code"}
# Names of experiments that every attack below fails to create.
REJECTED_EXPERIMENTS = {
    "min-samples",
    "bad-variant",
    "bad-version",
    "handled",
    "nul-description",
}
# 21 nested for loops parse but exceed Python's 20 statically nested blocks.
NESTED_LOOPS = "{% for a in [1] %}" * 21 + "x" + "{% endfor %}" * 21


def _content(system: str, model: str = "echo") -> dict[str, Any]:
    return {
        "variables": {"q": {"type": "string"}},
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "Q: {{ q }}"},
        ],
        "model": {"group": model, "max_tokens": 64},
    }


ALPHA = _content("Alpha answers from the passage.")
BETA = _content("Beta replies with a short summary of everything.")
GAMMA = _content("Gamma writes in a formal register for lawyers.")


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(record=False) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    upstream: FakeOpenAI,
) -> Iterator[KeelwayServer]:
    gateway = KeelwayServer(
        tmp_path_factory.mktemp("hostile-prompts"),
        database_url,
        openai_models(upstream.base_url, ["echo"]),
        env={"FAKE_OPENAI_KEY": API_KEY, "KEELWAY_MASTER_KEY": MASTER},
    )
    gateway.start()
    yield gateway
    gateway.close()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _admin(
    server: KeelwayServer, method: str, path: str, key: str = MASTER, **kwargs: Any
) -> httpx.Response:
    return httpx.request(
        method,
        server.url + "/api/v1" + path,
        headers=_auth(key),
        timeout=30,
        **kwargs,
    )


def _ok(response: httpx.Response) -> Any:
    assert response.is_success, response.text
    return response.json()


def _ask(
    server: KeelwayServer, body: dict[str, Any], path: str = CHAT, key: str = ""
) -> httpx.Response:
    headers = _auth(key or server.key)
    if path == MESSAGES:
        headers["anthropic-version"] = "2023-06-01"
    return httpx.post(server.url + path, json=body, headers=headers, timeout=30)


def _publish(
    server: KeelwayServer,
    keys: dict[str, str],
    name: str,
    content: dict[str, Any],
    verdict: str | None = "approve",
    team: str | None = None,
) -> str:
    """Create or propose a version as erin and return it.

    With a verdict (``approve`` or ``reject``), ana reviews the version.
    """
    body: dict[str, Any] = {"name": name, "content": content}
    if team is not None:
        body["team"] = team
    created = _admin(server, "POST", "/prompts", keys["erin"], json=body)
    if created.status_code == 409:
        created = _admin(
            server,
            "POST",
            f"/prompts/{name}/versions",
            keys["erin"],
            json={"content": content},
        )
    version: str = _ok(created)["version"]
    if verdict is None:
        return version
    _ok(
        _admin(
            server,
            "POST",
            f"/prompts/{name}/versions/{version}/{verdict}",
            keys["ana"],
        )
    )
    return version


def _label(
    server: KeelwayServer, keys: dict[str, str], name: str, label: str, version: str
) -> None:
    _ok(
        _admin(
            server,
            "PUT",
            f"/prompts/{name}/labels/{label}",
            keys["erin"],
            json={"version": version},
        )
    )


def _wait_for_trace(server: KeelwayServer, trace_id: str) -> Trace:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with server.database.session() as session:
            trace = session.get(Trace, trace_id)
            if trace is not None:
                return trace
        time.sleep(0.05)
    raise AssertionError(f"trace {trace_id} was not written")


def _snapshot(server: KeelwayServer, name: str) -> dict[str, Any]:
    summary = _ok(_admin(server, "GET", f"/prompts/{name}"))
    history = _ok(_admin(server, "GET", f"/prompts/{name}/history"))["data"]
    versions = [
        (v["version"], v["status"], v["content_hash"]) for v in summary["versions"]
    ]
    return {"labels": summary["labels"], "versions": versions, "history": history}


@pytest.fixture(scope="module")
def keys(server: KeelwayServer) -> dict[str, str]:
    """Create the users and the registry the attacks run against."""
    created = {}
    for name, role in (
        ("erin", "prompt_engineer"),
        ("ana", "approver"),
        ("vic", "viewer"),
    ):
        user = _admin(
            server, "POST", "/users", json={"name": name, "roles": [{"role": role}]}
        )
        created[name] = _ok(user)["key"]
    _, created["other"] = server.keys.create("hostile-other", team="tests")
    created["virtual"] = server.key

    assert _publish(server, created, "base", ALPHA) == "1.0.0"
    assert _publish(server, created, "base", BETA) == "1.1.0"
    assert _publish(server, created, "base", GAMMA, "reject") == "1.2.0"
    _label(server, created, "base", "production", "1.0.0")
    _label(server, created, "base", "stable", "1.0.0")
    _publish(server, created, "payments-only", ALPHA, team="payments")
    return created


@pytest.fixture(scope="module")
def baseline(server: KeelwayServer, keys: dict[str, str]) -> dict[str, Any]:
    """The stored state of prompt ``base`` before any attack."""
    return _snapshot(server, "base")


@pytest.fixture(scope="module")
def trace_id(server: KeelwayServer, keys: dict[str, str]) -> str:
    """A written trace of the server's virtual key, for feedback."""
    response = _ask(server, {"prompt": "base", "variables": {"q": "why?"}})
    assert response.status_code == 200, response.text
    trace = response.headers["x-keelway-trace-id"]
    _wait_for_trace(server, trace)
    return trace


def _error(response: httpx.Response) -> dict[str, Any]:
    """Return the OpenAI-style error object of a 4xx response."""
    assert 400 <= response.status_code < 500, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == ERROR_KEYS
    return error


# Findings: each input below once gave a 500, a wrong response or lost data.


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/users", {"name": "nul\x00user"}, "name"),
        (
            "/users",
            {"name": "nul-team", "roles": [{"role": "viewer", "team": "t\x00"}]},
            "roles[0].team",
        ),
        ("/prompts", {"name": "nul-team", "team": "t\x00", "content": ALPHA}, "team"),
        (
            "/prompts",
            {"name": "nul-msg", "message": "m\x00", "content": ALPHA},
            "message",
        ),
        (
            "/prompts/base/versions/1.2.0/approve",
            {"comment": "looks \x00 right"},
            "comment",
        ),
        (
            "/experiments",
            {"name": "nul\x00exp", "prompt": "base", "kind": "shadow"},
            "name",
        ),
        (
            "/experiments",
            {
                "name": "nul-description",
                "prompt": "base",
                "kind": "shadow",
                "shadow_version": "1.1.0",
                "description": "d\x00",
            },
            "description",
        ),
    ],
)
def test_admin_nul_text_rejected(
    server: KeelwayServer,
    keys: dict[str, str],
    path: str,
    body: dict[str, Any],
    param: str,
) -> None:
    # PostgreSQL text columns cannot hold NUL, which gave a 500 there.
    response = _admin(server, "POST", path, json=body)
    assert response.status_code == 422, response.text
    assert _error(response)["param"] == param


@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("GET", "/prompts/%00", "name"),
        ("GET", "/prompts/%00/history", "name"),
        ("DELETE", "/prompts/base/labels/a%00", "label"),
        ("GET", "/experiments/%00", "name"),
        ("POST", "/experiments/%00/stop", "name"),
        ("GET", "/experiments/%00/report", "name"),
        ("POST", "/users/%00/roles", "name"),
        ("DELETE", "/users/vic/roles?role=viewer&team=%00", "team"),
        ("GET", "/audit?actor=%00", "actor"),
    ],
)
def test_admin_nul_parameter_rejected(
    server: KeelwayServer, keys: dict[str, str], method: str, path: str, param: str
) -> None:
    body = {"role": "viewer"} if path.endswith("/roles") else None
    response = _admin(server, method, path, json=body)
    assert response.status_code == 422, response.text
    assert _error(response)["param"] == param


@pytest.mark.parametrize("team", ["t" * 201, "é" * 300, "   "])
def test_prompt_team_invalid(
    server: KeelwayServer, keys: dict[str, str], team: str
) -> None:
    # Over 200 characters overflowed the team column on PostgreSQL.
    response = _admin(
        server,
        "POST",
        "/prompts",
        keys["erin"],
        json={"name": "long-team", "team": team, "content": ALPHA},
    )
    assert response.status_code == 422, response.text
    assert _error(response)["param"] == "team"
    assert _admin(server, "GET", "/prompts/long-team").status_code == 404


@pytest.mark.parametrize(("method", "suffix"), [("DELETE", ""), ("POST", "/rollback")])
def test_label_path_too_long(
    server: KeelwayServer, keys: dict[str, str], method: str, suffix: str
) -> None:
    # A denied attempt wrote the label into the 400-character audit target.
    path = "/prompts/base/labels/" + "a" * 500 + suffix
    response = _admin(server, method, path, keys["vic"])
    assert response.status_code == 422, response.text
    error = _error(response)
    assert error["param"] == "label"
    assert error["code"] == "invalid_value"


def _experiment(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "prompt": "base",
        "label": "stable",
        "variants": [
            {"name": "control", "version": "1.0.0", "weight": 50},
            {"name": "treatment", "version": "1.1.0", "weight": 50},
        ],
        **fields,
    }


@pytest.mark.parametrize("min_samples", [2**31, 10**15, 1.5, 0, True])
def test_min_samples_out_of_range(
    server: KeelwayServer, keys: dict[str, str], min_samples: Any
) -> None:
    # 10**15 overflowed the integer column (a 500) and 1.5 was cut to 1.
    body = _experiment("min-samples", min_samples=min_samples)
    response = _admin(server, "POST", "/experiments", keys["erin"], json=body)
    assert response.status_code == 422, response.text
    assert _error(response)["param"] == "min_samples"
    assert _admin(server, "GET", "/experiments/min-samples").status_code == 404


@pytest.mark.parametrize("variant", ["a\nb", "中文", "x" * 101, "", " control"])
def test_variant_name_unsafe(
    server: KeelwayServer, keys: dict[str, str], variant: str
) -> None:
    # These names broke the x-keelway-variant header (a 500 or a dropped
    # connection) or overflowed the traces' variant column.
    body = _experiment("bad-variant")
    body["variants"][0]["name"] = variant
    response = _admin(server, "POST", "/experiments", keys["erin"], json=body)
    assert response.status_code == 422, response.text
    assert _error(response)["param"] == "variants[0].name"
    assert _admin(server, "GET", "/experiments/bad-variant").status_code == 404


@pytest.mark.parametrize(
    ("field", "param"),
    [("variants", "variants[1].version"), ("shadow_version", "shadow_version")],
)
def test_experiment_version_invalid(
    server: KeelwayServer, keys: dict[str, str], field: str, param: str
) -> None:
    if field == "variants":
        body = _experiment("bad-version")
        body["variants"][1]["version"] = "1.0\x00"
    else:
        body = {
            "name": "bad-version",
            "prompt": "base",
            "kind": "shadow",
            "shadow_version": "1.0\x00",
        }
    response = _admin(server, "POST", "/experiments", keys["erin"], json=body)
    assert response.status_code == 422, response.text
    assert _error(response)["param"] == param


@pytest.mark.parametrize("name", ["a/b", "..", "has space", "é"])
def test_experiment_name_unsafe(
    server: KeelwayServer, keys: dict[str, str], name: str
) -> None:
    # A name with '/' was created but could not be shown or stopped by URL.
    body = _experiment(name)
    response = _admin(server, "POST", "/experiments", keys["erin"], json=body)
    assert response.status_code == 422, response.text
    assert _error(response)["param"] == "name"


@pytest.mark.parametrize(
    "template",
    [
        NESTED_LOOPS,
        "{% if 1 %}" * 110 + "x" + "{% endif %}" * 110,
        "{{ " + "(" * 90 + "1" + ")" * 90 + " }}",
        "{{ 1" + " + 1" * 500 + " }}",
        "{{ 'a'" + "|upper" * 2000 + " }}",
    ],
    ids=["loops", "ifs", "parentheses", "additions", "filters"],
)
def test_nested_template_rejected(
    server: KeelwayServer, keys: dict[str, str], template: str
) -> None:
    # Deep expressions raised RecursionError (a 500) on create. Deep blocks
    # were stored and then failed every render with a 500.
    content = {"messages": [{"role": "user", "content": template}]}
    response = _admin(
        server,
        "POST",
        "/prompts",
        keys["erin"],
        json={"name": "nested", "content": content},
    )
    assert response.status_code == 422, response.text
    error = _error(response)
    assert error["code"] == "invalid_prompt"
    assert error["param"] == "content.messages[0].content"


def test_render_compile_error_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    # Content stored before the compile check reaches the renderer as is.
    monkeypatch.setattr(content_module, "_check_compiles", lambda *args: None)
    content = PromptContent.from_dict(
        {"messages": [{"role": "user", "content": NESTED_LOOPS}]}
    )
    with pytest.raises(TemplateError, match="failed to compile"):
        Renderer().render(content, {})


def test_stored_invalid_version_clean(
    server: KeelwayServer, keys: dict[str, str]
) -> None:
    version = _publish(server, keys, "legacy", ALPHA)
    stored = {"messages": [{"role": "user", "content": NESTED_LOOPS}]}
    with server.database.session() as session, session.begin():
        prompt_id = session.scalar(select(Prompt.id).where(Prompt.name == "legacy"))
        session.execute(
            update(PromptVersion)
            .where(PromptVersion.prompt_id == prompt_id)
            .values(content=stored)
        )
    response = _ask(server, {"prompt": f"legacy@{version}"})
    assert response.status_code == 422, response.text
    error = _error(response)
    assert error["code"] == "template_error"
    assert error["param"] == "prompt"


@pytest.mark.parametrize("messages", ["hello", {"role": "user", "content": "x"}, 5])
def test_prompt_messages_wrong_type(
    server: KeelwayServer, keys: dict[str, str], messages: Any
) -> None:
    # With a prompt, a malformed conversation was dropped without an error.
    body = {"prompt": "base", "variables": {"q": "why?"}, "messages": messages}
    response = _ask(server, body)
    assert response.status_code == 422, response.text
    assert _error(response)["param"] == "messages"


def test_anthropic_system_blocks_kept(
    server: KeelwayServer, keys: dict[str, str]
) -> None:
    # The request's own system, sent as content blocks, was dropped.
    body = {
        "prompt": "base",
        "variables": {"q": "why?"},
        "max_tokens": 32,
        "system": [{"type": "text", "text": "CLIENT-SYSTEM"}],
    }
    response = _ask(server, body, MESSAGES)
    assert response.status_code == 200, response.text
    text = response.json()["content"][0]["text"]
    assert text.startswith("system: Alpha answers from the passage.")
    assert "CLIENT-SYSTEM" in text


def test_anthropic_system_wrong_type(
    server: KeelwayServer, keys: dict[str, str]
) -> None:
    body = {"prompt": "base", "variables": {"q": "why?"}, "max_tokens": 32}
    response = _ask(server, {**body, "system": 5}, MESSAGES)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


def _samples(server: KeelwayServer, experiment: str, count: int) -> list[ShadowSample]:
    deadline = time.monotonic() + 20
    samples: list[ShadowSample] = []
    while time.monotonic() < deadline:
        with server.database.session() as session:
            experiment_id = session.scalar(
                select(Experiment.id).where(Experiment.name == experiment)
            )
            samples = list(
                session.scalars(
                    select(ShadowSample).where(
                        ShadowSample.experiment_id == experiment_id
                    )
                )
            )
        if len(samples) >= count:
            return samples
        time.sleep(0.1)
    raise AssertionError(f"only {len(samples)} of {count} shadow samples stored")


def test_anthropic_shadow_keeps_system(
    server: KeelwayServer, keys: dict[str, str]
) -> None:
    # The shadow of a /v1/messages call went out in Anthropic's shape, and
    # the OpenAI upstream never saw the candidate's system prompt.
    live = _publish(server, keys, "shadowed", ALPHA)
    candidate = _publish(server, keys, "shadowed", BETA, verdict=None)
    _label(server, keys, "shadowed", "production", live)

    created = _admin(
        server,
        "POST",
        "/experiments",
        keys["erin"],
        json={
            "name": "shadow-messages",
            "prompt": "shadowed",
            "kind": "shadow",
            "shadow_version": candidate,
        },
    )
    assert created.status_code == 201, created.text

    body = {
        "prompt": "shadowed",
        "variables": {"q": "why?"},
        "max_tokens": 32,
        "system": "CLIENT-SYSTEM",
    }
    response = _ask(server, body, MESSAGES)
    assert response.status_code == 200, response.text
    sample = _samples(server, "shadow-messages", 1)[0]
    _ok(_admin(server, "POST", "/experiments/shadow-messages/stop", keys["erin"]))

    assert sample.shadow_status == "ok"
    assert (sample.shadow_output or "").startswith("system: Beta replies")
    assert "CLIENT-SYSTEM" in (sample.shadow_output or "")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"trace_id": "a\x00b", "score": 1}, "trace_id"),
        ({"trace_id": "TRACE", "score": 1, "name": "n\x00"}, "name"),
    ],
)
def test_feedback_nul_rejected(
    server: KeelwayServer,
    keys: dict[str, str],
    trace_id: str,
    body: dict[str, Any],
    param: str,
) -> None:
    if body["trace_id"] == "TRACE":
        body = {**body, "trace_id": trace_id}
    response = httpx.post(
        server.url + FEEDBACK, json=body, headers=_auth(server.key), timeout=30
    )
    assert response.status_code == 422, response.text
    assert _error(response)["param"] == param


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"reference": "1.0.0", "variables": []}, "invalid_field", "variables"),
        ({"reference": "1.0.0", "variables": 0}, "invalid_field", "variables"),
        ({"reference": "1.0.0", "variables": {}}, "invalid_variable", "variables.q"),
        (
            {"reference": "1.0.0", "variables": {"q": 5}},
            "invalid_variable",
            "variables.q",
        ),
    ],
)
def test_admin_render_variables(
    server: KeelwayServer,
    keys: dict[str, str],
    body: dict[str, Any],
    code: str,
    param: str,
) -> None:
    # Falsy variables of any type counted as none, and variable errors came
    # back as code invalid_prompt with no param.
    response = _admin(server, "POST", "/prompts/base/render", keys["vic"], json=body)
    assert response.status_code == 422, response.text
    error = _error(response)
    assert error["code"] == code
    assert error["param"] == param


def _invalid_content(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"name": "invalid-content", "content": {"messages": messages, **fields}}


@pytest.mark.parametrize(
    ("method", "path", "body", "code", "param"),
    [
        (
            "POST",
            "/prompts",
            _invalid_content([{"role": "user", "content": "{{ nope }}"}]),
            "invalid_prompt",
            "content.messages[0].content",
        ),
        (
            "POST",
            "/prompts",
            _invalid_content([{"role": "tool", "content": "x"}]),
            "invalid_prompt",
            "content.messages[0].role",
        ),
        (
            "POST",
            "/prompts",
            _invalid_content(
                [{"role": "user", "content": "x"}], model={"extra": {"stream": True}}
            ),
            "invalid_prompt",
            "content.model.extra.stream",
        ),
        (
            "GET",
            "/prompts/base/diff?from=1.0.0&to=@@",
            None,
            "invalid_prompt_reference",
            None,
        ),
        (
            "POST",
            "/prompts/base/render",
            {"reference": "PROD"},
            "invalid_prompt_reference",
            None,
        ),
    ],
    ids=["undeclared", "role", "extra-stream", "diff-selector", "render-reference"],
)
def test_admin_prompt_error_fields(
    server: KeelwayServer,
    keys: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    code: str,
    param: str | None,
) -> None:
    # Every prompt error came back as code invalid_prompt with no param.
    response = _admin(server, method, path, keys["erin"], json=body)
    assert response.status_code == 422, response.text
    error = _error(response)
    assert error["code"] == code
    assert error["param"] == param


# Bad input that is already handled: method, path, key, body, status, code, param.
# A body of bytes is sent raw, and "TRACE" in a body becomes a trace id.

VALID_EXPERIMENT = _experiment("handled")
HANDLED: list[tuple[str, str, str, str, Any, int, str, str | None]] = [
    # Admin API bodies
    ("body-empty", "POST", "/api/v1/prompts", "erin", b"", 400, "invalid_json", None),
    ("body-array", "POST", "/api/v1/prompts", "erin", b"[]", 400, "invalid_json", None),
    (
        "body-null",
        "POST",
        "/api/v1/users",
        "master",
        b"null",
        400,
        "invalid_json",
        None,
    ),
    (
        "body-truncated",
        "POST",
        "/api/v1/prompts",
        "erin",
        b"{",
        400,
        "invalid_json",
        None,
    ),
    (
        "body-bad-utf8",
        "POST",
        "/api/v1/prompts",
        "erin",
        b'{"name": "\xff"}',
        400,
        "invalid_utf8",
        None,
    ),
    (
        "body-too-deep",
        "POST",
        "/api/v1/prompts",
        "erin",
        b'{"a":' + b"[" * 300 + b"]" * 300 + b"}",
        400,
        "invalid_json",
        None,
    ),
    # Prompts
    (
        "prompt-name-int",
        "POST",
        "/api/v1/prompts",
        "erin",
        {"name": 5, "content": ALPHA},
        422,
        "invalid_field",
        "name",
    ),
    (
        "prompt-name-missing",
        "POST",
        "/api/v1/prompts",
        "erin",
        {"content": ALPHA},
        422,
        "invalid_field",
        "name",
    ),
    (
        "prompt-name-long",
        "POST",
        "/api/v1/prompts",
        "erin",
        {"name": "p" * 129, "content": ALPHA},
        422,
        "invalid_value",
        None,
    ),
    (
        "prompt-name-dots",
        "POST",
        "/api/v1/prompts",
        "erin",
        {"name": "../etc", "content": ALPHA},
        422,
        "invalid_value",
        None,
    ),
    (
        "prompt-name-unicode",
        "POST",
        "/api/v1/prompts",
        "erin",
        {"name": "prömpt", "content": ALPHA},
        422,
        "invalid_value",
        None,
    ),
    (
        "prompt-content-list",
        "POST",
        "/api/v1/prompts",
        "erin",
        {"name": "x1", "content": []},
        422,
        "invalid_field",
        "content",
    ),
    (
        "prompt-content-null",
        "POST",
        "/api/v1/prompts",
        "erin",
        {"name": "x1", "content": None},
        422,
        "invalid_field",
        "content",
    ),
    (
        "prompt-team-int",
        "POST",
        "/api/v1/prompts",
        "erin",
        {"name": "x1", "team": 5, "content": ALPHA},
        422,
        "invalid_field",
        "team",
    ),
    (
        "prompt-taken",
        "POST",
        "/api/v1/prompts",
        "erin",
        {"name": "base", "content": ALPHA},
        409,
        "conflict",
        None,
    ),
    (
        "prompt-create-viewer",
        "POST",
        "/api/v1/prompts",
        "vic",
        {"name": "x1", "content": ALPHA},
        403,
        "forbidden",
        None,
    ),
    (
        "propose-bump-unknown",
        "POST",
        "/api/v1/prompts/base/versions",
        "erin",
        {"content": _content("Delta is new wording here"), "bump": "huge"},
        422,
        "invalid_value",
        None,
    ),
    (
        "propose-bump-lower",
        "POST",
        "/api/v1/prompts/base/versions",
        "erin",
        {"content": _content("Delta is new wording here"), "bump": "patch"},
        422,
        "invalid_value",
        None,
    ),
    (
        "propose-message-int",
        "POST",
        "/api/v1/prompts/base/versions",
        "erin",
        {"content": ALPHA, "message": 5},
        422,
        "invalid_field",
        "message",
    ),
    (
        "propose-unknown",
        "POST",
        "/api/v1/prompts/nope/versions",
        "erin",
        {"content": ALPHA},
        404,
        "not_found",
        None,
    ),
    # Versions, reviews and labels
    (
        "version-leading-zero",
        "GET",
        "/api/v1/prompts/base/versions/01.0.0",
        "vic",
        None,
        422,
        "invalid_value",
        None,
    ),
    (
        "version-four-parts",
        "GET",
        "/api/v1/prompts/base/versions/1.0.0.0",
        "vic",
        None,
        422,
        "invalid_value",
        None,
    ),
    (
        "version-negative",
        "GET",
        "/api/v1/prompts/base/versions/-1.0.0",
        "vic",
        None,
        422,
        "invalid_value",
        None,
    ),
    (
        "version-bare-v",
        "GET",
        "/api/v1/prompts/base/versions/v",
        "vic",
        None,
        422,
        "invalid_value",
        None,
    ),
    (
        "version-unknown",
        "GET",
        "/api/v1/prompts/base/versions/9.9.9",
        "vic",
        None,
        404,
        "not_found",
        None,
    ),
    (
        "approve-twice",
        "POST",
        "/api/v1/prompts/base/versions/1.0.0/approve",
        "ana",
        None,
        409,
        "conflict",
        None,
    ),
    (
        "reject-approved",
        "POST",
        "/api/v1/prompts/base/versions/1.0.0/reject",
        "ana",
        None,
        409,
        "conflict",
        None,
    ),
    (
        "approve-rejected",
        "POST",
        "/api/v1/prompts/base/versions/1.2.0/approve",
        "ana",
        None,
        409,
        "conflict",
        None,
    ),
    (
        "approve-engineer",
        "POST",
        "/api/v1/prompts/base/versions/1.2.0/approve",
        "erin",
        None,
        403,
        "forbidden",
        None,
    ),
    (
        "approve-comment-int",
        "POST",
        "/api/v1/prompts/base/versions/1.2.0/approve",
        "ana",
        {"comment": 5},
        422,
        "invalid_field",
        "comment",
    ),
    (
        "label-uppercase",
        "PUT",
        "/api/v1/prompts/base/labels/PRODUCTION",
        "erin",
        {"version": "1.0.0"},
        422,
        "invalid_value",
        None,
    ),
    (
        "label-trailing-space",
        "PUT",
        "/api/v1/prompts/base/labels/production%20",
        "erin",
        {"version": "1.0.0"},
        422,
        "invalid_value",
        None,
    ),
    (
        "label-latest",
        "PUT",
        "/api/v1/prompts/base/labels/latest",
        "erin",
        {"version": "1.0.0"},
        422,
        "invalid_value",
        None,
    ),
    (
        "label-version-like",
        "PUT",
        "/api/v1/prompts/base/labels/v2",
        "erin",
        {"version": "1.0.0"},
        422,
        "invalid_value",
        None,
    ),
    (
        "label-version-int",
        "PUT",
        "/api/v1/prompts/base/labels/canary",
        "erin",
        {"version": 1},
        422,
        "invalid_field",
        "version",
    ),
    (
        "label-version-missing",
        "PUT",
        "/api/v1/prompts/base/labels/canary",
        "erin",
        {},
        422,
        "invalid_field",
        "version",
    ),
    (
        "label-rejected-protected",
        "PUT",
        "/api/v1/prompts/base/labels/production",
        "erin",
        {"version": "1.2.0"},
        403,
        "forbidden",
        None,
    ),
    (
        "label-rejected",
        "PUT",
        "/api/v1/prompts/base/labels/canary",
        "erin",
        {"version": "1.2.0"},
        403,
        "forbidden",
        None,
    ),
    (
        "label-viewer",
        "PUT",
        "/api/v1/prompts/base/labels/canary",
        "vic",
        {"version": "1.0.0"},
        403,
        "forbidden",
        None,
    ),
    (
        "unlabel-missing",
        "DELETE",
        "/api/v1/prompts/base/labels/canary",
        "erin",
        None,
        404,
        "not_found",
        None,
    ),
    (
        "rollback-no-history",
        "POST",
        "/api/v1/prompts/base/labels/stable/rollback",
        "erin",
        None,
        409,
        "conflict",
        None,
    ),
    (
        "rollback-missing-label",
        "POST",
        "/api/v1/prompts/base/labels/canary/rollback",
        "erin",
        None,
        404,
        "not_found",
        None,
    ),
    (
        "diff-missing-to",
        "GET",
        "/api/v1/prompts/base/diff?from=1.0.0",
        "vic",
        None,
        422,
        "invalid_field",
        "to",
    ),
    (
        "render-reference-int",
        "POST",
        "/api/v1/prompts/base/render",
        "vic",
        {"reference": 1},
        422,
        "invalid_field",
        "reference",
    ),
    (
        "other-team-read",
        "GET",
        "/api/v1/prompts/payments-only",
        "outsider",
        None,
        403,
        "forbidden",
        None,
    ),
    # Users and the audit log
    (
        "user-role-unknown",
        "POST",
        "/api/v1/users",
        "master",
        {"name": "u1", "roles": [{"role": "god"}]},
        422,
        "invalid_value",
        None,
    ),
    (
        "user-roles-string",
        "POST",
        "/api/v1/users",
        "master",
        {"name": "u1", "roles": "admin"},
        422,
        "invalid_field",
        "roles",
    ),
    (
        "user-role-int",
        "POST",
        "/api/v1/users",
        "master",
        {"name": "u1", "roles": [{"role": 1}]},
        422,
        "invalid_field",
        "roles[0]",
    ),
    (
        "user-name-reserved",
        "POST",
        "/api/v1/users",
        "master",
        {"name": "master"},
        422,
        "invalid_value",
        None,
    ),
    (
        "user-name-long",
        "POST",
        "/api/v1/users",
        "master",
        {"name": "u" * 201},
        422,
        "invalid_value",
        None,
    ),
    (
        "user-name-blank",
        "POST",
        "/api/v1/users",
        "master",
        {"name": "  "},
        422,
        "invalid_value",
        None,
    ),
    (
        "user-taken",
        "POST",
        "/api/v1/users",
        "master",
        {"name": "vic"},
        409,
        "conflict",
        None,
    ),
    (
        "user-create-viewer",
        "POST",
        "/api/v1/users",
        "vic",
        {"name": "u1"},
        403,
        "forbidden",
        None,
    ),
    (
        "grant-unknown-user",
        "POST",
        "/api/v1/users/nobody/roles",
        "master",
        {"role": "viewer"},
        404,
        "not_found",
        None,
    ),
    (
        "revoke-not-held",
        "DELETE",
        "/api/v1/users/vic/roles?role=admin",
        "master",
        None,
        404,
        "not_found",
        None,
    ),
    (
        "revoke-no-role",
        "DELETE",
        "/api/v1/users/vic/roles",
        "master",
        None,
        422,
        "invalid_field",
        "role",
    ),
    (
        "audit-limit-zero",
        "GET",
        "/api/v1/audit?limit=0",
        "master",
        None,
        422,
        "invalid_field",
        "limit",
    ),
    (
        "audit-limit-text",
        "GET",
        "/api/v1/audit?limit=ten",
        "master",
        None,
        422,
        "invalid_field",
        "limit",
    ),
    ("audit-viewer", "GET", "/api/v1/audit", "vic", None, 403, "forbidden", None),
    # Experiments
    (
        "exp-weights-sum",
        "POST",
        "/api/v1/experiments",
        "erin",
        {
            **VALID_EXPERIMENT,
            "variants": [
                {"name": "a", "version": "1.0.0", "weight": 50},
                {"name": "b", "version": "1.1.0", "weight": 40},
            ],
        },
        422,
        "invalid_value",
        None,
    ),
    (
        "exp-variant-twice",
        "POST",
        "/api/v1/experiments",
        "erin",
        {
            **VALID_EXPERIMENT,
            "variants": [
                {"name": "a", "version": "1.0.0", "weight": 50},
                {"name": "a", "version": "1.1.0", "weight": 50},
            ],
        },
        422,
        "invalid_value",
        None,
    ),
    (
        "exp-one-variant",
        "POST",
        "/api/v1/experiments",
        "erin",
        {
            **VALID_EXPERIMENT,
            "variants": [{"name": "a", "version": "1.0.0", "weight": 100}],
        },
        422,
        "invalid_value",
        None,
    ),
    (
        "exp-weight-string",
        "POST",
        "/api/v1/experiments",
        "erin",
        {
            **VALID_EXPERIMENT,
            "variants": [{"name": "a", "version": "1.0.0", "weight": "50"}],
        },
        422,
        "invalid_field",
        "variants[0]",
    ),
    (
        "exp-variants-missing",
        "POST",
        "/api/v1/experiments",
        "erin",
        {"name": "handled", "prompt": "base", "label": "stable"},
        422,
        "invalid_field",
        "variants",
    ),
    (
        "exp-alpha-zero",
        "POST",
        "/api/v1/experiments",
        "erin",
        {**VALID_EXPERIMENT, "alpha": 0},
        422,
        "invalid_value",
        None,
    ),
    (
        "exp-alpha-one",
        "POST",
        "/api/v1/experiments",
        "erin",
        {**VALID_EXPERIMENT, "alpha": 1},
        422,
        "invalid_value",
        None,
    ),
    (
        "exp-alpha-text",
        "POST",
        "/api/v1/experiments",
        "erin",
        {**VALID_EXPERIMENT, "alpha": "x"},
        422,
        "invalid_field",
        "alpha",
    ),
    (
        "exp-sticky-unknown",
        "POST",
        "/api/v1/experiments",
        "erin",
        {**VALID_EXPERIMENT, "sticky": "ip"},
        422,
        "invalid_value",
        None,
    ),
    (
        "exp-kind-unknown",
        "POST",
        "/api/v1/experiments",
        "erin",
        {**VALID_EXPERIMENT, "kind": "bandit"},
        422,
        "invalid_field",
        "kind",
    ),
    (
        "exp-sample-rate-zero",
        "POST",
        "/api/v1/experiments",
        "erin",
        {
            "name": "handled",
            "prompt": "base",
            "kind": "shadow",
            "shadow_version": "1.1.0",
            "sample_rate": 0,
        },
        422,
        "invalid_value",
        None,
    ),
    (
        "exp-sample-rate-two",
        "POST",
        "/api/v1/experiments",
        "erin",
        {
            "name": "handled",
            "prompt": "base",
            "kind": "shadow",
            "shadow_version": "1.1.0",
            "sample_rate": 2,
        },
        422,
        "invalid_value",
        None,
    ),
    (
        "exp-rejected-version",
        "POST",
        "/api/v1/experiments",
        "erin",
        {
            **VALID_EXPERIMENT,
            "variants": [
                {"name": "a", "version": "1.0.0", "weight": 50},
                {"name": "b", "version": "1.2.0", "weight": 50},
            ],
        },
        409,
        "conflict",
        None,
    ),
    (
        "exp-unknown-label",
        "POST",
        "/api/v1/experiments",
        "erin",
        {**VALID_EXPERIMENT, "label": "canary"},
        404,
        "not_found",
        None,
    ),
    (
        "exp-viewer",
        "POST",
        "/api/v1/experiments",
        "vic",
        VALID_EXPERIMENT,
        403,
        "forbidden",
        None,
    ),
    (
        "exp-stop-unknown",
        "POST",
        "/api/v1/experiments/nope/stop",
        "erin",
        None,
        404,
        "not_found",
        None,
    ),
    (
        "exp-report-unknown",
        "GET",
        "/api/v1/experiments/nope/report",
        "vic",
        None,
        404,
        "not_found",
        None,
    ),
    # Keys on the wrong API
    (
        "admin-virtual-key",
        "GET",
        "/api/v1/prompts",
        "virtual",
        None,
        401,
        "invalid_user_key",
        None,
    ),
    (
        "admin-unknown-key",
        "GET",
        "/api/v1/prompts",
        "kwu-unknown",
        None,
        401,
        "invalid_user_key",
        None,
    ),
    ("admin-no-key", "GET", "/api/v1/prompts", "", None, 401, "missing_user_key", None),
    (
        "chat-user-key",
        "POST",
        CHAT,
        "erin",
        {"prompt": "base", "variables": {"q": "x"}},
        401,
        "invalid_api_key",
        None,
    ),
    (
        "feedback-user-key",
        "POST",
        FEEDBACK,
        "erin",
        {"trace_id": "TRACE", "score": 1},
        401,
        "invalid_api_key",
        None,
    ),
    # The gateway's prompt step
    ("ref-int", "POST", CHAT, "virtual", {"prompt": 5}, 422, "invalid_field", "prompt"),
    (
        "ref-list",
        "POST",
        CHAT,
        "virtual",
        {"prompt": ["base"]},
        422,
        "invalid_field",
        "prompt",
    ),
    (
        "ref-empty",
        "POST",
        CHAT,
        "virtual",
        {"prompt": ""},
        422,
        "invalid_prompt_reference",
        "prompt",
    ),
    (
        "ref-two-at",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base@@x"},
        422,
        "invalid_prompt_reference",
        "prompt",
    ),
    (
        "ref-uppercase-label",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base@PRODUCTION"},
        422,
        "invalid_prompt_reference",
        "prompt",
    ),
    (
        "ref-leading-zero",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base@01.0.0"},
        422,
        "invalid_prompt_reference",
        "prompt",
    ),
    (
        "ref-four-parts",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base@1.0.0.0"},
        422,
        "invalid_prompt_reference",
        "prompt",
    ),
    (
        "ref-negative",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base@-1.0.0"},
        422,
        "invalid_prompt_reference",
        "prompt",
    ),
    (
        "ref-unicode",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "bäse@production"},
        422,
        "invalid_prompt_reference",
        "prompt",
    ),
    (
        "ref-nul",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base\x00@production"},
        422,
        "invalid_prompt_reference",
        "prompt",
    ),
    (
        "ref-long",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "p" * 5000},
        422,
        "invalid_prompt_reference",
        "prompt",
    ),
    (
        "ref-bare-v",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base@v", "variables": {"q": "x"}},
        404,
        "prompt_not_found",
        "prompt",
    ),
    (
        "ref-unknown-label",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base@canary", "variables": {"q": "x"}},
        404,
        "prompt_not_found",
        "prompt",
    ),
    (
        "ref-unknown-prompt",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "nope", "variables": {"q": "x"}},
        404,
        "prompt_not_found",
        "prompt",
    ),
    (
        "ref-unknown-version",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base@7", "variables": {"q": "x"}},
        404,
        "prompt_not_found",
        "prompt",
    ),
    (
        "ref-other-team",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "payments-only@1.0.0", "variables": {"q": "x"}},
        403,
        "prompt_not_allowed",
        "prompt",
    ),
    (
        "vars-list",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base", "variables": [1]},
        422,
        "invalid_field",
        "variables",
    ),
    (
        "vars-string",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base", "variables": "q=x"},
        422,
        "invalid_field",
        "variables",
    ),
    (
        "vars-object-for-string",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base", "variables": {"q": {"a": 1}}},
        422,
        "invalid_variable",
        "variables.q",
    ),
    (
        "vars-bool-for-string",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base", "variables": {"q": True}},
        422,
        "invalid_variable",
        "variables.q",
    ),
    (
        "vars-null",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base", "variables": {"q": None}},
        422,
        "invalid_variable",
        "variables.q",
    ),
    (
        "vars-missing",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base", "variables": {}},
        422,
        "invalid_variable",
        "variables.q",
    ),
    (
        "vars-extra",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base", "variables": {"q": "x", "k" * 1000: 1}},
        422,
        "invalid_variable",
        "variables." + "k" * 1000,
    ),
    (
        "vars-without-prompt",
        "POST",
        CHAT,
        "virtual",
        {
            "model": "echo",
            "messages": [{"role": "user", "content": "x"}],
            "variables": {"q": "x"},
        },
        422,
        "invalid_field",
        "variables",
    ),
    (
        "vars-render-too-large",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base", "variables": {"q": "x" * 1_100_000}},
        422,
        "template_error",
        "prompt",
    ),
    (
        "messages-bad-item",
        "POST",
        CHAT,
        "virtual",
        {"prompt": "base", "variables": {"q": "x"}, "messages": [1]},
        422,
        "invalid_field",
        "messages[2]",
    ),
    # Feedback
    (
        "feedback-score-high",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "TRACE", "score": 1.5},
        422,
        "invalid_field",
        "score",
    ),
    (
        "feedback-score-negative",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "TRACE", "score": -0.1},
        422,
        "invalid_field",
        "score",
    ),
    (
        "feedback-score-bool",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "TRACE", "score": True},
        422,
        "invalid_field",
        "score",
    ),
    (
        "feedback-score-text",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "TRACE", "score": "1"},
        422,
        "invalid_field",
        "score",
    ),
    (
        "feedback-thumbs-upper",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "TRACE", "thumbs": "UP"},
        422,
        "invalid_field",
        "thumbs",
    ),
    (
        "feedback-thumbs-bool",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "TRACE", "thumbs": True},
        422,
        "invalid_field",
        "thumbs",
    ),
    (
        "feedback-thumbs-and-score",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "TRACE", "thumbs": "up", "score": 1},
        422,
        "invalid_field",
        "score",
    ),
    (
        "feedback-no-value",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "TRACE"},
        422,
        "invalid_field",
        "score",
    ),
    (
        "feedback-trace-int",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": 5, "score": 1},
        422,
        "invalid_field",
        "trace_id",
    ),
    (
        "feedback-trace-unknown",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "nope", "score": 1},
        404,
        "trace_not_found",
        "trace_id",
    ),
    (
        "feedback-trace-long",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "x" * 10_000, "score": 1},
        404,
        "trace_not_found",
        "trace_id",
    ),
    (
        "feedback-other-key",
        "POST",
        FEEDBACK,
        "other",
        {"trace_id": "TRACE", "score": 1},
        404,
        "trace_not_found",
        "trace_id",
    ),
    (
        "feedback-comment-long",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "TRACE", "score": 1, "comment": "c" * 4001},
        422,
        "invalid_field",
        "comment",
    ),
    (
        "feedback-comment-int",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "TRACE", "score": 1, "comment": 5},
        422,
        "invalid_field",
        "comment",
    ),
    (
        "feedback-name-long",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "TRACE", "score": 1, "name": "n" * 101},
        422,
        "invalid_field",
        "name",
    ),
    (
        "feedback-name-empty",
        "POST",
        FEEDBACK,
        "virtual",
        {"trace_id": "TRACE", "score": 1, "name": ""},
        422,
        "invalid_field",
        "name",
    ),
]


@pytest.fixture(scope="module")
def outsider(server: KeelwayServer, keys: dict[str, str]) -> str:
    """The key of a viewer of team ops only."""
    created = _admin(
        server,
        "POST",
        "/users",
        json={"name": "ops-viewer", "roles": [{"role": "viewer", "team": "ops"}]},
    )
    key: str = _ok(created)["key"]
    return key


@pytest.mark.parametrize(
    ("method", "path", "key", "body", "status", "code", "param"),
    [case[1:] for case in HANDLED],
    ids=[case[0] for case in HANDLED],
)
def test_bad_input_handled(
    server: KeelwayServer,
    keys: dict[str, str],
    baseline: dict[str, Any],
    outsider: str,
    trace_id: str,
    method: str,
    path: str,
    key: str,
    body: Any,
    status: int,
    code: str,
    param: str | None,
) -> None:
    secrets = {**keys, "master": MASTER, "outsider": outsider}
    secret = secrets.get(key, key)
    headers = _auth(secret) if secret else {}
    if isinstance(body, dict) and body.get("trace_id") == "TRACE":
        body = {**body, "trace_id": trace_id}
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    response = httpx.request(
        method,
        server.url + path,
        content=content if body is not None else None,
        headers={**headers, "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == status, response.text
    error = _error(response)
    assert error["code"] == code
    assert error["param"] == param
    for value in secrets.values():
        assert value not in response.text


def _streamed_text(response: httpx.Response) -> str:
    """Join the content deltas of an OpenAI chat completion stream."""
    parts = []
    for line in response.text.splitlines():
        if not line.startswith("data: {"):
            continue
        for choice in orjson.loads(line.removeprefix("data: "))["choices"]:
            parts.append(choice["delta"].get("content") or "")
    return "".join(parts)


def test_stream_records_prompt_version(
    server: KeelwayServer, keys: dict[str, str]
) -> None:
    body = {"prompt": "base", "variables": {"q": "why?"}, "stream": True}
    response = _ask(server, body)
    assert response.status_code == 200, response.text
    assert response.headers["x-keelway-prompt-version"] == "base@1.0.0"
    # The fake upstream streams fixed text instead of echoing the messages.
    assert _streamed_text(response) == "Hello from the fake upstream."
    trace = _wait_for_trace(server, response.headers["x-keelway-trace-id"])
    assert trace.prompt == "base"
    assert trace.prompt_version == "1.0.0"


def test_disabled_user_rejected(server: KeelwayServer, keys: dict[str, str]) -> None:
    created = _admin(
        server, "POST", "/users", json={"name": "leaver", "roles": [{"role": "admin"}]}
    )
    secret = _ok(created)["key"]
    with server.database.session() as session, session.begin():
        session.execute(
            update(User)
            .where(User.name == "leaver")
            .values(disabled_at=datetime.now(UTC))
        )
    response = _admin(server, "GET", "/prompts", secret)
    assert response.status_code == 401
    assert _error(response)["code"] == "invalid_user_key"
    assert secret not in response.text


def test_label_moves_during_traffic(
    server: KeelwayServer, keys: dict[str, str]
) -> None:
    """Each response renders one of the two versions and its header names it."""
    first = _publish(server, keys, "moving", ALPHA)
    second = _publish(server, keys, "moving", BETA)
    _label(server, keys, "moving", "production", first)

    def move(offset: int) -> list[int]:
        statuses = []
        for index in range(15):
            version = (first, second)[(index + offset) % 2]
            response = _admin(
                server,
                "PUT",
                "/prompts/moving/labels/production",
                keys["erin"],
                json={"version": version},
            )
            statuses.append(response.status_code)
        return statuses

    def ask(_: int) -> list[tuple[int, str, str]]:
        answers = []
        for _index in range(20):
            response = _ask(server, {"prompt": "moving", "variables": {"q": "x"}})
            text = response.text
            if response.status_code == 200:
                text = response.json()["choices"][0]["message"]["content"]
            header = response.headers.get("x-keelway-prompt-version", "")
            answers.append((response.status_code, header, text))
        return answers

    with ThreadPoolExecutor(6) as pool:
        movers = [pool.submit(move, offset) for offset in (0, 1)]
        askers = [pool.submit(ask, index) for index in range(4)]
        moves = [status for future in movers for status in future.result()]
        answers = [answer for future in askers for answer in future.result()]

    assert Counter(moves) == {200: 30}
    assert Counter(status for status, _, _ in answers) == {200: 80}
    for _status, header, text in answers:
        assert header in ("moving@1.0.0", "moving@1.1.0")
        expected = "Alpha" if header == "moving@1.0.0" else "Beta"
        assert text.startswith(f"system: {expected}")
    labels = _ok(_admin(server, "GET", "/prompts/moving"))["labels"]
    assert labels["production"] in (first, second)


def test_registry_intact_after_attacks(
    server: KeelwayServer, keys: dict[str, str], baseline: dict[str, Any]
) -> None:
    assert _snapshot(server, "base") == baseline
    for name in ("long-team", "nested", "x1", "nul-team", "nul-msg", "invalid-content"):
        assert _admin(server, "GET", f"/prompts/{name}").status_code == 404
    experiments = _ok(_admin(server, "GET", "/experiments"))["data"]
    names = {experiment["name"] for experiment in experiments}
    assert not names & REJECTED_EXPERIMENTS


def test_secrets_absent_everywhere(
    server: KeelwayServer, keys: dict[str, str], outsider: str
) -> None:
    events = _ok(_admin(server, "GET", "/audit?limit=10000"))["data"]
    audit = orjson.dumps(events).decode()
    log = server.log()
    assert any(event["outcome"] == "denied" for event in events)
    assert "unhandled error" not in log
    assert "Traceback" not in log
    for secret in (*keys.values(), outsider, MASTER):
        assert secret not in audit
        assert secret not in log
