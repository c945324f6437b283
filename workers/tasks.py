"""Task shims: IDs (or nothing) in, one service call, nothing out. Each has a CLI twin
(`refseq tick --only draft|send|sweep`)."""

from __future__ import annotations

import threading
from functools import cache

from sequencer import bootstrap
from sequencer.config import Settings
from sequencer.services.drafting import draft_due
from sequencer.services.runner import Deps
from sequencer.services.sending import due_mailboxes, send_due, sweep
from workers.app import app

_POLLING = threading.Lock()


@cache
def _deps() -> Deps:
    """One set per worker process: its SMTP connections are reused across tasks."""
    return bootstrap.runner_deps(Settings.from_env())


@app.task(name="refseq.draft_due", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def draft_due_task() -> None:
    d = _deps()
    draft_due(d.uow_factory, d.draft_cfg, bootstrap.utcnow())


@app.task(name="refseq.dispatch_sends", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def dispatch_sends_task() -> None:
    for key in due_mailboxes(_deps().uow_factory, bootstrap.utcnow()):
        send_mailbox_task.delay(key)


@app.task(name="refseq.send_mailbox", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def send_mailbox_task(mailbox_key: str) -> None:
    d = _deps()
    # One mailer per mailbox, held by one task at a time: safe under `--pool threads`, where
    # tasks for different mailboxes run at once (the way to send across many slow servers).
    with d.mailer_lease(mailbox_key) as mailer:
        if mailer is not None:  # else this mailbox is being sent by another thread already
            send_due(
                d.uow_factory,
                mailer,
                d.send_cfg,
                bootstrap.utcnow(),
                d.rng,
                only_mailbox=mailbox_key,
                before_batch=d.before_batch(),  # the poll beat may be a minute away
            )


@app.task(name="refseq.poll", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def poll_task() -> None:
    """Read the reps' mailboxes, act on replies, then notify reps and fire webhooks."""
    from sequencer.services.runner import run_pass

    # The IMAP reader and the notice mailer are one per process: under `--pool threads` a
    # second poll while one runs has nothing to add (the database is the queue), so it skips.
    if _POLLING.acquire(blocking=False):
        try:
            run_pass(_deps(), bootstrap.utcnow(), ["poll"])
        finally:
            _POLLING.release()


@app.task(name="refseq.sweep", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def sweep_task() -> None:
    d = _deps()
    sweep(d.uow_factory, d.send_cfg, bootstrap.utcnow())
