"""finer subscriptions: to one step of a pipeline, one output's changes, a set of parameter values

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("step", sa.String(length=63), nullable=True))
        batch.add_column(sa.Column("output", sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column("params", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("params")
        batch.drop_column("output")
        batch.drop_column("step")
