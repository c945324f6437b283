"""Inbound messages nobody acted on are reviewed by a person

``inbound_messages.reviewed_at`` / ``reviewed_by``: a message that is neither acted on nor
matched (``unhandled`` or ``unmatched``) stays in front of a person (``refseq inbox
--unhandled``, the web inbox page) until someone marks it handled.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("reviewed_by", sa.String(320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_column("reviewed_by")
        batch.drop_column("reviewed_at")
