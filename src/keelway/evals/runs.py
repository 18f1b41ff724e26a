"""Eval runs, their per-case results and the output cache, in the store.

Each finished case is written at once, in its own transaction, so a run
stopped half way keeps what it finished; its outputs are in the cache, and
a rerun reuses them.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from keelway.evals.base import Score
from keelway.evals.results import CaseResult
from keelway.governance.errors import Invalid, NotFound
from keelway.store.database import Database, as_utc
from keelway.store.models import EvalCacheEntry, EvalResult, EvalRun, Trace

RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
INTERRUPTED = "interrupted"
MIN_PREFIX = 6
MAX_ID = 32


def cache_key(kind: str, parts: Mapping[str, Any]) -> str:
    """Return the SHA-256 hex key of ``parts`` (canonical JSON) for ``kind``."""
    body = orjson.dumps({"kind": kind, **parts}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A stored run, without its results."""

    id: str
    prompt: str
    prompt_version: str
    prompt_reference: str
    dataset: str
    dataset_version: int
    evaluators: list[dict[str, Any]]
    settings: dict[str, Any]
    trials: int
    status: str
    error: str | None
    summary: dict[str, Any] | None
    started_at: datetime
    finished_at: datetime | None
    created_by: str

    @property
    def label(self) -> str:
        """Return what the run evaluated, as ``prompt@version on dataset@N``."""
        return (
            f"{self.prompt}@{self.prompt_version} on {self.dataset}@"
            f"{self.dataset_version}"
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready data."""
        return {
            "id": self.id,
            "prompt": self.prompt,
            "prompt_version": self.prompt_version,
            "prompt_reference": self.prompt_reference,
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "evaluators": self.evaluators,
            "settings": self.settings,
            "trials": self.trials,
            "status": self.status,
            "error": self.error,
            "summary": self.summary,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "created_by": self.created_by,
        }


def _run_record(row: EvalRun) -> RunRecord:
    return RunRecord(
        id=row.id,
        prompt=row.prompt,
        prompt_version=row.prompt_version,
        prompt_reference=row.prompt_reference,
        dataset=row.dataset,
        dataset_version=row.dataset_version,
        evaluators=row.evaluators,
        settings=row.settings,
        trials=row.trials,
        status=row.status,
        error=row.error,
        summary=row.summary,
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at) if row.finished_at else None,
        created_by=row.created_by,
    )


def score_to_dict(score: Score) -> dict[str, Any]:
    """Return a score as stored JSON."""
    return {
        "evaluator": score.evaluator,
        "status": score.status,
        "value": score.value,
        "passed": score.passed,
        "reason": score.reason,
        "details": score.details,
    }


def score_from_dict(data: Mapping[str, Any]) -> Score:
    """Return the score stored as ``data``."""
    return Score(
        data["evaluator"],
        data["status"],
        data.get("value"),
        data.get("passed"),
        data.get("reason", ""),
        data.get("details") or {},
    )


def _result(row: EvalResult) -> CaseResult:
    return CaseResult(
        case_key=row.case_key,
        trial=row.trial,
        status=row.status,  # type: ignore[arg-type]
        output=row.output,
        error=row.error,
        latency_ms=row.latency_ms,
        cost_usd=row.cost_usd,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cached=row.cached,
        trace_id=row.trace_id,
        must_pass=row.must_pass,
        tags=tuple(row.tags or ()),
        scores=[score_from_dict(item) for item in row.scores],
    )


def _clean(text: str | None) -> str | None:
    # PostgreSQL rejects NUL in text columns; a model can emit one.
    return text.replace("\x00", "\ufffd") if text else text


def _clean_json(value: Any) -> Any:
    # JSON columns on PostgreSQL reject the \u0000 escape as well.
    return orjson.loads(orjson.dumps(value).replace(b"\\u0000", b"\\ufffd"))


class RunStore:
    """Writes and reads eval runs, results and cached outputs."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def create(
        self,
        *,
        prompt: str,
        prompt_version: str,
        prompt_reference: str,
        dataset: str,
        dataset_version: int,
        evaluators: Sequence[Mapping[str, Any]],
        settings: Mapping[str, Any],
        trials: int,
        created_by: str,
    ) -> RunRecord:
        """Store a new run in state ``running`` and return it."""
        row = EvalRun(
            id=uuid.uuid4().hex,
            prompt=prompt,
            prompt_version=prompt_version,
            prompt_reference=prompt_reference,
            dataset=dataset,
            dataset_version=dataset_version,
            evaluators=[dict(item) for item in evaluators],
            settings=dict(settings),
            trials=trials,
            status=RUNNING,
            started_at=datetime.now(UTC),
            created_by=created_by,
        )
        with self.database.session() as session, session.begin():
            session.add(row)
        return _run_record(row)

    def add_result(self, run_id: str, result: CaseResult) -> None:
        """Store one case's result; a result already stored is replaced."""
        with self.database.session() as session, session.begin():
            stored = session.scalar(
                select(EvalResult).where(
                    EvalResult.run_id == run_id,
                    EvalResult.case_key == result.case_key,
                    EvalResult.trial == result.trial,
                )
            )
            if stored is not None:
                session.delete(stored)
                session.flush()
            session.add(
                EvalResult(
                    id=uuid.uuid4().hex,
                    run_id=run_id,
                    case_key=result.case_key,
                    trial=result.trial,
                    status=result.status,
                    output=_clean(result.output),
                    error=_clean(result.error),
                    latency_ms=result.latency_ms,
                    cost_usd=result.cost_usd,
                    input_tokens=result.input_tokens,
                    output_tokens=result.output_tokens,
                    cached=result.cached,
                    trace_id=result.trace_id,
                    must_pass=result.must_pass,
                    tags=list(result.tags),
                    scores=_clean_json([score_to_dict(s) for s in result.scores]),
                )
            )

    def finish(
        self,
        run_id: str,
        status: str,
        summary: Mapping[str, Any] | None,
        error: str | None = None,
    ) -> None:
        """Set a run's final status, summary and error."""
        with self.database.session() as session, session.begin():
            session.execute(
                update(EvalRun)
                .where(EvalRun.id == run_id)
                .values(
                    status=status,
                    summary=dict(summary) if summary is not None else None,
                    error=_clean(error),
                    finished_at=datetime.now(UTC),
                )
            )

    def find(self, text: str) -> RunRecord:
        """Return the run whose id is ``text`` or starts with it (6+ characters)."""
        if not isinstance(text, str) or "\x00" in text or len(text) > MAX_ID:
            raise Invalid(f"invalid run id; a run id is {MAX_ID} hex digits")
        with self.database.session() as session:
            row = session.get(EvalRun, text)
            if row is not None:
                return _run_record(row)
            if len(text) < MIN_PREFIX:
                raise NotFound(f"no run {text!r}; give the id or {MIN_PREFIX}+ of it")
            rows = session.scalars(
                select(EvalRun).where(EvalRun.id.startswith(text, autoescape=True))
            ).all()
        if not rows:
            raise NotFound(f"no run {text!r}")
        if len(rows) > 1:
            raise Invalid(f"{len(rows)} runs start with {text!r}; give more of the id")
        return _run_record(rows[0])

    def results(self, run_id: str) -> list[CaseResult]:
        """Return a run's results in case and trial order."""
        with self.database.session() as session:
            rows = session.scalars(
                select(EvalResult)
                .where(EvalResult.run_id == run_id)
                .order_by(EvalResult.case_key, EvalResult.trial)
            ).all()
            return [_result(row) for row in rows]

    def list(self, prompt: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Return the newest runs, of one prompt when given."""
        query = select(EvalRun).order_by(EvalRun.started_at.desc()).limit(limit)
        if prompt is not None:
            query = query.where(EvalRun.prompt == prompt)
        with self.database.session() as session:
            return [_run_record(row) for row in session.scalars(query).all()]

    def trace_costs(self, trace_ids: Sequence[str]) -> dict[str, float]:
        """Return the cost the gateway traced for each of ``trace_ids``."""
        costs: dict[str, float] = {}
        ids = [trace_id for trace_id in trace_ids if trace_id]
        with self.database.session() as session:
            for start in range(0, len(ids), 500):
                rows = session.execute(
                    select(Trace.id, Trace.cost_usd).where(
                        Trace.id.in_(ids[start : start + 500])
                    )
                ).all()
                costs.update(
                    {row.id: row.cost_usd for row in rows if row.cost_usd is not None}
                )
        return costs

    # The output cache

    def cached(self, key: str) -> dict[str, Any] | None:
        """Return the cached value under ``key``, if there is one."""
        with self.database.session() as session:
            row = session.get(EvalCacheEntry, key)
            return dict(row.value) if row is not None else None

    def cache(self, key: str, kind: str, value: Mapping[str, Any]) -> None:
        """Store ``value`` under ``key``; a concurrent equal write is fine."""
        try:
            with self.database.session() as session, session.begin():
                if session.get(EvalCacheEntry, key) is None:
                    session.add(
                        EvalCacheEntry(
                            key=key,
                            kind=kind,
                            value=_clean_json(dict(value)),
                            created_at=datetime.now(UTC),
                        )
                    )
        except IntegrityError:
            pass
