"""Experiments in the store: A/B tests and shadow tests on a prompt label.

An A/B test splits the traffic that resolves ``prompt@label`` between
versions by percentage. A shadow test leaves the live response alone and
sends a sampled copy of the traffic to a candidate version in the
background. One label runs at most one experiment at a time. Creating or
stopping one raises the registry generation, so gateway replicas pick the
change up on their next request.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keelway.experiments.assign import Variant, validate_split
from keelway.governance.audit import AuditLog
from keelway.governance.errors import Conflict, Invalid, NotFound
from keelway.governance.roles import Permission, Principal
from keelway.prompts.registry import bump_generation
from keelway.store.database import Database, as_utc
from keelway.store.models import (
    Experiment,
    Prompt,
    PromptLabel,
    PromptVersion,
    ShadowSample,
)

RUNNING = "running"
STOPPED = "stopped"
STICKY_UNITS = ("user", "session")
MAX_NAME_LENGTH = 128
# Names that fit URL paths and HTTP headers (variants travel in one).
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# The min_samples column is a 32-bit integer on PostgreSQL.
MAX_MIN_SAMPLES = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ExperimentRecord:
    """An experiment as the gateway and the report read it."""

    id: str
    name: str
    kind: str
    prompt: str
    label: str
    status: str
    variants: tuple[Variant, ...]
    shadow_version: str | None
    sample_rate: float
    sticky: str
    alpha: float
    min_samples: int
    description: str | None
    created_at: datetime
    created_by: str
    stopped_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "prompt": self.prompt,
            "label": self.label,
            "status": self.status,
            "variants": [
                {"name": v.name, "version": v.version, "weight": v.weight}
                for v in self.variants
            ],
            "shadow_version": self.shadow_version,
            "sample_rate": self.sample_rate,
            "sticky": self.sticky,
            "alpha": self.alpha,
            "min_samples": self.min_samples,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
        }


@dataclass(frozen=True, slots=True)
class SampleRecord:
    """The outputs, latencies and costs stored for one shadowed request."""

    experiment_id: str
    trace_id: str
    shadow_trace_id: str | None
    live_version: str
    shadow_version: str
    live_output: str | None
    shadow_output: str | None
    live_latency_ms: float | None
    shadow_latency_ms: float | None
    live_cost_usd: float | None
    shadow_cost_usd: float | None
    shadow_status: str
    shadow_error: str | None


def _record(row: Experiment) -> ExperimentRecord:
    variants = tuple(
        Variant(str(v["name"]), str(v["version"]), float(v["weight"]))
        for v in row.variants
    )
    return ExperimentRecord(
        row.id,
        row.name,
        row.kind,
        row.prompt,
        row.label,
        row.status,
        variants,
        row.shadow_version,
        row.sample_rate,
        row.sticky,
        row.alpha,
        row.min_samples,
        row.description,
        as_utc(row.created_at),
        row.created_by,
        as_utc(row.stopped_at),
    )


def _check_common(name: str, sticky: str, alpha: float, min_samples: int) -> None:
    if EXPERIMENT_NAME.fullmatch(name) is None:
        raise Invalid(
            f"invalid experiment name {name[:140]!r}: use 1 to {MAX_NAME_LENGTH} "
            "letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if sticky not in STICKY_UNITS:
        raise Invalid(
            f"sticky must be one of {', '.join(STICKY_UNITS)}, got {sticky!r}"
        )
    if not 0 < alpha < 1:
        raise Invalid(f"alpha must be between 0 and 1, got {alpha}")
    if not 1 <= min_samples <= MAX_MIN_SAMPLES:
        raise Invalid(
            f"min_samples must be from 1 to {MAX_MIN_SAMPLES}, got {min_samples}"
        )


class ExperimentStore:
    """Domain verbs over the experiments and shadow_samples tables."""

    def __init__(self, database: Database, audit: AuditLog) -> None:
        self.database = database
        self.audit = audit

    def create_ab(
        self,
        actor: Principal,
        name: str,
        prompt: str,
        label: str,
        variants: list[Variant],
        *,
        sticky: str = "user",
        alpha: float = 0.05,
        min_samples: int = 100,
        description: str | None = None,
    ) -> ExperimentRecord:
        """Start an A/B test splitting ``prompt@label`` between versions."""
        _check_common(name, sticky, alpha, min_samples)
        try:
            validate_split(variants)
        except ValueError as error:
            raise Invalid(str(error)) from None
        for variant in variants:
            if VARIANT_NAME.fullmatch(variant.name) is None:
                raise Invalid(
                    f"invalid variant name {variant.name[:120]!r}: use 1 to 100 "
                    "letters, digits, '.', '_' or '-'"
                )
        versions = [variant.version for variant in variants]
        return self._create(
            actor,
            name,
            "ab",
            prompt,
            label,
            versions,
            variants=[
                {"name": v.name, "version": v.version, "weight": v.weight}
                for v in variants
            ],
            shadow_version=None,
            sample_rate=1.0,
            sticky=sticky,
            alpha=alpha,
            min_samples=min_samples,
            description=description,
        )

    def create_shadow(
        self,
        actor: Principal,
        name: str,
        prompt: str,
        label: str,
        candidate: str,
        *,
        sample_rate: float = 1.0,
        alpha: float = 0.05,
        min_samples: int = 100,
        description: str | None = None,
    ) -> ExperimentRecord:
        """Start a shadow test of ``candidate`` on a sample of ``prompt@label``."""
        _check_common(name, "user", alpha, min_samples)
        if not 0 < sample_rate <= 1:
            raise Invalid(f"sample rate must be in (0, 1], got {sample_rate}")
        return self._create(
            actor,
            name,
            "shadow",
            prompt,
            label,
            [candidate],
            variants=[],
            shadow_version=candidate,
            sample_rate=sample_rate,
            sticky="user",
            alpha=alpha,
            min_samples=min_samples,
            description=description,
        )

    def _create(
        self,
        actor: Principal,
        name: str,
        kind: str,
        prompt_name: str,
        label: str,
        versions: list[str],
        **fields: Any,
    ) -> ExperimentRecord:
        with self.database.session() as session:
            prompt = _prompt(session, prompt_name)
            team = prompt.team
        self.audit.require(
            actor,
            Permission.MANAGE_EXPERIMENTS,
            "experiment.create",
            f"experiment:{name}",
            team=team,
        )
        with self.database.session() as session, session.begin():
            prompt = _prompt(session, prompt_name)
            if session.get(PromptLabel, (prompt.id, label)) is None:
                raise NotFound(f"prompt {prompt_name!r} has no label {label!r}")
            for version in versions:
                _check_version(session, prompt, version)
            running = session.scalar(
                select(Experiment).where(
                    Experiment.prompt == prompt_name,
                    Experiment.label == label,
                    Experiment.status == RUNNING,
                )
            )
            if running is not None:
                raise Conflict(
                    f"experiment {running.name!r} already runs on "
                    f"{prompt_name}@{label}; stop it first"
                )
            row = Experiment(
                id=uuid.uuid4().hex,
                name=name,
                kind=kind,
                prompt=prompt_name,
                label=label,
                status=RUNNING,
                created_at=datetime.now(UTC),
                created_by=actor.name,
                **fields,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                raise Conflict(f"an experiment named {name!r} already exists") from None
            record = _record(row)
            self.audit.add(
                session,
                actor,
                "experiment.create",
                f"experiment:{name}",
                team=team,
                details=record.as_dict(),
            )
            bump_generation(session)
            return record

    def stop(self, actor: Principal, name: str) -> ExperimentRecord:
        """Stop a running experiment; its label serves as before it started."""
        with self.database.session() as session:
            row = _experiment(session, name)
            prompt = session.scalar(select(Prompt).where(Prompt.name == row.prompt))
            team = prompt.team if prompt is not None else None
        self.audit.require(
            actor,
            Permission.MANAGE_EXPERIMENTS,
            "experiment.stop",
            f"experiment:{name}",
            team=team,
        )
        with self.database.session() as session, session.begin():
            row = _experiment(session, name)
            if row.status != RUNNING:
                raise Conflict(f"experiment {name!r} is already {row.status}")
            row.status = STOPPED
            row.stopped_at = datetime.now(UTC)
            self.audit.add(
                session, actor, "experiment.stop", f"experiment:{name}", team=team
            )
            bump_generation(session)
            return _record(row)

    def get(self, name: str) -> ExperimentRecord:
        with self.database.session() as session:
            return _record(_experiment(session, name))

    def all(self) -> list[ExperimentRecord]:
        with self.database.session() as session:
            rows = session.scalars(select(Experiment).order_by(Experiment.created_at))
            return [_record(row) for row in rows]

    def running(self, prompt: str, label: str) -> ExperimentRecord | None:
        """Return the experiment running on ``prompt@label``, if any."""
        with self.database.session() as session:
            row = session.scalar(
                select(Experiment).where(
                    Experiment.prompt == prompt,
                    Experiment.label == label,
                    Experiment.status == RUNNING,
                )
            )
            return _record(row) if row is not None else None

    def add_samples(self, samples: list[SampleRecord]) -> None:
        """Store the outputs of shadowed requests."""
        with self.database.session() as session, session.begin():
            for sample in samples:
                session.add(ShadowSample(**sample_row(sample)))

    def samples(self, name: str) -> list[ShadowSample]:
        """Return the shadow samples of an experiment, oldest first."""
        with self.database.session() as session:
            experiment = _experiment(session, name)
            return list(
                session.scalars(
                    select(ShadowSample)
                    .where(ShadowSample.experiment_id == experiment.id)
                    .order_by(ShadowSample.created_at, ShadowSample.id)
                )
            )


def sample_row(sample: SampleRecord) -> dict[str, Any]:
    """Return the shadow_samples row of a sample, with a new id."""
    fields: dict[str, Any] = {
        name: getattr(sample, name) for name in SampleRecord.__slots__
    }
    fields["id"] = uuid.uuid4().hex
    fields["created_at"] = datetime.now(UTC)
    for name in ("live_output", "shadow_output", "shadow_error"):
        value = fields[name]
        # PostgreSQL text cannot hold NUL.
        if isinstance(value, str) and "\x00" in value:
            fields[name] = value.replace("\x00", "\ufffd")
    return fields


def _prompt(session: Session, name: str) -> Prompt:
    prompt = session.scalar(select(Prompt).where(Prompt.name == name))
    if prompt is None:
        raise NotFound(f"prompt {name!r} not found")
    return prompt


def _experiment(session: Session, name: str) -> Experiment:
    row = session.scalar(select(Experiment).where(Experiment.name == name))
    if row is None:
        raise NotFound(f"experiment {name!r} not found")
    return row


def _check_version(session: Session, prompt: Prompt, version: str) -> None:
    row = session.scalar(
        select(PromptVersion).where(
            PromptVersion.prompt_id == prompt.id, PromptVersion.version == version
        )
    )
    if row is None:
        raise NotFound(f"prompt {prompt.name!r} has no version {version}")
    if row.status == "rejected":
        raise Conflict(f"{prompt.name}@{version} was rejected; it cannot be tested")
