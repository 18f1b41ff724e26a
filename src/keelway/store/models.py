"""Tables of the store. Schema changes go through Alembic revisions only."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    """A virtual API key. Only the SHA-256 of the secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    team: Mapped[str | None] = mapped_column(String(200))
    models: Mapped[list[str] | None] = mapped_column(JSON)
    payloads: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Limits of this key; None means no limit of that kind.
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(20, 9))
    budget_soft_usd: Mapped[Decimal | None] = mapped_column(Numeric(20, 9))
    budget_period: Mapped[str | None] = mapped_column(String(10))


class Trace(Base):
    """One request through the gateway, with its usage, cost and payloads."""

    __tablename__ = "traces"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    route: Mapped[str] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(String(200), index=True)
    deployment: Mapped[str | None] = mapped_column(String(200))
    provider: Mapped[str | None] = mapped_column(String(40))
    upstream_model: Mapped[str | None] = mapped_column(String(200))
    key_id: Mapped[str | None] = mapped_column(String(32), index=True)
    key_name: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(200), index=True)
    user: Mapped[str | None] = mapped_column(String(200), index=True)
    use_case: Mapped[str | None] = mapped_column(String(200), index=True)
    segment: Mapped[str | None] = mapped_column(String(200), index=True)
    prompt: Mapped[str | None] = mapped_column(String(200), index=True)
    # The registry version the request was rendered from, and its experiment.
    prompt_version: Mapped[str | None] = mapped_column(String(40))
    experiment: Mapped[str | None] = mapped_column(String(128), index=True)
    variant: Mapped[str | None] = mapped_column(String(100))
    tags: Mapped[list[str] | None] = mapped_column(JSON)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20))
    http_status: Mapped[int] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_read_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_write_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer)
    usage_source: Mapped[str | None] = mapped_column(String(20))
    usage_tokenizer: Mapped[str | None] = mapped_column(String(100))
    cost_usd: Mapped[float | None] = mapped_column(Float)
    price_table_version: Mapped[str | None] = mapped_column(String(100))
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    payloads: Mapped[str] = mapped_column(String(20))
    request_body: Mapped[str | None] = mapped_column(Text)
    request_size: Mapped[int | None] = mapped_column(Integer)
    request_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    response_body: Mapped[str | None] = mapped_column(Text)
    response_size: Mapped[int | None] = mapped_column(Integer)
    response_truncated: Mapped[bool] = mapped_column(Boolean, default=False)


