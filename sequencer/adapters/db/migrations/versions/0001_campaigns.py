"""campaigns, enrollments, suppressions

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.JSON[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("name", name=op.f("uq_campaigns_name")),
    )
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("value", name=op.f("uq_suppressions_value")),
    )
    op.create_table(
        "enrollments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("prospect_key", sa.String(length=320), nullable=False),
        sa.Column("prospect_email", sa.String(length=320), nullable=False),
        sa.Column("prospect", _json(), nullable=False),
        sa.Column("referrer", _json(), nullable=False),
        sa.Column("referral", _json(), nullable=False),
        sa.Column("other_referrals", _json(), nullable=False),
        sa.Column("temperature", sa.String(length=16), nullable=False),
        sa.Column("sequence", sa.String(length=200), nullable=False),
        sa.Column("may_name_referrer", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("hold_reason", sa.Text(), nullable=True),
        sa.Column("steps_done", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_enrollments_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollments")),
        sa.UniqueConstraint(
            "campaign_id", "prospect_key", name=op.f("uq_enrollments_campaign_id_prospect_key")
        ),
    )
    op.create_index("ix_enrollments_prospect_key", "enrollments", ["prospect_key"])
    op.create_index("ix_enrollments_state_next_due_at", "enrollments", ["state", "next_due_at"])


def downgrade() -> None:
    op.drop_index("ix_enrollments_state_next_due_at", table_name="enrollments")
    op.drop_index("ix_enrollments_prospect_key", table_name="enrollments")
    op.drop_table("enrollments")
    op.drop_table("suppressions")
    op.drop_table("campaigns")
