"""partial outputs: what an attempt that did not succeed had written, kept per attempt

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "partial_outputs",
        sa.Column("attempt_id", _ID, nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["attempt_id"], ["attempts.id"], name=op.f("fk_partial_outputs_attempt_id_attempts")),
        sa.PrimaryKeyConstraint("attempt_id", "path", name=op.f("pk_partial_outputs")),
    )


def downgrade() -> None:
    op.drop_table("partial_outputs")
