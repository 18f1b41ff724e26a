"""Add rate limit and budget columns to api_keys.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("rpm", "tpm", "budget_usd", "budget_soft_usd", "budget_period")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("rpm", sa.Integer()))
        batch.add_column(sa.Column("tpm", sa.Integer()))
        batch.add_column(sa.Column("budget_usd", sa.Numeric(20, 9)))
        batch.add_column(sa.Column("budget_soft_usd", sa.Numeric(20, 9)))
        batch.add_column(sa.Column("budget_period", sa.String(10)))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        for column in COLUMNS:
            batch.drop_column(column)
