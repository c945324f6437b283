"""A claim's moment on the database's clock

``drafts.claim_db_at``: when a sender claimed the draft, by the database's clock
(``CURRENT_TIMESTAMP`` on PostgreSQL; the local clock on SQLite). The sweeper judges a claim
stale by this clock only, so runners whose clocks differ, or a ``tick --now <future>``, no
longer take back claims that live senders are still working on. Rows claimed before this
revision keep NULL and are judged by ``claimed_at``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("drafts") as batch:
        batch.add_column(sa.Column("claim_db_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("drafts") as batch:
        batch.drop_column("claim_db_at")
