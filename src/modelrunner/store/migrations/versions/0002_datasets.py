"""datasets: syncs, versions, the inputs of runs, events by type

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_ACTIVE_SYNC = sa.text("status IN ('queued', 'running')")


def upgrade() -> None:
    op.create_table(
        "dataset_syncs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("dataset", sa.String(length=63), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("walk_all", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("runner_id", sa.String(length=128), nullable=True),
        sa.Column("progress_fraction", sa.Float(), nullable=True),
        sa.Column("progress_message", sa.Text(), nullable=True),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_syncs")),
    )
    with op.batch_alter_table("dataset_syncs", schema=None) as batch_op:
        batch_op.create_index("ix_dataset_syncs_dataset_id", ["dataset", "id"], unique=False)
        batch_op.create_index("ix_dataset_syncs_status_id", ["status", "id"], unique=False)
        batch_op.create_index(
            "ux_dataset_syncs_active_dataset",
            ["dataset"],
            unique=True,
            sqlite_where=_ACTIVE_SYNC,
            postgresql_where=_ACTIVE_SYNC,
        )

    op.create_table(
        "dataset_versions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("dataset", sa.String(length=63), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("discovered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("total_size", sa.BigInteger(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("snapshot_uri", sa.Text(), nullable=True),
        sa.Column("sync_id", _ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["sync_id"], ["dataset_syncs.id"], name=op.f("fk_dataset_versions_sync_id_dataset_syncs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_versions")),
        sa.UniqueConstraint("dataset", "version", name=op.f("uq_dataset_versions_dataset_version")),
    )
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.create_index("ix_dataset_versions_dataset_time_id", ["dataset", "time", "id"], unique=False)

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inputs", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_type_id", ["type", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_type_id")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("inputs")
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_dataset_versions_dataset_time_id")
    op.drop_table("dataset_versions")
    with op.batch_alter_table("dataset_syncs", schema=None) as batch_op:
        batch_op.drop_index("ux_dataset_syncs_active_dataset", sqlite_where=_ACTIVE_SYNC, postgresql_where=_ACTIVE_SYNC)
        batch_op.drop_index("ix_dataset_syncs_status_id")
        batch_op.drop_index("ix_dataset_syncs_dataset_id")
    op.drop_table("dataset_syncs")
