"""The rep's handoff notice is claimed before it is sent

``handoffs.notice_claimed_at``: two workers polling at once (a slow poll overlapping the next)
no longer both email the rep the same notice. A claim older than ten minutes (its worker died)
may be taken again, so a crash delays a notice instead of losing it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("handoffs") as batch:
        batch.add_column(sa.Column("notice_claimed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_column("notice_claimed_at")
