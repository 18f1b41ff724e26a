"""Experiment reports over traces in the store, on seeded synthetic data.

Traces are written straight to the store with known effects between the
variants, so the report must find exactly those effects significant.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from keelway.experiments.assign import Variant
from keelway.experiments.results import experiment_report
from keelway.experiments.store import ExperimentStore
from keelway.governance import AuditLog, Principal
from keelway.prompts.content import PromptContent
from keelway.prompts.registry import PromptRegistry
from keelway.store.database import Database, open_database
from keelway.store.models import Trace, TraceScore

ADMIN = Principal.local()
REVIEWER = Principal("reviewer", "user", ADMIN.grants)


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.close()


@pytest.fixture(scope="module")
def stores(database: Database) -> tuple[PromptRegistry, ExperimentStore]:
    audit = AuditLog(database)
    registry = PromptRegistry(database, audit)
    return registry, ExperimentStore(database, audit)


def _content(system: str) -> PromptContent:
    return PromptContent.from_dict(
        {"messages": [{"role": "system", "content": system}]}
    )


def _experiment(
    stores: tuple[PromptRegistry, ExperimentStore], name: str, min_samples: int
) -> None:
    registry, experiments = stores
    registry.create(ADMIN, name, _content("first wording"))
    registry.propose(ADMIN, name, _content("second wording"))
    for version in ("1.0.0", "1.1.0"):
        registry.review(REVIEWER, name, version, approve=True)
    registry.set_label(ADMIN, name, "production", "1.0.0")
    experiments.create_ab(
        ADMIN,
        name,
        name,
        "production",
        [Variant("control", "1.0.0", 50), Variant("treatment", "1.1.0", 50)],
        min_samples=min_samples,
    )


def _write_traces(
    database: Database,
    experiment: str,
    variant: str,
    rng: np.random.Generator,
    *,
    count: int,
    error_rate: float,
    latency_mean: float,
    thumbs_up: float,
) -> None:
    now = datetime.now(UTC)
    errors = rng.random(count) < error_rate
    latencies = rng.normal(latency_mean, 200, count)
    thumbs = rng.random(count) < thumbs_up
    with database.session() as session, session.begin():
        for failed, latency, liked in zip(errors, latencies, thumbs, strict=True):
            trace_id = uuid.uuid4().hex
            session.add(
                Trace(
                    id=trace_id,
                    request_id=trace_id,
                    started_at=now,
                    route="chat",
                    status="error" if failed else "ok",
                    http_status=500 if failed else 200,
                    latency_ms=float(latency),
                    payloads="none",
                    experiment=experiment,
                    variant=variant,
                    cost_usd=0.001,
                )
            )
            session.add(
                TraceScore(
                    id=uuid.uuid4().hex,
                    trace_id=trace_id,
                    name="user_feedback",
                    value=1.0 if liked else 0.0,
                    source="feedback",
                    created_at=now,
                )
            )


def _verdicts(report: Any) -> dict[str, str]:
    return {c.metric: c.verdict for c in report.comparisons}


def test_known_effect_is_significant(
    database: Database, stores: tuple[PromptRegistry, ExperimentStore]
) -> None:
    _experiment(stores, "effect", min_samples=500)
    rng = np.random.default_rng(7)
    _write_traces(
        database,
        "effect",
        "control",
        rng,
        count=3000,
        error_rate=0.10,
        latency_mean=800,
        thumbs_up=0.60,
    )
    _write_traces(
        database,
        "effect",
        "treatment",
        rng,
        count=3000,
        error_rate=0.14,
        latency_mean=740,
        thumbs_up=0.66,
    )
    verdicts = _verdicts(experiment_report(database, stores[1], "effect"))
    assert verdicts["error_rate"] == "worse"
    assert verdicts["latency_ms"] == "better"
    assert verdicts["feedback:user_feedback"] == "better"


def test_no_effect_is_not_significant(
    database: Database, stores: tuple[PromptRegistry, ExperimentStore]
) -> None:
    _experiment(stores, "no-effect", min_samples=500)
    rng = np.random.default_rng(11)
    for variant in ("control", "treatment"):
        _write_traces(
            database,
            "no-effect",
            variant,
            rng,
            count=2000,
            error_rate=0.10,
            latency_mean=800,
            thumbs_up=0.60,
        )
    report = experiment_report(database, stores[1], "no-effect")
    verdicts = _verdicts(report)
    assert verdicts["error_rate"] == "no significant difference"
    assert verdicts["latency_ms"] == "no significant difference"
    assert verdicts["feedback:user_feedback"] == "no significant difference"
    assert report.significant_metrics() == []


def test_too_few_samples_is_not_enough_data(
    database: Database, stores: tuple[PromptRegistry, ExperimentStore]
) -> None:
    _experiment(stores, "small", min_samples=1000)
    rng = np.random.default_rng(3)
    _write_traces(
        database,
        "small",
        "control",
        rng,
        count=200,
        error_rate=0.05,
        latency_mean=800,
        thumbs_up=0.5,
    )
    _write_traces(
        database,
        "small",
        "treatment",
        rng,
        count=200,
        error_rate=0.50,
        latency_mean=400,
        thumbs_up=0.9,
    )
    verdicts = _verdicts(experiment_report(database, stores[1], "small"))
    assert set(verdicts.values()) == {"not enough data"}


def test_report_is_repeatable(
    database: Database, stores: tuple[PromptRegistry, ExperimentStore]
) -> None:
    first = experiment_report(database, stores[1], "effect").to_dict()
    second = experiment_report(database, stores[1], "effect").to_dict()
    assert first == second


def test_cli_report_prints_verdicts(
    tmp_path: Path,
    database_url: str,
    database: Database,
    stores: tuple[PromptRegistry, ExperimentStore],
) -> None:
    config = tmp_path / "keelway.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": database_url}}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keelway",
            "experiment",
            "report",
            "effect",
            "--json",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"KEELWAY_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["experiment"]["name"] == "effect"
    text = subprocess.run(
        [
            sys.executable,
            "-m",
            "keelway",
            "experiment",
            "report",
            "effect",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"KEELWAY_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert "worse" in text.stdout
    assert "Traceback" not in text.stderr
