"""The Celery app. Broker from REFSEQ_BROKER_URL; beat drives the due-work schedule.

The database is the queue: a task only says "look now" (or "look at this mailbox") and is safe
to run twice or concurrently. Sends are never scheduled with an ETA or countdown.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import celeryd_init

from sequencer.config import Settings, env_int
from sequencer.memlimit import limit_address_space
from workers import broker

broker.install()  # before any connection resolves the redis:// transport


def transport_options() -> dict[str, int]:
    """Redis redelivers a task whose worker died once ``visibility_timeout`` seconds have passed
    (it must exceed the longest task). ``REFSEQ_VISIBILITY_TIMEOUT`` overrides the hour (tests,
    tuning); below a minute the redelivery sweep also runs every second instead of every 100 s.
    """
    timeout = env_int(os.environ, "REFSEQ_VISIBILITY_TIMEOUT", 3600, minimum=1)
    options = {"visibility_timeout": timeout}
    if timeout < 60:
        options |= {"unacked_restore_interval": 1, "unacked_restore_throttle": 1}
    return options


def make_app(settings: Settings | None = None, **overrides: Any) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("refseq", broker=settings.broker_url or "memory://", include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(),
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


def _limit_memory(**_: Any) -> None:
    """Templates render in this process and its pool's children (they inherit it)."""
    limit_address_space()


celeryd_init.connect(_limit_memory, weak=False)  # `celery worker` only
