"""Task shims: IDs (or nothing) in, one service call, nothing out."""

from __future__ import annotations

from sequencer import bootstrap
from sequencer.config import Settings
from sequencer.services.drafting import draft_due
from workers.app import app


@app.task(name="refseq.draft_due", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def draft_due_task() -> int:
    settings = Settings.from_env()
    report = draft_due(
        bootstrap.uow_factory(settings), bootstrap.draft_config(settings), bootstrap.utcnow()
    )
    return report.created
