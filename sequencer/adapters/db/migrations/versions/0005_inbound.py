"""inbound mail: imap checkpoints, inbound messages, handoffs, webhook deliveries, referrer flags

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.JSON[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("soft_bounces", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    op.create_table(
        "imap_checkpoints",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        _ts("polled_at", nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_imap_checkpoints")),
    )
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=300), nullable=False),
        sa.Column("mailbox_key", sa.String(length=400), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        _ts("received_at", nullable=False),
        _ts("fetched_at", nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("klass", sa.String(length=20), nullable=True),
        sa.Column("intent", sa.String(length=20), nullable=True),
        sa.Column("evidence", _json(), nullable=False),
        sa.Column("extracted", _json(), nullable=False),
        sa.Column("from_addr", sa.String(length=320), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(length=400), nullable=True),
        sa.Column("enrollment_id", sa.Integer(), nullable=True),
        sa.Column("matched_by", sa.String(length=40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("handled_at"),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollments.id"],
            name=op.f("fk_inbound_messages_enrollment_id_enrollments"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_inbound_messages_dedupe_key")),
    )
    op.create_index("ix_inbound_messages_status", "inbound_messages", ["status"])
    op.create_index("ix_inbound_messages_enrollment_id", "inbound_messages", ["enrollment_id"])
    op.create_index("ix_inbound_messages_from_addr", "inbound_messages", ["from_addr"])
    op.create_table(
        "handoffs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("rep_email", sa.String(length=320), nullable=False),
        sa.Column("intent", sa.String(length=20), nullable=False),
        sa.Column("reply_text", sa.Text(), nullable=False),
        sa.Column("redirect_to", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        _ts("notified_at"),
        _ts("created_at", nullable=False),
        _ts("handled_at"),
        sa.Column("handled_by", sa.String(length=320), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_handoffs_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollments.id"],
            name=op.f("fk_handoffs_enrollment_id_enrollments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["inbound_messages.id"],
            name=op.f("fk_handoffs_inbound_id_inbound_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoffs")),
        sa.UniqueConstraint("inbound_id", name=op.f("uq_handoffs_inbound_id")),
    )
    op.create_index("ix_handoffs_rep_email_state", "handoffs", ["rep_email", "state"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("handoff_id", sa.Integer(), nullable=False),
        sa.Column("url_env", sa.String(length=200), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("next_attempt_at"),
        _ts("created_at", nullable=False),
        _ts("delivered_at"),
        sa.ForeignKeyConstraint(
            ["handoff_id"],
            ["handoffs.id"],
            name=op.f("fk_webhook_deliveries_handoff_id_handoffs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("handoff_id", name=op.f("uq_webhook_deliveries_handoff_id")),
    )
    op.create_index("ix_webhook_deliveries_status", "webhook_deliveries", ["status"])
    op.create_table(
        "referrer_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("referrer_id", sa.String(length=200), nullable=False),
        sa.Column("prospect_email", sa.String(length=320), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _ts("created_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_referrer_flags_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["inbound_messages.id"],
            name=op.f("fk_referrer_flags_inbound_id_inbound_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrer_flags")),
    )


def downgrade() -> None:
    op.drop_table("referrer_flags")
    op.drop_index("ix_webhook_deliveries_status", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_handoffs_rep_email_state", table_name="handoffs")
    op.drop_table("handoffs")
    op.drop_index("ix_inbound_messages_from_addr", table_name="inbound_messages")
    op.drop_index("ix_inbound_messages_enrollment_id", table_name="inbound_messages")
    op.drop_index("ix_inbound_messages_status", table_name="inbound_messages")
    op.drop_table("inbound_messages")
    op.drop_table("imap_checkpoints")
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_column("soft_bounces")
