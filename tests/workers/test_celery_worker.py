"""A real Celery worker on the local Redis drains the outbox (and beat's tasks are wired)."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker

from tests.cli_helpers import Cli, init_example
from tests.smtp_sink import Sink

REDIS_URL = os.environ.get("REFSEQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def _always_open_window(text: str) -> str:
    """Tasks read the real clock: open the window all day, every day, in UTC."""
    text = text.replace("timezone: prospect", "timezone: UTC")
    text = text.replace(
        "days: [mon, tue, wed, thu, fri]", "days: [mon, tue, wed, thu, fri, sat, sun]"
    )
    return text.replace('start: "09:00", end: "17:00"', 'start: "00:00", end: "23:59"')


def _reset_pool(app) -> None:
    """Drop pooled broker connections, so the next test's key prefix takes effect."""
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def celery_app(db_url: str, monkeypatch: pytest.MonkeyPatch):
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc}); start redis-server")
    monkeypatch.setenv("REFSEQ_DATABASE_URL", db_url)
    monkeypatch.setenv("REFSEQ_SECRET_KEY", "test-secret-key-0123456789")
    monkeypatch.setenv("REFSEQ_BASE_URL", "https://refseq.test.example")
    from workers import tasks
    from workers.app import app

    tasks._deps.cache_clear()
    _reset_pool(app)
    prefix = f"refseq-test-{uuid.uuid4().hex[:8]}:"  # never touch anyone else's keys
    app.conf.update(
        broker_url=REDIS_URL,
        broker_transport_options={"global_keyprefix": prefix, "visibility_timeout": 60},
    )
    yield app
    tasks._deps().close()
    tasks._deps.cache_clear()
    _reset_pool(app)
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def test_a_celery_worker_drafts_and_sends_everything_due(
    celery_app, db_url, tmp_path: Path, smtp_sink: Sink
):
    now = datetime.now(UTC)
    if now.hour == 23 and now.minute >= 58:  # the window above closes for one minute a day
        time.sleep(125)
    cli = Cli(db_url, tmp_path)
    yaml = init_example(cli, tmp_path / "camp")
    text = yaml.read_text().replace("port: 2525", f"port: {smtp_sink.port}")
    text = text.replace("min_gap: 90s", "min_gap: 0s").replace(
        "approval: required", "approval: auto"
    )
    yaml.write_text(_always_open_window(text))
    cli("launch", str(yaml))

    from workers.tasks import dispatch_sends_task, draft_due_task

    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        draft_due_task.delay()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(smtp_sink.handler.received) < 6:
            dispatch_sends_task.delay()
            time.sleep(0.5)
    ids = smtp_sink.handler.message_ids()
    assert len(ids) == 6 and len(set(ids)) == 6  # every first step, each exactly once
    status = cli.json("status")
    (campaign,) = status["campaigns"]
    assert (campaign["sent"], campaign["approved_due"], campaign["needs_attention"]) == (6, 0, 0)


def test_beat_schedules_the_four_jobs_and_no_send_eta():
    from workers.app import app

    tasks = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert tasks == {"refseq.draft_due", "refseq.poll", "refseq.dispatch_sends", "refseq.sweep"}
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
