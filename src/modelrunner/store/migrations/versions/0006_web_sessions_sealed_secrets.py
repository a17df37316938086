"""web sessions kept server-side; webhook secrets encrypted at rest

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

The webhook secrets stored in clear until now are encrypted with the secrets key that
``migrate.upgrade`` is handed (auth/secret_keys.py); a store holding some cannot be upgraded
without it, so none is left in clear or lost.
"""

from __future__ import annotations

from typing import Protocol

import sqlalchemy as sa
from alembic import context, op

from modelrunner.errors import ModelrunnerError

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_SUBSCRIPTIONS = sa.table("subscriptions", sa.column("id", _ID), sa.column("secret", sa.Text()))


class _Keys(Protocol):
    def encrypt(self, clear: str) -> str: ...

    def decrypt(self, sealed: str) -> str: ...


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_web_sessions_secret_hash")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_web_sessions_user_id", ["user_id"], unique=False)
    _rewrite_secrets("encrypt")


def downgrade() -> None:
    _rewrite_secrets("decrypt")
    op.drop_table("web_sessions")


def _rewrite_secrets(how: str) -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_SUBSCRIPTIONS.c.id, _SUBSCRIPTIONS.c.secret).where(_SUBSCRIPTIONS.c.secret.is_not(None))
    ).all()
    if not rows:
        return
    keys: _Keys | None = context.config.attributes.get("secret_keys")
    if keys is None:
        raise ModelrunnerError(
            "this store holds webhook secrets, which revision 0006 encrypts: upgrade it with "
            "`modelrunner db upgrade` or `modelrunner serve`, which bring the secrets key"
        )
    rewrite = keys.encrypt if how == "encrypt" else keys.decrypt
    for subscription_id, secret in rows:
        connection.execute(
            sa.update(_SUBSCRIPTIONS).where(_SUBSCRIPTIONS.c.id == subscription_id).values(secret=rewrite(secret))
        )
