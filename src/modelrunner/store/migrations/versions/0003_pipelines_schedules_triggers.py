"""pipelines, schedules and triggers: run kinds and parents, schedule states, trigger cursors, firings

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=8), server_default="run", nullable=False))
        batch_op.add_column(sa.Column("parent_id", _ID, nullable=True))
        batch_op.add_column(sa.Column("step", sa.String(length=63), nullable=True))
        batch_op.add_column(sa.Column("item_key", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("item", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("plan", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("origin", sa.String(length=160), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_runs_parent_id_runs"), "runs", ["parent_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_runs_parent_id_id"), ["parent_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_origin_id"), ["origin", "id"], unique=False)

    op.create_table(
        "schedule_states",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("cron", sa.String(length=160), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_schedule_states")),
    )
    op.create_table(
        "trigger_cursors",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_trigger_cursors")),
    )
    op.create_table(
        "firings",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(length=140), nullable=False),
        sa.Column("cause", sa.String(length=160), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("run_ids", sa.JSON(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firings")),
        sa.UniqueConstraint("rule", "cause", name=op.f("uq_firings_rule_cause")),
    )
    with op.batch_alter_table("firings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_firings_rule_id"), ["rule", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_firings_status_id"), ["status", "id"], unique=False)


def downgrade() -> None:
    op.drop_table("firings")
    op.drop_table("trigger_cursors")
    op.drop_table("schedule_states")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_origin_id"))
        batch_op.drop_index(batch_op.f("ix_runs_parent_id_id"))
        batch_op.drop_constraint(batch_op.f("fk_runs_parent_id_runs"), type_="foreignkey")
        for column in ("origin", "plan", "item", "item_key", "step", "parent_id", "kind"):
            batch_op.drop_column(column)
