"""The fast send path keeps its promises (real SMTP on loopback, SQLite and PostgreSQL):

* the message is built once, at draft time (and again on every edit): what the prospect
  receives is exactly the stored bytes with the send time's Date: in front, and what a rep is
  shown (``refseq show``, the web) is that same message;
* a content change without new bytes drops the stored ones, and the sender builds them then;
* drafts are claimed a batch at a time when a mailbox has no min_gap, and a sender that stops
  (SIGTERM) or fails mid-batch hands the unsent ones straight back and keeps the sent ones SENT;
* the embedded runner sends from several mailboxes at once, one SMTP session each.
"""

from __future__ import annotations

import email
import email.policy
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sequencer.adapters.smtp import SmtpMailer
from sequencer.config import Settings
from sequencer.core.drafts import DraftConfig, with_date
from sequencer.core.ports import DraftView
from sequencer.core.states import DraftState
from sequencer.errors import ConfigError
from sequencer.services import approval
from sequencer.services.runner import Deps, run_pass
from sequencer.services.sending import CLAIM_BATCH, SendConfig, due_mailboxes, send_due, sweep
from tests.cli_helpers import Cli, init_example
from tests.smtp_sink import Sink

# The senders are gone: their claims are stale at once (staleness is on the DB clock).
STALE_NOW = timedelta(0)

MON = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York
SECRET = "test-secret-key-0123456789"
DRAFTS = DraftConfig(SECRET, "https://refseq.acme.example", Path("templates/email"))


def _bulk(folder: Path, prefix: str, n: int) -> None:
    """Replace the example's prospects with ``n`` of our own (all warm, via James, in NY)."""
    prospects = "email,first_name,last_name,title,company,timezone,industry\n" + "".join(
        f"{prefix}-p{i}@bulk.example,P{i},X,CTO,Co{i},America/New_York,banking\n" for i in range(n)
    )
    referrals = "referrer_id,prospect_email,strength,context\n" + "".join(
        f"james-hervin,{prefix}-p{i}@bulk.example,5,your former colleague\n" for i in range(n)
    )
    (folder / "prospects.csv").write_text(prospects)
    (folder / "referrals.csv").write_text(referrals)


def launch(
    cli: Cli, tmp_path: Path, sink: Sink, name: str = "q4-fintech-intros", n: int = 0, **kw: str
) -> Path:
    yaml = init_example(cli, tmp_path / name)
    if n:
        _bulk(yaml.parent, name, n)
    text = (
        yaml.read_text()
        .replace("port: 2525", f"port: {sink.port}")
        .replace("min_gap: 90s", f"min_gap: {kw.get('min_gap', '0s')}")
        .replace("campaign: q4-fintech-intros", f"campaign: {name}")
        .replace("username: dana}", f"username: {kw.get('user', 'dana')}}}")
    )
    if kw.get("auto", "yes") == "yes":
        text = text.replace("approval: required", "approval: auto")
    yaml.write_text(text)
    cli("launch", str(yaml), "--now", MON.isoformat())
    return yaml


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    c = Cli(db_url, tmp_path)
    c.env["REFSEQ_SECRET_KEY"] = SECRET
    return c


@pytest.fixture
def deps(uow_factory):
    made: list[Deps] = []

    def make(concurrency: int = 1) -> Deps:
        d = Deps(
            uow_factory=uow_factory,
            draft_cfg=DRAFTS,
            send_cfg=SendConfig(env={}),
            mailer_factory=lambda: SmtpMailer(retry_attempts=1, sleep=lambda s: None),
            rng=random.Random(5),
            send_concurrency=concurrency,
        )
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def drafts(uow_factory, *states: DraftState) -> list[DraftView]:
    with uow_factory() as uow:
        return uow.repo.list_drafts(states or list(DraftState))


def test_the_prospect_receives_exactly_the_bytes_stored_at_draft_time(
    cli, tmp_path, smtp_sink, uow_factory, deps
):
    launch(cli, tmp_path, smtp_sink)
    run_pass(deps(), MON, ["draft"])
    stored = {v.draft.message_id: v.draft.message for v in drafts(uow_factory)}
    assert stored and all(m is not None and b"\r\nDate:" not in m for m in stored.values())

    run_pass(deps(), MON, ["send"])
    received = smtp_sink.handler.received
    assert len(received) == len(stored) == 4
    for r in received:
        message_id = r.message["Message-ID"]
        assert r.data == with_date(stored[message_id], MON)  # byte for byte, Date: = send time


