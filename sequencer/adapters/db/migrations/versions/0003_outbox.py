"""the outbox: send-attempt columns on drafts, and the mailboxes table (caps, min_gap lock)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DRAFT_COLUMNS = (
    ("attempts", sa.Integer(), dict(nullable=False, server_default=sa.text("0"))),
    ("next_attempt_at", sa.DateTime(timezone=True), {}),
    ("mailbox_key", sa.String(length=400), {}),
    ("claimed_at", sa.DateTime(timezone=True), {}),
    ("data_started_at", sa.DateTime(timezone=True), {}),
    ("sent_at", sa.DateTime(timezone=True), {}),
    ("smtp_reply", sa.Text(), {}),
    ("last_error", sa.Text(), {}),
)


def upgrade() -> None:
    op.create_table(
        "mailboxes",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("next_send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_mailboxes")),
    )
    with op.batch_alter_table("drafts", schema=None) as batch_op:
        for name, type_, extra in _DRAFT_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=extra.get("nullable", True),
                                          server_default=extra.get("server_default")))
        batch_op.create_index(
            "ix_drafts_mailbox_key_sent_at", ["mailbox_key", "sent_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("drafts", schema=None) as batch_op:
        batch_op.drop_index("ix_drafts_mailbox_key_sent_at")
        for name, _, _ in reversed(_DRAFT_COLUMNS):
            batch_op.drop_column(name)
    op.drop_table("mailboxes")
