"""Sessions can be revoked; webhooks are signed with their own secret

* ``reps.session_epoch``: part of every session cookie's version; signing out, a password
  change or ``refseq rep remove`` move it on, and every older cookie of that rep stops working.
* ``webhook_deliveries.secret_env``: the environment variable holding the endpoint's own
  signing secret (``routing.webhook_secret_env``), never the key that signs sessions.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reps") as batch:
        batch.add_column(
            sa.Column("session_epoch", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("secret_env", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("secret_env")
    with op.batch_alter_table("reps") as batch:
        batch.drop_column("session_epoch")