def test_an_edit_rebuilds_the_message_and_show_displays_what_is_sent(
    cli, tmp_path, smtp_sink, uow_factory, deps
):
    launch(cli, tmp_path, smtp_sink, auto="no")
    run_pass(deps(), MON, ["draft"])
    view = next(v for v in drafts(uow_factory) if v.draft.to_email.startswith("elena"))
    before = view.draft.message
    approval.edit(uow_factory, view.draft.id, "dana@acme.example", MON, subject="A new subject")
    with uow_factory() as uow:
        edited = uow.repo.get_draft(view.draft.id)
    assert edited is not None and edited.draft.message not in (None, before)
    shown = approval.rendered_message(uow_factory, edited)
    assert shown["Subject"] == "A new subject"

    cli("approve", str(view.draft.id))
    run_pass(deps(), MON, ["send"])
    (got,) = [r for r in smtp_sink.handler.received if r.rcpt_tos[0].startswith("elena")]
    assert got.message["Subject"] == "A new subject"
    assert got.data == with_date(edited.draft.message, MON)
    for name in ("From", "To", "Message-ID", "List-Unsubscribe"):
        assert str(shown[name]) == str(got.message[name])
    body = got.message.get_body(("plain",))
    assert shown.get_body(("plain",)).get_content() == body.get_content()


def test_a_content_change_without_new_bytes_drops_them_and_the_sender_builds_them(
    cli, tmp_path, smtp_sink, uow_factory, deps
):
    launch(cli, tmp_path, smtp_sink)
    run_pass(deps(), MON, ["draft"])
    view = next(v for v in drafts(uow_factory) if v.draft.to_email.startswith("sam"))
    with uow_factory() as uow:
        changed = uow.repo.update_draft(view.draft.id, view.draft.revision, MON, text="Hi Sam!\n")
        uow.commit()
    assert changed is not None and changed.message is None

    run_pass(deps(), MON, ["send"])
    (got,) = [r for r in smtp_sink.handler.received if r.rcpt_tos[0].startswith("sam")]
    assert got.message.get_body(("plain",)).get_content().startswith("Hi Sam!\r\n")
    assert got.message["Message-ID"] == view.draft.message_id
    assert email.message_from_bytes(got.data, policy=email.policy.default)["Date"] is not None


def test_a_sender_that_stops_mid_batch_hands_the_unsent_drafts_straight_back(
    cli, tmp_path, smtp_sink, uow_factory, deps
):
    launch(cli, tmp_path, smtp_sink, n=CLAIM_BATCH + 5)
    run_pass(deps(), MON, ["draft"])
    due = len(drafts(uow_factory, DraftState.APPROVED))
    assert due > CLAIM_BATCH

    d = deps()
    report = send_due(
        uow_factory, d.mailer, d.send_cfg, MON, stop=lambda: len(smtp_sink.handler.received) >= 2
    )
    assert report.sent == 2 == len(smtp_sink.handler.received)
    assert drafts(uow_factory, DraftState.SENDING) == []  # nothing waits for the sweeper
    assert len(drafts(uow_factory, DraftState.SENT)) == 2
    assert len(drafts(uow_factory, DraftState.APPROVED)) == due - 2
    with uow_factory() as uow:
        released = [
            e
            for v in drafts(uow_factory, DraftState.APPROVED)
            for e in uow.repo.draft_events(v.draft.id)
            if e.action == "release"
        ]
    assert len(released) == CLAIM_BATCH - 2  # the rest of the claimed batch

    run_pass(d, MON + timedelta(minutes=1), ["send"])  # the next pass sends the rest, once
    ids = smtp_sink.handler.message_ids()
    assert len(ids) == len(set(ids)) == due


class _Boom(Exception):
    pass


class _FailsOnThird:
    """A mailer that delivers twice, then dies before the third message's DATA (as a worker
    whose process is being torn down would)."""

    def __init__(self, inner: SmtpMailer) -> None:
        self.inner, self.calls = inner, 0

    def send(self, account, envelope_from, recipient, message, before_data):
        self.calls += 1
        if self.calls == 3:
            raise _Boom("lost the worker")
        return self.inner.send(account, envelope_from, recipient, message, before_data)

    def close(self) -> None:
        self.inner.close()


def test_a_failure_mid_batch_keeps_what_was_sent_sent_and_never_resends_it(
    cli, tmp_path, smtp_sink, uow_factory, deps
):
    launch(cli, tmp_path, smtp_sink, n=CLAIM_BATCH)
    run_pass(deps(), MON, ["draft"])
    due = len(drafts(uow_factory, DraftState.APPROVED))
    mailer = _FailsOnThird(SmtpMailer(retry_attempts=1))
    try:
        with pytest.raises(_Boom):
            send_due(uow_factory, mailer, SendConfig(env={}), MON)
    finally:
        mailer.close()
    # The two delivered are recorded SENT (their outcome was still pending in memory), the one
    # that never reached DATA and the rest of the batch are handed back at once: nothing is
    # left in SENDING for the sweeper.
    assert len(drafts(uow_factory, DraftState.SENT)) == 2
    assert drafts(uow_factory, DraftState.SENDING) == []
    swept = sweep(
        uow_factory, SendConfig(env={}, stale_after=STALE_NOW), MON + timedelta(minutes=11)
    )
    assert (swept.released, swept.attention) == (0, 0)

    run_pass(deps(), MON + timedelta(minutes=12), ["send"])
    ids = smtp_sink.handler.message_ids()
    assert len(ids) == len(set(ids)) == due


