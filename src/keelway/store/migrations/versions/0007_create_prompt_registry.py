"""Create users, roles, the audit log, the prompt registry and experiments.

Revision ID: 0007
Revises: 0006
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        _when("created_at"),
        sa.Column("created_by", sa.String(200)),
        _when("disabled_at", nullable=True),
    )
    op.create_table(
        "role_grants",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "user_id",
            sa.String(32),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("role", sa.String(30), nullable=False),
        sa.Column("team", sa.String(200), nullable=False),
        _when("granted_at"),
        sa.Column("granted_by", sa.String(200)),
        sa.UniqueConstraint("user_id", "role", "team", name="uq_role_grants"),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _when("at"),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("target", sa.String(400)),
        sa.Column("team", sa.String(200)),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("details", sa.JSON()),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor"])
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_table(
        "prompts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("team", sa.String(200)),
        _when("created_at"),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "prompt_versions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "prompt_id",
            sa.String(32),
            sa.ForeignKey("prompts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("major", sa.Integer(), nullable=False),
        sa.Column("minor", sa.Integer(), nullable=False),
        sa.Column("patch", sa.Integer(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(80), nullable=False),
        sa.Column("bump", sa.String(10)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        _when("created_at"),
        sa.Column("message", sa.Text()),
        sa.Column("reviewed_by", sa.String(200)),
        _when("reviewed_at", nullable=True),
        sa.Column("review_comment", sa.Text()),
        sa.UniqueConstraint("prompt_id", "version", name="uq_prompt_versions"),
    )
    op.create_index("ix_prompt_versions_prompt_id", "prompt_versions", ["prompt_id"])
    op.create_table(
        "prompt_labels",
        sa.Column(
            "prompt_id",
            sa.String(32),
            sa.ForeignKey("prompts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("label", sa.String(63), primary_key=True),
        sa.Column(
            "version_id",
            sa.String(32),
            sa.ForeignKey("prompt_versions.id"),
            nullable=False,
        ),
        _when("moved_at"),
        sa.Column("moved_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "label_moves",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "prompt_id",
            sa.String(32),
            sa.ForeignKey("prompts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("label", sa.String(63), nullable=False),
        sa.Column("from_version_id", sa.String(32)),
        sa.Column("to_version_id", sa.String(32)),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        _when("at"),
    )
    op.create_index(
        "ix_label_moves_prompt_label", "label_moves", ["prompt_id", "label"]
    )
    op.create_table(
        "registry_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(
        sa.table(
            "registry_state",
            sa.column("id", sa.Integer()),
            sa.column("generation", sa.BigInteger()),
        ),
        [{"id": 1, "generation": 0}],
    )
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("prompt", sa.String(128), nullable=False),
        sa.Column("label", sa.String(63), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("shadow_version", sa.String(40)),
        sa.Column("sample_rate", sa.Float(), nullable=False),
        sa.Column("sticky", sa.String(20), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("min_samples", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text()),
        _when("created_at"),
        sa.Column("created_by", sa.String(200), nullable=False),
        _when("stopped_at", nullable=True),
    )
    op.create_index("ix_experiments_prompt", "experiments", ["prompt"])
    op.create_table(
        "shadow_samples",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "experiment_id",
            sa.String(32),
            sa.ForeignKey("experiments.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("shadow_trace_id", sa.String(32)),
        sa.Column("live_version", sa.String(40), nullable=False),
        sa.Column("shadow_version", sa.String(40), nullable=False),
        sa.Column("live_output", sa.Text()),
        sa.Column("shadow_output", sa.Text()),
        sa.Column("live_latency_ms", sa.Float()),
        sa.Column("shadow_latency_ms", sa.Float()),
        sa.Column("live_cost_usd", sa.Float()),
        sa.Column("shadow_cost_usd", sa.Float()),
        sa.Column("shadow_status", sa.String(20), nullable=False),
        sa.Column("shadow_error", sa.Text()),
        _when("created_at"),
    )
    op.create_index(
        "ix_shadow_samples_experiment_id", "shadow_samples", ["experiment_id"]
    )
    op.create_index("ix_shadow_samples_trace_id", "shadow_samples", ["trace_id"])
    op.create_table(
        "trace_scores",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("comment", sa.Text()),
        sa.Column("author", sa.String(200)),
        _when("created_at"),
    )
    op.create_index("ix_trace_scores_trace_id", "trace_scores", ["trace_id"])
    with op.batch_alter_table("traces") as batch:
        batch.add_column(sa.Column("prompt_version", sa.String(40)))
        batch.add_column(sa.Column("experiment", sa.String(128)))
        batch.add_column(sa.Column("variant", sa.String(100)))
        batch.create_index("ix_traces_experiment", ["experiment"])


def downgrade() -> None:
    with op.batch_alter_table("traces") as batch:
        batch.drop_index("ix_traces_experiment")
        batch.drop_column("variant")
        batch.drop_column("experiment")
        batch.drop_column("prompt_version")
    for table in (
        "trace_scores",
        "shadow_samples",
        "experiments",
        "registry_state",
        "label_moves",
        "prompt_labels",
        "prompt_versions",
        "prompts",
        "audit_events",
        "role_grants",
        "users",
    ):
        op.drop_table(table)
