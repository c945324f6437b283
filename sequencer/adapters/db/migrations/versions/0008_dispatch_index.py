"""The send dispatcher costs the same at 1M drafts as at 10k

``ix_drafts_campaign_id_state`` becomes ``ix_drafts_campaign_id_state_due_at``: the dispatcher
(``campaigns_with_due_drafts``, every minute) asks per campaign whether one approved draft is due,
one index seek each, instead of reading every approved draft (those waiting for the send window
included). The wider index still serves every query the old one did (same leading columns).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_drafts_campaign_id_state_due_at", "drafts", ["campaign_id", "state", "due_at"]
    )
    op.drop_index("ix_drafts_campaign_id_state", table_name="drafts")


def downgrade() -> None:
    op.create_index("ix_drafts_campaign_id_state", "drafts", ["campaign_id", "state"])
    op.drop_index("ix_drafts_campaign_id_state_due_at", table_name="drafts")
