"""A reply sitting unread in INBOX stops the send, even when no poll has run since it came
(real Dovecot, real SMTP, SQLite and PostgreSQL).

Under Celery the poll and the sends are separate beats a minute apart; the sender itself now
reads the rep's mailbox before sending each claimed batch (services/presend.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sequencer.core.states import DraftState, EnrollmentState
from sequencer.services.runner import run_pass
from sequencer.services.sending import send_due
from tests.services.test_replies import (  # noqa: F401  (fixtures)
    MON,
    enrollment,
    reply,
    sent_to,
    webhook,
    world,
)

THU = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)  # the follow-ups are due


def test_a_reply_not_yet_polled_holds_the_follow_up_back(world, uow_factory):  # noqa: F811
    deps, sink, dovecot = world["deps"], world["sink"], world["dovecot"]
    run_pass(deps, MON)
    (intro,) = sent_to(sink, "elena")
    run_pass(deps, THU, ["draft"])  # the follow-ups are approved and due; no poll since Monday
    body = "Yes, let's talk Tuesday.\n\nElena\n"
    answered = THU - timedelta(minutes=1)
    raw = reply(intro, body, answered, "Elena Park <elena.park@northbank.example>")
    dovecot.append(world["user"], "INBOX", raw, date=answered)

    report = run_pass(deps, THU, ["send"])  # only the send stage: what a Celery send task does
    assert report.sending is not None and report.sending.errors == []
    assert len(sent_to(sink, "elena")) == 1  # her follow-up did not go
    assert len(sent_to(sink, "sam")) == 2  # Sam, who did not write, got his
    assert report.sending.deferred >= 1

    run_pass(deps, THU + timedelta(minutes=1), ["poll"])  # the regular poll classifies it
    e = enrollment(uow_factory, "elena.park@northbank.example")
    assert e.state is EnrollmentState.REPLIED
    with uow_factory() as uow:
        hers = [
            v.draft.state
            for v in uow.repo.list_drafts(list(DraftState))
            if v.draft.to_email == "elena.park@northbank.example"
        ]
    assert sorted(s.value for s in hers) == ["cancelled", "sent"]
    run_pass(deps, THU + timedelta(hours=1))
    assert len(sent_to(sink, "elena")) == 1


def test_the_celery_send_path_reads_the_mailbox_too(world, uow_factory):  # noqa: F811
    """``send_due`` with the Deps' ``before_batch``, as workers/tasks.py calls it."""
    deps, sink, dovecot = world["deps"], world["sink"], world["dovecot"]
    run_pass(deps, MON)
    (intro,) = sent_to(sink, "sam")
    run_pass(deps, THU, ["draft"])
    answered = THU - timedelta(seconds=30)
    raw = reply(
        intro, "Not interested, thanks.", answered, "Sam Ortiz <sam.ortiz@cleardesk.example>"
    )
    dovecot.append(world["user"], "INBOX", raw, date=answered)
    send_due(
        deps.uow_factory,
        deps.mailer,
        deps.send_cfg,
        THU,
        deps.rng,
        before_batch=deps.before_batch(),
    )
    assert len(sent_to(sink, "sam")) == 1
    assert len(sent_to(sink, "elena")) == 2
