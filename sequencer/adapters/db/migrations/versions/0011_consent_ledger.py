"""The consent ledger, and flags a person can clear or confirm

``consent_changes``: every grant or revocation of consent to name a referrer (referrer-wide or
for one prospect), who made it, when and via what; the newest that applies wins at planning,
drafting and sending. ``referrer_flags`` gains ``state`` (open | confirmed | cleared) and who
resolved it when: an open or confirmed flag keeps the referrer from being named anywhere.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("referrer_id", sa.String(length=200), nullable=False),
        sa.Column("prospect_key", sa.String(length=320), nullable=True),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_changes")),
    )
    op.create_index(
        op.f("ix_consent_changes_referrer_id"), "consent_changes", ["referrer_id"], unique=False
    )
    with op.batch_alter_table("referrer_flags") as batch:
        batch.add_column(
            sa.Column(
                "state", sa.String(length=20), server_default=sa.text("'open'"), nullable=False
            )
        )
        batch.add_column(sa.Column("resolved_by", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("referrer_flags") as batch:
        batch.drop_column("resolved_at")
        batch.drop_column("resolved_by")
        batch.drop_column("state")
    op.drop_index(op.f("ix_consent_changes_referrer_id"), table_name="consent_changes")
    op.drop_table("consent_changes")
