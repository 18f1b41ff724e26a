"""Create the traces table and its attribution indexes.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXED = (
    "started_at",
    "model",
    "key_id",
    "team",
    "user",
    "use_case",
    "segment",
    "prompt",
)


def upgrade() -> None:
    op.create_table(
        "traces",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("route", sa.String(40), nullable=False),
        sa.Column("model", sa.String(200)),
        sa.Column("deployment", sa.String(200)),
        sa.Column("provider", sa.String(40)),
        sa.Column("upstream_model", sa.String(200)),
        sa.Column("key_id", sa.String(32)),
        sa.Column("key_name", sa.String(200)),
        sa.Column("team", sa.String(200)),
        sa.Column("user", sa.String(200)),
        sa.Column("use_case", sa.String(200)),
        sa.Column("segment", sa.String(200)),
        sa.Column("prompt", sa.String(200)),
        sa.Column("tags", sa.JSON()),
        sa.Column("attributes", sa.JSON()),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(100)),
        sa.Column("error_message", sa.Text()),
        sa.Column("input_tokens", sa.Integer()),
        sa.Column("cache_read_tokens", sa.Integer()),
        sa.Column("cache_write_tokens", sa.Integer()),
        sa.Column("output_tokens", sa.Integer()),
        sa.Column("reasoning_tokens", sa.Integer()),
        sa.Column("usage_source", sa.String(20)),
        sa.Column("usage_tokenizer", sa.String(100)),
        sa.Column("cost_usd", sa.Float()),
        sa.Column("price_table_version", sa.String(100)),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float()),
        sa.Column("payloads", sa.String(20), nullable=False),
        sa.Column("request_body", sa.Text()),
        sa.Column("request_size", sa.Integer()),
        sa.Column("request_truncated", sa.Boolean(), nullable=False),
        sa.Column("response_body", sa.Text()),
        sa.Column("response_size", sa.Integer()),
        sa.Column("response_truncated", sa.Boolean(), nullable=False),
    )
    for column in INDEXED:
        op.create_index(f"ix_traces_{column}", "traces", [column])


def downgrade() -> None:
    op.drop_table("traces")