class Span(Base):
    """One step of a trace: auth, a provider call, and later pipeline steps."""

    __tablename__ = "spans"
    __table_args__ = (Index("ix_spans_trace_id", "trace_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    trace_id: Mapped[str] = mapped_column(ForeignKey("traces.id", ondelete="CASCADE"))
    parent_id: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # None when the span ended before it started, so percentiles skip it.
    duration_ms: Mapped[float | None] = mapped_column(Float)
    clock_skew: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class BudgetLedgerEntry(Base):
    """The cost of one request charged to one budget scope and period.

    Budget backends sum these rows to restore a period's spending after a
    restart. Amounts are nano-USD (1e-9 USD), so fractions of a cent add up
    exactly.
    """

    __tablename__ = "budget_ledger"
    __table_args__ = (
        Index("ix_budget_ledger_scope_period", "scope", "period", "period_start"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    trace_id: Mapped[str] = mapped_column(String(32), index=True)
    scope: Mapped[str] = mapped_column(String(200))
    period: Mapped[str] = mapped_column(String(10))
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    amount_nano_usd: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CacheEntry(Base):
    """One exact-cache entry when the cache lives in the store.

    Times are Unix seconds, as the cache's clock gives them.
    """

    __tablename__ = "cache_entries"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    stored_at: Mapped[float] = mapped_column(Float, index=True)


class User(Base):
    """A person or service account that manages keelway. Only the key's hash is kept."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str | None] = mapped_column(String(200))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RoleGrant(Base):
    """A role held by a user, for one team or (team ``*``) for every team."""

    __tablename__ = "role_grants"
    __table_args__ = (
        UniqueConstraint("user_id", "role", "team", name="uq_role_grants"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(30))
    team: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    granted_by: Mapped[str | None] = mapped_column(String(200))


class AuditEvent(Base):
    """One administrative action, allowed or denied, with who, when and what."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(60), index=True)
    target: Mapped[str | None] = mapped_column(String(400))
    team: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Prompt(Base):
    """A named prompt template; its content lives in immutable versions."""

    __tablename__ = "prompts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    team: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))


class PromptVersion(Base):
    """One immutable version of a prompt, with its review state."""

    __tablename__ = "prompt_versions"
    __table_args__ = (
        UniqueConstraint("prompt_id", "version", name="uq_prompt_versions"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prompt_id: Mapped[str] = mapped_column(
        ForeignKey("prompts.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[str] = mapped_column(String(40))
    major: Mapped[int] = mapped_column(Integer)
    minor: Mapped[int] = mapped_column(Integer)
    patch: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(80))
    bump: Mapped[str | None] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20))
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    message: Mapped[str | None] = mapped_column(Text)
    reviewed_by: Mapped[str | None] = mapped_column(String(200))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_comment: Mapped[str | None] = mapped_column(Text)


class PromptLabel(Base):
    """A label such as ``production`` pointing at one version of a prompt."""

    __tablename__ = "prompt_labels"

    prompt_id: Mapped[str] = mapped_column(
        ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(63), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("prompt_versions.id"))
    moved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    moved_by: Mapped[str] = mapped_column(String(200))


class LabelMove(Base):
    """One move of a label; rollback walks these back."""

    __tablename__ = "label_moves"
    __table_args__ = (Index("ix_label_moves_prompt_label", "prompt_id", "label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prompt_id: Mapped[str] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(63))
    from_version_id: Mapped[str | None] = mapped_column(String(32))
    # None when the label was removed.
    to_version_id: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The passing eval gate that allowed a move onto a gated label.
    eval_gate_id: Mapped[str | None] = mapped_column(String(32))


class RegistryState(Base):
    """A single row whose generation grows with every registry change.

    Gateway replicas compare it with the generation of their cached prompt
    resolutions, so a label move reaches every replica on its next request.
    """

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)


class Experiment(Base):
    """An A/B or shadow test on the versions behind one prompt label."""

    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    prompt: Mapped[str] = mapped_column(String(128), index=True)
    label: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(20))
    # A/B: [{"name", "version", "weight"}]; shadow: the live and candidate.
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    shadow_version: Mapped[str | None] = mapped_column(String(40))
    sample_rate: Mapped[float] = mapped_column(Float)
    sticky: Mapped[str] = mapped_column(String(20))
    alpha: Mapped[float] = mapped_column(Float)
    min_samples: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ShadowSample(Base):
    """The live and the shadow output of one request, side by side."""

    __tablename__ = "shadow_samples"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    trace_id: Mapped[str] = mapped_column(String(32), index=True)
    shadow_trace_id: Mapped[str | None] = mapped_column(String(32))
    live_version: Mapped[str] = mapped_column(String(40))
    shadow_version: Mapped[str] = mapped_column(String(40))
    live_output: Mapped[str | None] = mapped_column(Text)
    shadow_output: Mapped[str | None] = mapped_column(Text)
    live_latency_ms: Mapped[float | None] = mapped_column(Float)
    shadow_latency_ms: Mapped[float | None] = mapped_column(Float)
    live_cost_usd: Mapped[float | None] = mapped_column(Float)
    shadow_cost_usd: Mapped[float | None] = mapped_column(Float)
    shadow_status: Mapped[str] = mapped_column(String(20))
    shadow_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TraceScore(Base):
    """A score on a trace: user feedback or an evaluator's verdict."""

    __tablename__ = "trace_scores"
    __table_args__ = (Index("ix_trace_scores_trace_id", "trace_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    trace_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(20))
    comment: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Dataset(Base):
    """A named, versioned collection of eval cases."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    team: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))


class DatasetVersion(Base):
    """One immutable version of a dataset; every change makes a new one."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version", name="uq_dataset_versions"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    case_count: Mapped[int] = mapped_column(Integer)
    # Evaluator specs that runs of this version use unless a run gives its own.
    evaluators: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))


class DatasetCase(Base):
    """One case of one dataset version."""

    __tablename__ = "dataset_cases"
    __table_args__ = (
        UniqueConstraint("version_id", "key", name="uq_dataset_cases_key"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    version_id: Mapped[str] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class EvalRun(Base):
    """One run of a prompt version over a dataset version."""

    __tablename__ = "eval_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prompt: Mapped[str] = mapped_column(String(128), index=True)
    prompt_version: Mapped[str] = mapped_column(String(40))
    # The reference as given: a label shows which version it meant then.
    prompt_reference: Mapped[str] = mapped_column(String(200))
    dataset: Mapped[str] = mapped_column(String(128))
    dataset_version: Mapped[int] = mapped_column(Integer)
    evaluators: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    trials: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))


class EvalResult(Base):
    """One case in one trial of a run: the output and its scores."""

    __tablename__ = "eval_results"
    __table_args__ = (
        UniqueConstraint("run_id", "case_key", "trial", name="uq_eval_results"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"))
    case_key: Mapped[str] = mapped_column(String(200))
    trial: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    trace_id: Mapped[str | None] = mapped_column(String(32))
    must_pass: Mapped[bool] = mapped_column(Boolean, default=False)
    tags: Mapped[list[str] | None] = mapped_column(JSON)
    # [{"evaluator", "status", "value", "passed", "reason", "details"}]
    scores: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class EvalCacheEntry(Base):
    """A model output an eval produced, reused by reruns with the same key."""

    __tablename__ = "eval_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EvalGate(Base):
    """A gate decision: a candidate version against a baseline on a dataset."""

    __tablename__ = "eval_gates"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prompt: Mapped[str] = mapped_column(String(128), index=True)
    candidate_version: Mapped[str] = mapped_column(String(40))
    baseline_version: Mapped[str | None] = mapped_column(String(40))
    dataset: Mapped[str] = mapped_column(String(128))
    dataset_version: Mapped[int] = mapped_column(Integer)
    candidate_run_id: Mapped[str] = mapped_column(String(32))
    baseline_run_id: Mapped[str | None] = mapped_column(String(32))
    passed: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[str]] = mapped_column(JSON)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))
