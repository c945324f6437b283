"""The Celery app. Broker from REFSEQ_BROKER_URL; beat runs the due-work tick every minute.

Tasks carry no state: the database is the queue, so a task only says "look now" and is safe to
run twice (drafts are unique per (enrollment, step)).
"""

from __future__ import annotations

from celery import Celery

from sequencer.config import Settings


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("refseq", broker=settings.broker_url or "memory://", include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        timezone="UTC",
        beat_schedule={
            "draft-due-steps": {"task": "refseq.draft_due", "schedule": 60.0},
        },
    )
    return app


app = make_app()
