"""Registry prompts through the gateway: labels, reviews, rollback and experiments.

Two keelway replicas share one store. The fake upstream's ``echo`` model
answers with the messages it was sent, so each answer shows which prompt
version was rendered.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from keelway.store.models import ShadowSample, Trace
from tests.conftest import openai_models
from tests.fakes.openai_upstream import API_KEY, FakeOpenAI
from tests.servers import KeelwayServer

MASTER = "kw-master-test-key"
ROLES = {
    "erin": "prompt_engineer",
    "omar": "prompt_engineer",
    "ana": "approver",
    "vic": "viewer",
    "ops": "operator",
    "aud": "auditor",
}


def _content(system: str, model: str = "echo") -> dict[str, Any]:
    return {
        "variables": {"question": {"type": "string"}},
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "Question: {{ question }}"},
        ],
        "model": {"group": model, "max_tokens": 64},
    }


VERSION_A = _content("Version A. Answer from the passage.")
VERSION_B = _content("Version B. Answer from the passage, briefly.")


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(record=False) as fake:
        yield fake


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    upstream: FakeOpenAI,
) -> Iterator[list[KeelwayServer]]:
    models = openai_models(upstream.base_url, ["echo", "slow"])
    servers = []
    for name in ("one", "two"):
        server = KeelwayServer(
            tmp_path_factory.mktemp(f"replica-{name}"),
            database_url,
            models,
            env={"FAKE_OPENAI_KEY": API_KEY, "KEELWAY_MASTER_KEY": MASTER},
        )
        servers.append(server.start())
    yield servers
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def keys(replicas: list[KeelwayServer]) -> dict[str, str]:
    """Create one user per role through the admin API; return their keys."""
    created = {}
    for name, role in ROLES.items():
        response = httpx.post(
            replicas[0].url + "/api/v1/users",
            json={"name": name, "roles": [{"role": role}]},
            headers=_auth(MASTER),
        )
        assert response.status_code == 201, response.text
        created[name] = response.json()["key"]
    return created


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _admin(
    server: KeelwayServer, method: str, path: str, key: str, **kwargs: Any
) -> httpx.Response:
    return httpx.request(
        method, server.url + "/api/v1" + path, headers=_auth(key), **kwargs
    )


def _ask(
    server: KeelwayServer,
    prompt: str,
    user: str | None = None,
    **extra: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"prompt": prompt, "variables": {"question": "why?"}}
    if user is not None:
        body["user"] = user
    body.update(extra)
    return httpx.post(
        server.url + "/v1/chat/completions",
        json=body,
        headers=_auth(server.key),
        timeout=30,
    )


def _answer(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


def _publish(
    server: KeelwayServer, keys: dict[str, str], name: str, content: dict[str, Any]
) -> str:
    """Create (or propose) a version as erin, approve it as ana; return it."""
    created = _admin(
        server,
        "POST",
        "/prompts",
        keys["erin"],
        json={"name": name, "content": content},
    )
    if created.status_code == 409:
        created = _admin(
            server,
            "POST",
            f"/prompts/{name}/versions",
            keys["erin"],
            json={"content": content},
        )
    assert created.status_code == 201, created.text
    version: str = created.json()["version"]
    approved = _admin(
        server,
        "POST",
        f"/prompts/{name}/versions/{version}/approve",
        keys["ana"],
        json={"comment": "looks right"},
    )
    assert approved.status_code == 200, approved.text
    return version


def _label(
    server: KeelwayServer, key: str, name: str, label: str, version: str
) -> httpx.Response:
    return _admin(
        server,
        "PUT",
        f"/prompts/{name}/labels/{label}",
        key,
        json={"version": version},
    )


def test_label_moves_reach_both_replicas(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    one, two = replicas
    version_a = _publish(one, keys, "support", VERSION_A)
    assert _label(one, keys["erin"], "support", "production", version_a).is_success
    for server in replicas:
        assert "Version A" in _answer(_ask(server, "support@production"))

    version_b = _publish(one, keys, "support", VERSION_B)
    assert version_b == "1.1.0"
    moved = _label(one, keys["ana"], "support", "production", version_b)
    assert moved.json() == {"label": "production", "from": "1.0.0", "to": "1.1.0"}
    # The very next request on the other replica serves the new target.
    assert "Version B" in _answer(_ask(two, "support@production"))
    assert "Version B" in _answer(_ask(one, "support@production"))

    rollback_env = {**two.env, "KEELWAY_USER_KEY": keys["ops"]}
    rollback = _cli(two, rollback_env, "prompt", "rollback", "support")
    assert rollback.returncode == 0, rollback.stderr
    for server in (two, one):
        response = _ask(server, "support@production")
        assert "Version A" in _answer(response)
        assert response.headers["x-keelway-prompt-version"] == "support@1.0.0"


def _cli(server: KeelwayServer, env: dict[str, str], *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "keelway", *args, "--config", str(server.config_path)],
        env=env,
        cwd=server.folder,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version_reference_pins_a_version(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    version = _publish(replicas[0], keys, "pinned", VERSION_A)
    response = _ask(replicas[1], f"pinned@{version}")
    assert "Version A" in _answer(response)


def test_trace_records_prompt_version(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    version = _publish(replicas[0], keys, "traced", VERSION_A)
    assert _label(replicas[0], keys["erin"], "traced", "staging", version).is_success
    response = _ask(replicas[0], "traced@staging")
    trace_id = response.headers["x-keelway-trace-id"]
    trace = _wait_for_trace(replicas[0], trace_id)
    assert trace.prompt == "traced"
    assert trace.prompt_version == version
    assert trace.attributes["prompt"]["label"] == "staging"


def _wait_for_trace(server: KeelwayServer, trace_id: str) -> Trace:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with server.database.session() as session:
            trace = session.get(Trace, trace_id)
            if trace is not None:
                return trace
        time.sleep(0.05)
    raise AssertionError(f"trace {trace_id} was not written")


def test_removed_label_gives_404(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    one, two = replicas
    version = _publish(one, keys, "removable", VERSION_A)
    assert _label(one, keys["erin"], "removable", "canary", version).is_success
    assert "Version A" in _answer(_ask(two, "removable@canary"))
    removed = _admin(one, "DELETE", "/prompts/removable/labels/canary", keys["erin"])
    assert removed.status_code == 200, removed.text
    response = _ask(two, "removable@canary")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "prompt_not_found"


def test_header_reference_wins(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    version = _publish(replicas[0], keys, "header", VERSION_B)
    response = httpx.post(
        replicas[0].url + "/v1/chat/completions",
        json={"variables": {"question": "why?"}},
        headers={**_auth(replicas[0].key), "X-Keelway-Prompt": f"header@{version}"},
    )
    assert "Version B" in _answer(response)


def test_request_messages_follow_prompt(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    version = _publish(replicas[0], keys, "history", VERSION_A)
    response = _ask(
        replicas[0],
        f"history@{version}",
        messages=[{"role": "user", "content": "and one more thing"}],
    )
    lines = _answer(response).splitlines()
    assert lines[0].startswith("system: Version A")
    assert lines[-1] == "user: and one more thing"


@pytest.mark.parametrize(
    ("variables", "param"),
    [
        ({}, "variables.question"),
        ({"question": "a", "extra": "b"}, "variables.extra"),
        ({"question": 3}, "variables.question"),
    ],
)
def test_bad_variables_give_422(
    replicas: list[KeelwayServer],
    keys: dict[str, str],
    variables: dict[str, Any],
    param: str,
) -> None:
    version = (
        _publish(replicas[0], keys, "strict", VERSION_A)
        if not _exists(replicas[0], keys, "strict")
        else "1.0.0"
    )
    response = httpx.post(
        replicas[0].url + "/v1/chat/completions",
        json={"prompt": f"strict@{version}", "variables": variables},
        headers=_auth(replicas[0].key),
    )
    assert response.status_code == 422
    assert response.json()["error"]["param"] == param


def _exists(server: KeelwayServer, keys: dict[str, str], name: str) -> bool:
    return _admin(server, "GET", f"/prompts/{name}", keys["vic"]).status_code == 200


@pytest.mark.parametrize(
    ("reference", "status"),
    [
        ("missing@production", 404),
        ("support@nolabel", 404),
        ("support@9.9.9", 404),
        ("support@@x", 422),
        ("", 422),
    ],
)
def test_bad_references(
    replicas: list[KeelwayServer],
    keys: dict[str, str],
    reference: str,
    status: int,
) -> None:
    response = httpx.post(
        replicas[0].url + "/v1/chat/completions",
        json={"prompt": reference, "variables": {"question": "q"}},
        headers=_auth(replicas[0].key),
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == "prompt"


def _audit(server: KeelwayServer, keys: dict[str, str], action: str) -> list[Any]:
    response = _admin(
        server,
        "GET",
        "/audit",
        keys["aud"],
        params={"action": action, "outcome": "denied"},
    )
    assert response.status_code == 200, response.text
    events: list[Any] = response.json()["data"]
    return events


def test_author_cannot_approve_own_version(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    server = replicas[0]
    created = _admin(
        server,
        "POST",
        "/prompts",
        keys["omar"],
        json={"name": "self-review", "content": VERSION_A},
    )
    assert created.status_code == 201
    # omar has prompt_engineer only; grant approver to test the author rule.
    granted = _admin(
        server, "POST", "/users/omar/roles", MASTER, json={"role": "approver"}
    )
    assert granted.status_code == 200, granted.text
    response = _admin(
        server, "POST", "/prompts/self-review/versions/1.0.0/approve", keys["omar"]
    )
    assert response.status_code == 403
    assert "cannot review" in response.json()["error"]["message"]
    events = _audit(server, keys, "prompt.approve")
    assert any(e["target"] == "prompt:self-review@1.0.0" for e in events)
    version = _admin(server, "GET", "/prompts/self-review/versions/1.0.0", keys["vic"])
    assert version.json()["status"] == "proposed"


def test_viewer_cannot_move_label(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    server = replicas[0]
    version = _publish(server, keys, "viewer-test", VERSION_A)
    response = _label(server, keys["vic"], "viewer-test", "staging", version)
    assert response.status_code == 403
    assert "prompts.label" in response.json()["error"]["message"]
    events = _audit(server, keys, "prompt.label")
    assert any(e["actor"] == "vic" for e in events)


def test_unapproved_version_cannot_be_production(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    server = replicas[0]
    created = _admin(
        server,
        "POST",
        "/prompts",
        keys["erin"],
        json={"name": "unapproved", "content": VERSION_A},
    )
    assert created.status_code == 201
    response = _label(server, keys["ana"], "unapproved", "production", "1.0.0")
    assert response.status_code == 403
    assert "protected" in response.json()["error"]["message"]
    events = _audit(server, keys, "prompt.label")
    assert any(e["target"] == "prompt:unapproved#production" for e in events)
    staging = _label(server, keys["erin"], "unapproved", "staging", "1.0.0")
    assert staging.status_code == 200


def test_ab_split_is_sticky_and_even(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    one, two = replicas
    version_a = _publish(one, keys, "ab", VERSION_A)
    version_b = _publish(one, keys, "ab", VERSION_B)
    assert _label(one, keys["erin"], "ab", "production", version_a).is_success
    created = _admin(
        one,
        "POST",
        "/experiments",
        keys["erin"],
        json={
            "name": "ab-wording",
            "prompt": "ab",
            "label": "production",
            "variants": [
                {"name": "control", "version": version_a, "weight": 50},
                {"name": "brief", "version": version_b, "weight": 50},
            ],
            "min_samples": 500,
        },
    )
    assert created.status_code == 201, created.text
    users = [f"user-{i:04d}" for i in range(2000)]

    def variant(server: KeelwayServer, user: str) -> str:
        response = _ask(server, "ab@production", user=user)
        expected = (
            "Version A"
            if response.headers["x-keelway-variant"] == "control"
            else "Version B"
        )
        assert expected in _answer(response)
        return response.headers["x-keelway-variant"]

    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(lambda u: variant(one, u), users))
        again = list(pool.map(lambda u: variant(two, u), users[:300]))
    counts = Counter(first)
    assert 0.47 <= counts["control"] / len(users) <= 0.53
    assert again == first[:300]

    stopped = _admin(one, "POST", "/experiments/ab-wording/stop", keys["erin"])
    assert stopped.status_code == 200
    response = _ask(two, "ab@production", user="user-0001")
    assert "x-keelway-variant" not in response.headers
    assert "Version A" in _answer(response)


def test_shadow_stores_both_outputs(
    replicas: list[KeelwayServer], keys: dict[str, str], upstream: FakeOpenAI
) -> None:
    one = replicas[0]
    live = _publish(one, keys, "shadowed", VERSION_A)
    candidate = _publish(one, keys, "shadowed", VERSION_B)
    assert _label(one, keys["erin"], "shadowed", "production", live).is_success
    created = _admin(
        one,
        "POST",
        "/experiments",
        keys["erin"],
        json={
            "name": "shadow-brief",
            "kind": "shadow",
            "prompt": "shadowed",
            "shadow_version": candidate,
            "sample_rate": 1.0,
        },
    )
    assert created.status_code == 201, created.text
    count = 20
    for index in range(count):
        response = _ask(one, "shadowed@production", user=f"u{index}")
        assert "Version A" in _answer(response)
        assert "x-keelway-variant" not in response.headers
    samples = _wait_for_samples(one, created.json()["name"], count)
    assert len(samples) == count
    assert all("Version A" in (s.live_output or "") for s in samples)
    assert all("Version B" in (s.shadow_output or "") for s in samples)
    assert all(s.shadow_status == "ok" for s in samples)
    stopped = _admin(one, "POST", "/experiments/shadow-brief/stop", keys["erin"])
    assert stopped.status_code == 200


def test_shadow_does_not_hold_the_live_answer(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    """The live answer arrives while its shadow call still waits on the upstream."""
    one = replicas[0]
    live = _publish(one, keys, "slow-shadow", VERSION_A)
    candidate = _publish(one, keys, "slow-shadow", _content("Version C", "slow"))
    assert _label(one, keys["erin"], "slow-shadow", "production", live).is_success
    created = _admin(
        one,
        "POST",
        "/experiments",
        keys["erin"],
        json={
            "name": "shadow-slow",
            "kind": "shadow",
            "prompt": "slow-shadow",
            "shadow_version": candidate,
        },
    )
    assert created.status_code == 201, created.text
    response = _ask(one, "slow-shadow@production")
    assert "Version A" in _answer(response)
    # The fake's slow model answers after 3 s; no sample exists yet.
    assert _sample_count(one, "shadow-slow") == 0
    samples = _wait_for_samples(one, "shadow-slow", 1)
    assert samples[0].shadow_status == "ok"
    _admin(one, "POST", "/experiments/shadow-slow/stop", keys["erin"])


def _sample_count(server: KeelwayServer, name: str) -> int:
    from keelway.store.models import Experiment

    with server.database.session() as session:
        experiment = session.scalar(select(Experiment).where(Experiment.name == name))
        assert experiment is not None
        return int(
            session.scalar(
                select(func.count())
                .select_from(ShadowSample)
                .where(ShadowSample.experiment_id == experiment.id)
            )
            or 0
        )


def _wait_for_samples(
    server: KeelwayServer, name: str, count: int
) -> list[ShadowSample]:
    from keelway.store.models import Experiment

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with server.database.session() as session:
            experiment = session.scalar(
                select(Experiment).where(Experiment.name == name)
            )
            assert experiment is not None
            samples = list(
                session.scalars(
                    select(ShadowSample).where(
                        ShadowSample.experiment_id == experiment.id
                    )
                )
            )
        if len(samples) >= count:
            return samples
        time.sleep(0.1)
    raise AssertionError(f"only {len(samples)} of {count} shadow samples stored")


def test_messages_route_renders_prompt(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    version = _publish(replicas[0], keys, "anthropic-style", VERSION_A)
    response = httpx.post(
        replicas[0].url + "/v1/messages",
        json={
            "prompt": f"anthropic-style@{version}",
            "variables": {"question": "why?"},
            "system": "Be kind.",
        },
        headers={"x-api-key": replicas[0].key, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200, response.text
    text = response.json()["content"][0]["text"]
    assert text.startswith("system: Version A. Answer from the passage.\n\nBe kind.")
    assert "user: Question: why?" in text


def test_team_prompts_stay_in_their_team(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    server = replicas[0]
    created = _admin(
        server,
        "POST",
        "/prompts",
        MASTER,
        json={"name": "payments-only", "team": "payments", "content": VERSION_A},
    )
    assert created.status_code == 201, created.text
    outsider = _admin(
        server,
        "POST",
        "/users",
        MASTER,
        json={"name": "ops-viewer", "roles": [{"role": "viewer", "team": "ops"}]},
    ).json()["key"]
    listed = _admin(server, "GET", "/prompts", outsider).json()["data"]
    assert "payments-only" not in {p["name"] for p in listed}
    shown = _admin(server, "GET", "/prompts/payments-only", outsider)
    assert shown.status_code == 403
    proposal = _admin(
        server,
        "POST",
        "/prompts/payments-only/versions",
        keys["erin"],
        json={"content": VERSION_B},
    )
    assert proposal.status_code == 201, "global prompt engineers reach every team"
    # The server's virtual key belongs to team "tests".
    response = _ask(server, "payments-only@1.0.0")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "prompt_not_allowed"


def _prompt_count(server: KeelwayServer, name: str, version: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    labels = f'prompt="{name}",variant="",version="{version}"'
    prefix = f"keelway_prompt_requests_total{{{labels}}}"
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def test_metrics_count_prompt_requests(
    replicas: list[KeelwayServer], keys: dict[str, str]
) -> None:
    version = _publish(replicas[0], keys, "counted", VERSION_A)
    before = _prompt_count(replicas[0], "counted", version)
    for _ in range(3):
        assert "Version A" in _answer(_ask(replicas[0], f"counted@{version}"))
    assert _prompt_count(replicas[0], "counted", version) - before == 3
