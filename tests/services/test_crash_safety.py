"""A sender killed with SIGKILL mid-batch: nothing is delivered twice and nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sequencer.core.states import DraftState
from sequencer.services.sending import CLAIM_BATCH, SendConfig, sweep
from tests.cli_helpers import Cli, init_example
from tests.smtp_sink import Sink

# The senders are gone: their claims are stale at once (staleness is on the DB clock).
STALE_NOW = timedelta(0)

MON = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
N = 30


def test_a_killed_sender_never_sends_twice_and_loses_nothing(
    db_url, tmp_path: Path, smtp_sink: Sink, uow_factory
):
    cli = Cli(db_url, tmp_path)
    yaml = init_example(cli, tmp_path / "camp")
    rows = "".join(f"p{i}@bulk.example,P{i},X,,,America/New_York,\n" for i in range(N))
    refs = "".join(f"james-hervin,p{i}@bulk.example,5,your former colleague\n" for i in range(N))
    for name, extra in (("prospects.csv", rows), ("referrals.csv", refs)):
        path = yaml.parent / name
        path.write_text(path.read_text() + extra)
    text = (
        yaml.read_text()
        .replace("port: 2525", f"port: {smtp_sink.port}")
        .replace("min_gap: 90s", "min_gap: 0s")
    )
    yaml.write_text(text.replace("approval: required", "approval: auto"))
    cli("launch", str(yaml), "--now", MON.isoformat())

    smtp_sink.handler.delay = 0.15  # slow enough to be killed mid-batch
    env = {**os.environ, **cli.env, "PYTHONUNBUFFERED": "1"}  # the database, key and base URL
    with subprocess.Popen(
        [sys.executable, "-m", "sequencer.adapters.cli.main", "tick", "--now", MON.isoformat()],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        deadline = time.monotonic() + 60
        while len(smtp_sink.handler.received) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    smtp_sink.handler.delay = 0
    delivered_before = len(smtp_sink.handler.received)
    assert 8 <= delivered_before < N + 4, "the kill should land mid-batch"

    # The sweeper judges what the dead sender left in SENDING; a later run sends the rest.
    report = sweep(
        uow_factory, SendConfig(env={}, stale_after=STALE_NOW), MON + timedelta(minutes=11)
    )
    # One sender: at most one claimed batch was in flight, and DATA had started for at most one.
    assert report.released + report.attention <= CLAIM_BATCH and report.attention <= 1
    cli("tick", "--now", (MON + timedelta(minutes=15)).isoformat())

    ids = smtp_sink.handler.message_ids()
    assert len(ids) == len(set(ids)), "a message was delivered twice"
    with uow_factory() as uow:
        drafts = uow.repo.list_drafts(list(DraftState))
    states = {d.draft.state for d in drafts}
    assert states <= {DraftState.SENT, DraftState.NEEDS_ATTENTION}, states
    assert len(drafts) == N + 4  # every due first step has a draft (the Tokyo and Paris ones wait)
    sent = {d.draft.message_id for d in drafts if d.draft.state is DraftState.SENT}
    assert sent <= set(ids)  # every SENT draft really reached the server
    missing = [d for d in drafts if d.draft.message_id not in set(ids)]
    assert all(d.draft.state is DraftState.NEEDS_ATTENTION for d in missing)


def test_sigterm_lets_the_runner_finish_the_message_in_flight(
    db_url, tmp_path: Path, smtp_sink: Sink, uow_factory
):
    cli = Cli(db_url, tmp_path)
    yaml = init_example(cli, tmp_path / "camp")
    text = (
        yaml.read_text()
        .replace("port: 2525", f"port: {smtp_sink.port}")
        .replace("min_gap: 90s", "min_gap: 0s")
    )
    text = text.replace("timezone: prospect", "timezone: UTC").replace(
        "approval: required", "approval: auto"
    )
    text = text.replace(
        "days: [mon, tue, wed, thu, fri]", "days: [mon, tue, wed, thu, fri, sat, sun]"
    )
    yaml.write_text(text.replace('start: "09:00", end: "17:00"', 'start: "00:00", end: "23:59"'))
    cli("launch", str(yaml))
    smtp_sink.handler.delay = 0.5
    env = {**os.environ, **cli.env}  # the database, key and base URL
    with subprocess.Popen(
        [sys.executable, "-m", "sequencer.adapters.cli.main", "run", "--interval", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        deadline = time.monotonic() + 60
        while not smtp_sink.handler.received and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    with uow_factory() as uow:
        drafts = uow.repo.list_drafts(list(DraftState))
    assert not [d for d in drafts if d.draft.state is DraftState.SENDING]  # nothing left mid-send
    sent = [d for d in drafts if d.draft.state is DraftState.SENT]
    assert 1 <= len(sent) < 6  # it stopped early, after finishing what it had started
    assert {d.draft.message_id for d in sent} == set(smtp_sink.handler.message_ids())
