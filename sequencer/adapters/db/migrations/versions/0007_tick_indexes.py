"""A tick costs the same at 1M enrollments as at 10k

* ``ix_enrollments_state_paused_until``: ``resume_paused`` (every drafting tick) finds the
  out-of-office pauses that ran out by index instead of reading every paused enrollment.
* Drafted steps leave the due index: ``SqlRepository.add_draft`` now clears the enrollment's
  ``next_due_at`` when it drafts its current step; this does the same for the enrollments
  drafted before this revision, so ``due_enrollments`` no longer walks past drafts waiting for
  approval or for the send window.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_enrollments_state_paused_until", "enrollments", ["state", "paused_until"])
    op.execute(
        "UPDATE enrollments SET next_due_at = NULL WHERE next_due_at IS NOT NULL AND EXISTS"
        " (SELECT 1 FROM drafts WHERE drafts.enrollment_id = enrollments.id"
        " AND drafts.step_index = enrollments.steps_done)"
    )


def downgrade() -> None:
    # The cleared due times are not restored: an enrollment whose step is drafted is not due
    # under either revision (due_enrollments also checks that no draft exists).
    op.drop_index("ix_enrollments_state_paused_until", table_name="enrollments")
