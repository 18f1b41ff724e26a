"""Create datasets, eval runs and results, the eval output cache and gates.

Revision ID: 0008
Revises: 0007
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("label_moves") as batch:
        batch.add_column(sa.Column("eval_gate_id", sa.String(32), nullable=True))
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("team", sa.String(200)),
        sa.Column("description", sa.Text()),
        _when("created_at"),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "dataset_id",
            sa.String(32),
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("case_count", sa.Integer(), nullable=False),
        sa.Column("evaluators", sa.JSON()),
        sa.Column("message", sa.Text()),
        _when("created_at"),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("dataset_id", "version", name="uq_dataset_versions"),
    )
    op.create_table(
        "dataset_cases",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "version_id",
            sa.String(32),
            sa.ForeignKey("dataset_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.UniqueConstraint("version_id", "key", name="uq_dataset_cases_key"),
    )
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("prompt", sa.String(128), nullable=False),
        sa.Column("prompt_version", sa.String(40), nullable=False),
        sa.Column("prompt_reference", sa.String(200), nullable=False),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("dataset_version", sa.Integer(), nullable=False),
        sa.Column("evaluators", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("summary", sa.JSON()),
        _when("started_at"),
        _when("finished_at", nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_eval_runs_prompt", "eval_runs", ["prompt"])
    op.create_table(
        "eval_results",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "run_id",
            sa.String(32),
            sa.ForeignKey("eval_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("case_key", sa.String(200), nullable=False),
        sa.Column("trial", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("output", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("latency_ms", sa.Float()),
        sa.Column("cost_usd", sa.Float()),
        sa.Column("input_tokens", sa.Integer()),
        sa.Column("output_tokens", sa.Integer()),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("must_pass", sa.Boolean(), nullable=False),
        sa.Column("tags", sa.JSON()),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.UniqueConstraint("run_id", "case_key", "trial", name="uq_eval_results"),
    )
    op.create_table(
        "eval_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        _when("created_at"),
    )
    op.create_table(
        "eval_gates",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("prompt", sa.String(128), nullable=False),
        sa.Column("candidate_version", sa.String(40), nullable=False),
        sa.Column("baseline_version", sa.String(40)),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("dataset_version", sa.Integer(), nullable=False),
        sa.Column("candidate_run_id", sa.String(32), nullable=False),
        sa.Column("baseline_run_id", sa.String(32)),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        _when("created_at"),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_eval_gates_prompt", "eval_gates", ["prompt"])


def downgrade() -> None:
    op.drop_index("ix_eval_gates_prompt", "eval_gates")
    op.drop_table("eval_gates")
    op.drop_table("eval_cache")
    op.drop_table("eval_results")
    op.drop_index("ix_eval_runs_prompt", "eval_runs")
    op.drop_table("eval_runs")
    op.drop_table("dataset_cases")
    op.drop_table("dataset_versions")
    op.drop_table("datasets")
    with op.batch_alter_table("label_moves") as batch:
        batch.drop_column("eval_gate_id")
