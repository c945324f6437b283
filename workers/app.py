"""The Celery app. Broker from REFSEQ_BROKER_URL; beat drives the due-work schedule.

The database is the queue: a task only says "look now" (or "look at this mailbox") and is safe
to run twice or concurrently. Sends are never scheduled with an ETA or countdown.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from sequencer.config import Settings


def make_app(settings: Settings | None = None, **overrides: Any) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("refseq", broker=settings.broker_url or "memory://", include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # Redelivery of a task whose worker died; must exceed the longest task.
        broker_transport_options={"visibility_timeout": 3600},
        timezone="UTC",
        beat_schedule={
            "draft-due-steps": {"task": "refseq.draft_due", "schedule": 60.0},
            "poll-mailboxes": {"task": "refseq.poll", "schedule": 60.0},
            "dispatch-sends": {"task": "refseq.dispatch_sends", "schedule": 60.0},
            "sweep-stuck-sends": {"task": "refseq.sweep", "schedule": 300.0},
        },
    )
    app.conf.update(overrides)
    return app


app = make_app()
