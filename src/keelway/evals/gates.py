"""Stored gate decisions, which gated prompt labels check before a move."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime

from keelway.evals.gate import GatePolicy, GateVerdict
from keelway.evals.runs import RunRecord
from keelway.governance.roles import Principal
from keelway.store.database import Database
from keelway.store.models import EvalGate


class GateStore:
    """Writes gate decisions."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def record(
        self,
        actor: Principal,
        candidate: RunRecord,
        baseline: RunRecord | None,
        verdict: GateVerdict,
        policy: GatePolicy,
    ) -> str:
        """Store a gate decision and return its id."""
        row = EvalGate(
            id=uuid.uuid4().hex,
            prompt=candidate.prompt,
            candidate_version=candidate.prompt_version,
            baseline_version=baseline.prompt_version if baseline else None,
            dataset=candidate.dataset,
            dataset_version=candidate.dataset_version,
            candidate_run_id=candidate.id,
            baseline_run_id=baseline.id if baseline else None,
            passed=verdict.passed,
            reasons=[reason.replace("\x00", "\ufffd") for reason in verdict.reasons],
            policy=asdict(policy),
            created_at=datetime.now(UTC),
            created_by=actor.name,
        )
        with self.database.session() as session, session.begin():
            session.add(row)
        return row.id