def test_a_min_gap_still_means_one_message_per_gap(cli, tmp_path, smtp_sink, uow_factory, deps):
    launch(cli, tmp_path, smtp_sink, n=5, min_gap="60s")
    run_pass(deps(), MON, ["draft"])
    report = send_due(uow_factory, deps().mailer, SendConfig(env={}), MON)
    assert report.sent == 1 and len(drafts(uow_factory, DraftState.SENDING)) == 0


def test_the_runner_sends_from_several_mailboxes_at_once_each_on_its_own_session(
    cli, tmp_path, smtp_sink, uow_factory, deps
):
    for i in range(4):
        launch(cli, tmp_path, smtp_sink, name=f"camp{i}", n=6, user=f"rep{i}")
    run_pass(deps(), MON, ["draft"])
    due = drafts(uow_factory, DraftState.APPROVED)
    assert len(due) == 24

    d = deps(concurrency=4)
    report = run_pass(d, MON, ["send"])
    assert report.sending is not None and report.sending.sent == 24
    ids = smtp_sink.handler.message_ids()
    assert len(ids) == len(set(ids)) == 24
    assert set(d._box_mailers) == {f"rep{i}@127.0.0.1:{smtp_sink.port}" for i in range(4)}
    per_box: dict[str, int] = {}
    for r in smtp_sink.handler.received:
        box = r.rcpt_tos[0].split("-p")[0]
        per_box[box] = per_box.get(box, 0) + 1
    assert per_box == {f"camp{i}": 6 for i in range(4)}


def test_the_dispatcher_fans_out_only_to_mailboxes_with_approved_drafts_due(
    cli, tmp_path, smtp_sink, uow_factory, deps
):
    for i, auto in enumerate(["yes", "yes", "no"]):
        launch(cli, tmp_path, smtp_sink, name=f"camp{i}", n=3, user=f"rep{i}", auto=auto)
    run_pass(deps(), MON, ["draft"])
    box = [f"rep{i}@127.0.0.1:{smtp_sink.port}" for i in range(3)]
    assert len(drafts(uow_factory, DraftState.PENDING_APPROVAL)) == 3  # camp2 awaits its rep
    assert due_mailboxes(uow_factory, MON - timedelta(days=1)) == []  # nothing due yet
    assert sorted(due_mailboxes(uow_factory, MON)) == box[:2]

    send_due(uow_factory, deps().mailer, SendConfig(env={}), MON, only_mailbox=box[0])
    assert due_mailboxes(uow_factory, MON) == [box[1]]  # what is sent is no longer due
    cli("campaign", "stop", "camp1")
    assert due_mailboxes(uow_factory, MON) == []  # a stopped campaign's mailbox is left alone


def test_an_approved_step_of_a_held_enrollment_waits_and_goes_once_released(
    cli, tmp_path, smtp_sink, uow_factory, deps
):
    """A hold (mail a person must read first) keeps the approved draft approved, unsent and
    not cancelled, so releasing the enrollment sends exactly that message."""
    from sequencer.core.states import EnrollmentState
    from sequencer.services.campaigns import release

    launch(cli, tmp_path, smtp_sink, n=2)
    run_pass(deps(), MON, ["draft"])
    first, second = sorted(drafts(uow_factory, DraftState.APPROVED), key=lambda v: v.draft.id)
    with uow_factory() as uow:
        uow.repo.update_enrollment(
            first.enrollment.id, MON, state=EnrollmentState.HELD, hold_reason="a person looks"
        )
        uow.commit()

    report = send_due(uow_factory, deps().mailer, SendConfig(env={}), MON)
    assert report.sent == 1 and smtp_sink.handler.message_ids() == [second.draft.message_id]
    with uow_factory() as uow:
        view = uow.repo.get_draft(first.draft.id)
    assert view is not None and view.draft.state is DraftState.APPROVED  # waiting, not cancelled

    release(uow_factory, first.enrollment.id, MON)
    report = send_due(uow_factory, deps().mailer, SendConfig(env={}), MON + timedelta(minutes=1))
    assert report.sent == 1
    assert smtp_sink.handler.message_ids() == [second.draft.message_id, first.draft.message_id]


def test_send_concurrency_setting() -> None:
    key = {"REFSEQ_SECRET_KEY": SECRET}
    assert Settings.from_env(key).send_concurrency == 32
    assert Settings.from_env({**key, "REFSEQ_SEND_CONCURRENCY": "4"}).send_concurrency == 4
    with pytest.raises(ConfigError, match="REFSEQ_SEND_CONCURRENCY"):
        Settings.from_env({**key, "REFSEQ_SEND_CONCURRENCY": "0"})
