"""drafts.kind and note_mentions: a note to a referrer is its own kind of message, not a step

Before, a thank-you note was a draft at ``step_index`` 1000 (the ``NOTE_STEP`` sentinel), one
per referral: reports showed it as "step 1001" and counted the prospect's replies against it.
Now ``drafts.kind`` is ``step`` or ``note``; a note has ``step_index`` -1, and
``note_mentions`` lists the prospects it thanks the referrer for (one note may name several;
each prospect is in at most one note). Existing notes are converted, with their one mention.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_NOTE_STEP = 1000


def upgrade() -> None:
    with op.batch_alter_table("drafts") as batch:
        batch.add_column(
            sa.Column(
                "kind", sa.String(length=10), nullable=False, server_default=sa.text("'step'")
            )
        )
    op.create_table(
        "note_mentions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=False),
        sa.Column("referrer_key", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["draft_id"],
            ["drafts.id"],
            name=op.f("fk_note_mentions_draft_id_drafts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollments.id"],
            name=op.f("fk_note_mentions_enrollment_id_enrollments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_note_mentions")),
        sa.UniqueConstraint("enrollment_id", name=op.f("uq_note_mentions_enrollment_id")),
    )
    op.create_index("ix_note_mentions_referrer_key", "note_mentions", ["referrer_key"])
    # Existing notes: kind note, step -1, and the prospect each one was drafted for.
    op.execute(
        sa.text(
            "INSERT INTO note_mentions (draft_id, enrollment_id, referrer_key, created_at) "
            "SELECT id, enrollment_id, lower(to_email), created_at FROM drafts "
            "WHERE step_index >= :note"
        ).bindparams(note=OLD_NOTE_STEP)
    )
    op.execute(
        sa.text(
            "UPDATE drafts SET kind = 'note', step_index = -1 WHERE step_index >= :note"
        ).bindparams(note=OLD_NOTE_STEP)
    )


def downgrade() -> None:
    op.execute(
        sa.text("UPDATE drafts SET step_index = :note WHERE kind = 'note'").bindparams(
            note=OLD_NOTE_STEP
        )
    )
    op.drop_index("ix_note_mentions_referrer_key", table_name="note_mentions")
    op.drop_table("note_mentions")
    with op.batch_alter_table("drafts") as batch:
        batch.drop_column("kind")
