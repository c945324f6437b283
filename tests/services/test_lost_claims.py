"""A sender whose claims another process swept goes on (SQLite and PostgreSQL, real SMTP).

The other process is a sweeper that judges the claims stale: a runner whose clock is ahead,
`tick --now <future>`, or a send slower than ``stale_after``. Whatever it took back is that
process's now: the sender logs the lost claim, does not send it, and keeps sending the rest.
Nothing goes out twice, and what was swept is sent exactly once by a later pass.
"""

from __future__ import annotations

from datetime import timedelta

from sequencer.adapters.smtp import SmtpMailer
from sequencer.core.states import DraftState
from sequencer.services.runner import run_pass
from sequencer.services.sending import CLAIM_BATCH, SendConfig, send_due, sweep
from tests.services.test_send_path import (
    MON,
    cli,  # noqa: F401  (fixture)
    deps,  # noqa: F401  (fixture)
    drafts,
    launch,
)


class _SweptUnderIt:
    """A real SMTP mailer; on the ``at``-th message, right before DATA, another process sweeps
    every claim it finds (its clock is an hour ahead, or its stale_after is 0)."""

    def __init__(self, inner: SmtpMailer, uow_factory, at: int) -> None:
        self.inner, self.uow_factory, self.at, self.calls = inner, uow_factory, at, 0
        self.swept = 0

    def send(self, account, envelope_from, recipient, message, before_data):
        self.calls += 1

        def swept_first() -> None:
            if self.calls == self.at:
                ahead = SendConfig(env={}, stale_after=timedelta(0))
                report = sweep(self.uow_factory, ahead, MON + timedelta(hours=1))
                self.swept += report.released
            before_data()

        return self.inner.send(account, envelope_from, recipient, message, swept_first)

    def close(self) -> None:
        self.inner.close()


def test_a_sender_whose_claims_were_swept_logs_it_and_goes_on(
    cli,  # noqa: F811
    tmp_path,
    smtp_sink,
    uow_factory,
    deps,  # noqa: F811
):
    launch(cli, tmp_path, smtp_sink, n=CLAIM_BATCH)
    run_pass(deps(), MON, ["draft"])
    due = len(drafts(uow_factory, DraftState.APPROVED))
    mailer = _SweptUnderIt(SmtpMailer(retry_attempts=1), uow_factory, at=3)
    try:
        report = send_due(uow_factory, mailer, SendConfig(env={}), MON)  # no exception
    finally:
        mailer.close()
    assert mailer.swept >= 1
    assert report.lost == mailer.swept  # each one counted, none sent by this sender
    assert report.sent + report.lost >= 2
    assert report.errors == []
    assert "claim(s) taken back by another process" in _summary(report)
    assert drafts(uow_factory, DraftState.SENDING) == []

    run_pass(deps(), MON + timedelta(minutes=1), ["send"])
    ids = smtp_sink.handler.message_ids()
    assert len(ids) == len(set(ids)) == due  # every one exactly once
    assert len(drafts(uow_factory, DraftState.SENT)) == due


def _summary(report) -> str:
    from sequencer.services.runner import PassReport

    p = PassReport(MON)
    p.sending = report
    return p.summary()


class _DropsOneCommit:
    """The real unit-of-work factory, whose next commit after ``armed`` fails once, as when the
    database connection drops while the outcome of a delivered message is being recorded."""

    def __init__(self, inner) -> None:
        self.inner, self.armed, self.dropped = inner, False, 0

    def __call__(self):
        outer = self
        uow = self.inner()

        class _Uow:
            def __enter__(self):
                uow.__enter__()
                self.repo = uow.repo
                return self

            def __exit__(self, *exc):
                return uow.__exit__(*exc)

            def commit(self) -> None:
                if outer.armed:
                    outer.armed = False
                    outer.dropped += 1
                    uow.rollback()
                    raise ConnectionError("server closed the connection unexpectedly")
                uow.commit()

            def rollback(self) -> None:
                uow.rollback()

        return _Uow()


class _ArmsAfter250:
    def __init__(self, inner: SmtpMailer, factory: _DropsOneCommit) -> None:
        self.inner, self.factory = inner, factory

    def send(self, account, envelope_from, recipient, message, before_data):
        receipt = self.inner.send(account, envelope_from, recipient, message, before_data)
        self.factory.armed = True  # the server said 250: the next commit records it
        return receipt

    def close(self) -> None:
        self.inner.close()


def test_a_dropped_commit_of_a_delivered_message_is_retried_not_parked(
    cli,  # noqa: F811
    tmp_path,
    smtp_sink,
    uow_factory,
    deps,  # noqa: F811
):
    launch(cli, tmp_path, smtp_sink, n=3)
    run_pass(deps(), MON, ["draft"])
    due = len(drafts(uow_factory, DraftState.APPROVED))
    flaky = _DropsOneCommit(uow_factory)
    mailer = _ArmsAfter250(SmtpMailer(retry_attempts=1), flaky)
    try:
        report = send_due(flaky, mailer, SendConfig(env={}), MON)
    finally:
        mailer.close()
    assert flaky.dropped == due  # every outcome's first commit was lost
    assert report.sent == due and report.errors == []
    assert len(drafts(uow_factory, DraftState.SENT)) == due  # none parked, none in SENDING
    ids = smtp_sink.handler.message_ids()
    assert len(ids) == len(set(ids)) == due
