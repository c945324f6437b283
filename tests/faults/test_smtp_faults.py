"""The SMTP fault table: every stage x fault against a real (fault-injecting) aiosmtpd server.

Each case makes exactly one approved draft due, scripts the server, runs the real sender
(``send_due`` with ``SmtpMailer``) once, and checks what the draft, its enrollment and the
suppression list say and what the server actually holds. Then the faults are cleared and the
sender runs again after the retry backoff: a draft released for a retry goes out exactly once,
and nothing that failed for good or may already have been delivered is ever sent again.

The promises: never send twice, never lose a message (every draft ends sent, failed with the
server's words, or parked for a human), never email an address the server said does not exist.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from sequencer.adapters.db.session import SqlUnitOfWorkFactory, make_uow_factory
from sequencer.adapters.smtp import SmtpMailer
from sequencer.core.states import DraftState, EnrollmentState
from sequencer.services.drafting import draft_due
from sequencer.services.inbox import InboxConfig, process
from sequencer.services.routing import notify_handoffs
from sequencer.services.sending import SendConfig, send_due, sweep
from tests.cli_helpers import Cli
from tests.conftest import DB_PARAMS
from tests.faults.faulty_smtp import Fault, FaultyServer, Stage, faulty_server
from tests.faults.mailworld import (
    DRAFT_CFG,
    MON,
    REP,
    SECRET,
    make_due,
    module_database,
    park_all,
    write_campaign,
)
from tests.reliability import Recorder

# The senders are gone: their claims are stale at once (staleness is on the DB clock).
STALE_NOW = timedelta(0)

PROSPECTS = 90
TIMEOUT = 2.0  # the mailer's socket timeout
SLOW = 0.1  # a slow reply well within it
SHORT_TIMEOUT, TOO_SLOW = 0.5, 1.2  # the "too slow" cases run with a short timeout (fast test)
ALWAYS = None

_T, _F, _A, _S = (
    DraftState.APPROVED,
    DraftState.FAILED,
    DraftState.NEEDS_ATTENTION,
    DraftState.SENT,
)


@dataclass
class World:
    uow_factory: SqlUnitOfWorkFactory
    server: FaultyServer
    free: list[int]  # approved, parked drafts not used by a case yet
    db: str  # sqlite | postgresql
    moment: datetime = MON

    def tick(self) -> datetime:
        """A fresh moment for the next case (cases never share a send time or a backoff)."""
        self.moment += timedelta(minutes=5)
        return self.moment


@pytest.fixture(scope="module", params=DB_PARAMS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("smtp-faults")
    with module_database(request, tmp) as url, faulty_server() as server:
        cli = Cli(url, tmp)
        cli.env["REFSEQ_SECRET_KEY"] = SECRET
        yaml = write_campaign(cli, tmp / "camp", server.port, PROSPECTS)
        cli("launch", str(yaml), "--now", MON.isoformat())
        factory = make_uow_factory(url)
        try:
            drafted = draft_due(factory, DRAFT_CFG, MON)
            assert (drafted.created, drafted.auto_approved) == (PROSPECTS, PROSPECTS)
            assert park_all(factory, MON) == PROSPECTS
            with factory() as uow:
                ids = sorted(v.draft.id for v in uow.repo.list_drafts([DraftState.APPROVED]))
            yield World(factory, server, ids, request.param)
        finally:
            factory.dispose()
            from sequencer.bootstrap import dispose_all

            dispose_all()


@dataclass(frozen=True)
class Case:
    name: str
    faults: tuple[tuple[Stage, Fault, int | None], ...]
    state: DraftState  # after the first send
    delivered: int = 0  # copies of the message on the server after the first send
    error: str = ""  # in last_error (the phase and the server's words)
    suppressed: bool = False
    bounced: bool = False
    data_command: bool = True  # did the client get as far as DATA?
    attempts: int = 3  # SmtpMailer(retry_attempts=...)
    timeout: float = TIMEOUT  # SmtpMailer(timeout=...)

    @property
    def final(self) -> DraftState:
        return DraftState.SENT if self.state is DraftState.APPROVED else self.state

    @property
    def final_delivered(self) -> int:
        return 1 if self.state is DraftState.APPROVED else self.delivered


@dataclass
class Tally:
    trials: int = 0
    duplicates: int = 0
    lost: int = 0
    wrong_sends: int = 0
    problems: list[str] = field(default_factory=list)


def run_case(world: World, case: Case, tally: Tally) -> None:
    """One case: first send under the faults, checks, then a clean retry pass, checks."""
    h = world.server.handler
    draft_id = world.free.pop(0)
    now = world.tick()
    make_due(world.uow_factory, draft_id, now)
    h.clear()
    for stage, fault, times in case.faults:
        h.inject(stage, fault, times)
    data_before = h.seen("data")
    problems: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            problems.append(f"[{case.name}] {what}")

    with SmtpMailer(
        timeout=case.timeout, retry_attempts=case.attempts, sleep=lambda s: None
    ) as mailer:
        report = send_due(world.uow_factory, mailer, SendConfig(env={}), now, random.Random(1))
    check(report.errors == [], f"sender errors {report.errors}")
    with world.uow_factory() as uow:
        view = uow.repo.get_draft(draft_id)
        assert view is not None
        suppressed = uow.repo.suppressed_values()
    d, e = view.draft, view.enrollment
    mid = d.message_id
    copies = h.delivered()[mid]
    check(d.state is case.state, f"state {d.state.value}, expected {case.state.value}")
    check(d.attempts == 1, f"attempts {d.attempts}, expected 1 (one claim)")
    check(copies == case.delivered, f"server holds {copies} copies, expected {case.delivered}")
    check(case.error in (d.last_error or ""), f"last_error {d.last_error!r} lacks {case.error!r}")
    check((d.to_email in suppressed) == case.suppressed, f"suppressed: {d.to_email in suppressed}")
    expected_enrollment = EnrollmentState.BOUNCED if case.bounced else EnrollmentState.ACTIVE
    check(e.state is expected_enrollment, f"enrollment {e.state.value}")
    check(
        (h.seen("data") > data_before) == case.data_command,
        f"DATA command sent: {h.seen('data') > data_before}",
    )
    if case.state is DraftState.APPROVED:  # released for a later retry
        check(d.next_attempt_at == now + timedelta(minutes=1), f"next {d.next_attempt_at}")
        check(d.data_started_at is None, "data_started_at kept on a retried draft")
    elif case.state is DraftState.SENT:
        check(d.sent_at == now and (d.smtp_reply or "").startswith("250"), "sent_at/reply")
        check(e.steps_done == 1, f"steps_done {e.steps_done}")
    elif case.state is DraftState.NEEDS_ATTENTION:
        check(d.data_started_at == now, "needs attention without data_started_at")
    if case.state is DraftState.FAILED:
        check(copies == 0, "a refused message is on the server")
        tally.wrong_sends += copies

    # Time passes beyond the backoff; the server is healthy again; the sweeper runs too.
    h.clear()
    retry_at = now + timedelta(minutes=2)
    with SmtpMailer(timeout=TIMEOUT, retry_attempts=1, sleep=lambda s: None) as mailer:
        send_due(world.uow_factory, mailer, SendConfig(env={}), retry_at, random.Random(2))
    sweep(
        world.uow_factory, SendConfig(env={}, stale_after=STALE_NOW), retry_at + timedelta(hours=1)
    )
    with world.uow_factory() as uow:
        after = uow.repo.get_draft(draft_id)
        assert after is not None
    final = h.delivered()[mid]
    check(after.draft.state is case.final, f"finally {after.draft.state.value}")
    check(final == case.final_delivered, f"finally {final} copies, expected {case.final_delivered}")
    tally.trials += 1
    tally.duplicates += max(0, final - 1)
    tally.lost += after.draft.state not in (_S, _F, _A) or (
        after.draft.state is not _S and not after.draft.last_error
    )
    if case.suppressed:  # a refused address never gets anything afterwards either
        tally.wrong_sends += final
    tally.problems += problems


def run_table(world: World, cases: list[Case]) -> Tally:
    tally = Tally()
    for case in cases:
        run_case(world, case, tally)
    # One envelope recipient per message, always.
    multi = [a for a in world.server.handler.arrivals if len(a.rcpt_tos) != 1]
    tally.problems += [f"a message went to {a.rcpt_tos}" for a in multi]
    return tally


def record(reliability: Recorder, world: World, fault: str, tally: Tally, outcome: str) -> None:
    reliability.record(
        "smtp",
        f"{fault} [{world.db}]",
        trials=tally.trials,
        duplicates=tally.duplicates,
        lost=tally.lost,
        wrong_sends=tally.wrong_sends,
        outcome=outcome,
    )
    assert tally.problems == []
    assert (tally.duplicates, tally.lost, tally.wrong_sends) == (0, 0, 0)


def _f(stage: Stage, fault: Fault, times: int | None = ALWAYS) -> tuple[Stage, Fault, int | None]:
    return (stage, fault, times)


PHASE = {"greeting": "connect", "hello": "hello"}
TEMPORARY: dict[Stage, str] = {
    "greeting": "421 4.3.2 Service not available, closing channel",
    "hello": "451 4.3.0 Temporary local problem",
    "mail": "451 4.3.0 Temporary local problem",
    "rcpt": "450 4.2.1 Mailbox busy, try later",
    "data": "451 4.3.0 Queue full",
    "content": "451 4.3.0 Try again later",
}


def _temporary_cases() -> list[Case]:
    cases = []
    for stage, reply in TEMPORARY.items():
        phase = PHASE.get(stage, stage)
        # From the DATA command on (before_data() has run), nothing is retried in-process.
        after_data = stage in ("data", "content")
        cases.append(
            Case(
                f"{stage} {reply[:3]} every time",
                (_f(stage, Fault(reply)),),
                _T,
                error=f"SMTP {phase}: {reply[:3]}",
                data_command=stage in ("data", "content"),
            )
        )
        cases.append(
            Case(
                f"{stage} {reply[:3]} once",
                (_f(stage, Fault(reply), 1),),
                _T if after_data else _S,  # before DATA: retried in-process and sent
                delivered=0 if after_data else 1,
                error=f"SMTP {phase}: {reply[:3]}" if after_data else "",
            )
        )
    cases.append(
        Case(
            "rcpt 421 (closing) every time",
            (_f("rcpt", Fault("421 4.7.0 Too many connections")),),
            _T,
            error="SMTP rcpt: 421",
            data_command=False,
        )
    )
    return cases


@pytest.mark.reliability
def test_a_temporary_4xx_at_each_stage_is_retried_and_sent_exactly_once(
    world: World, reliability: Recorder
) -> None:
    tally = run_table(world, _temporary_cases())
    record(
        reliability,
        world,
        "temporary 4xx at greeting/EHLO/MAIL/RCPT/DATA/after data, once and every time",
        tally,
        "before DATA: retried in-process, or released with backoff; after data: released "
        "(nothing was accepted); each then sent exactly once",
    )


def _permanent_cases() -> list[Case]:
    return [
        Case(
            "rcpt 550 5.1.1 user unknown",
            (_f("rcpt", Fault("550 5.1.1 <x>: Recipient address rejected: User unknown")),),
            _F,
            error="SMTP rcpt: 550 5.1.1",
            suppressed=True,
            bounced=True,
            data_command=False,
        ),
        Case(
            "rcpt 550 mailbox unavailable (no enhanced code)",
            (_f("rcpt", Fault("550 Requested action not taken: mailbox unavailable")),),
            _F,
            error="SMTP rcpt: 550",
            suppressed=True,
            bounced=True,
            data_command=False,
        ),
        Case(
            "rcpt 550 5.7.1 policy",
            (_f("rcpt", Fault("550 5.7.1 Relaying denied")),),
            _F,
            error="SMTP rcpt: 550 5.7.1",
            data_command=False,
        ),
        Case(
            "rcpt 552 5.2.2 mailbox full",
            (_f("rcpt", Fault("552 5.2.2 Mailbox full")),),
            _F,
            error="SMTP rcpt: 552 5.2.2",
            data_command=False,
        ),
        Case(
            "mail 553 5.1.7 bad sender",
            (_f("mail", Fault("553 5.1.7 Sender address rejected")),),
            _F,
            error="SMTP mail: 553 5.1.7",
            data_command=False,
        ),
        Case(
            "data 554 5.5.1 no valid recipients",
            (_f("data", Fault("554 5.5.1 Error: no valid recipients")),),
            _F,
            error="SMTP data: 554",
        ),
        Case(
            "after data 552 5.3.4 too big",
            (_f("content", Fault("552 5.3.4 Message size exceeds fixed limit")),),
            _F,
            error="SMTP content: 552 5.3.4",
        ),
        Case(
            "after data 550 5.7.1 spam",
            (_f("content", Fault("550 5.7.1 Message rejected as spam")),),
            _F,
            error="SMTP content: 550 5.7.1",
        ),
        Case(
            "after data 550 5.1.1 user unknown",
            (_f("content", Fault("550 5.1.1 User unknown")),),
            _F,
            error="SMTP content: 550 5.1.1",
            suppressed=True,
            bounced=True,
        ),
        # A 5xx to the session (banner, EHLO) says nothing about the message: retried later.
        Case(
            "greeting 554 no service",
            (_f("greeting", Fault("554 5.7.1 No SMTP service here")),),
            _T,
            error="SMTP connect: 554",
            data_command=False,
        ),
        Case(
            "hello 550 access denied",
            (_f("hello", Fault("550 5.7.1 Access denied")),),
            _T,
            error="SMTP hello: 550",
            data_command=False,
        ),
    ]


@pytest.mark.reliability
def test_a_5xx_at_rcpt_or_data_fails_for_good_and_5_1_x_suppresses(
    world: World, reliability: Recorder
) -> None:
    tally = run_table(world, _permanent_cases())
    record(
        reliability,
        world,
        "permanent 5xx at MAIL/RCPT/DATA/after data (5.1.1, policy, size, spam), 5xx banner/EHLO",
        tally,
        "failed with the server's words, never resent; 5.1.x suppresses and bounces the "
        "enrollment; a 5xx to the session is retried later",
    )


def _slow_cases() -> list[Case]:
    slow = [
        Case(f"{stage} slow ({SLOW}s)", (_f(stage, Fault(delay=SLOW)),), _S, delivered=1)
        for stage in ("greeting", "hello", "mail", "rcpt", "data", "content")
    ]
    short = SHORT_TIMEOUT
    return [
        *slow,
        Case(
            "greeting too slow once",
            (_f("greeting", Fault(delay=TOO_SLOW), 1),),
            _S,
            1,
            timeout=short,
        ),
        Case("rcpt too slow once", (_f("rcpt", Fault(delay=TOO_SLOW), 1),), _S, 1, timeout=short),
        Case(
            "DATA command too slow",
            (_f("data", Fault(delay=TOO_SLOW), 1),),
            _T,
            error="SMTP data",
            timeout=short,
        ),
        Case(
            "after data too slow (the server took it, the client gave up)",
            (_f("content", Fault(delay=TOO_SLOW), 1),),
            _A,
            delivered=1,
            error="ambiguous",
            timeout=short,
        ),
    ]


@pytest.mark.reliability
def test_slow_replies_within_and_beyond_the_timeout(world: World, reliability: Recorder) -> None:
    tally = run_table(world, _slow_cases())
    record(
        reliability,
        world,
        f"slow replies at each stage ({SLOW}s; {TOO_SLOW}s against a {SHORT_TIMEOUT}s timeout)",
        tally,
        "slow: sent once; a timeout before DATA: retried and sent once; a timeout after the "
        "data: needs_attention, the server's copy is the only one",
    )


def _drop_cases() -> list[Case]:
    before = [
        Case(
            f"connection dropped at {stage}",
            (_f(stage, Fault(drop=True)),),
            _T,
            error=f"SMTP {PHASE.get(stage, stage)}",
            data_command=False,
        )
        for stage in ("greeting", "hello", "mail", "rcpt")
    ]
    return [
        *before,
        Case(
            "connection dropped at DATA (before the message data)",
            (_f("data", Fault(drop=True)),),
            _T,
            error="SMTP data",
        ),
        Case(
            "connection dropped during the message data (after the 354)",
            (_f("data", Fault("354 End data with <CR><LF>.<CR><LF>", drop=True)),),
            _A,
            error="ambiguous",
        ),
        Case(
            "connection dropped after the message data (no final reply)",
            (_f("content", Fault(drop=True)),),
            _A,
            delivered=1,
            error="ambiguous",
        ),
    ]


@pytest.mark.reliability
def test_a_dropped_connection_before_and_after_the_data(
    world: World, reliability: Recorder
) -> None:
    tally = run_table(world, _drop_cases())
    record(
        reliability,
        world,
        "connection dropped at the banner/EHLO/MAIL/RCPT/DATA, during and after the data",
        tally,
        "before the data: released and sent once later; during/after the data: "
        "needs_attention, never resent (the server holds at most one copy)",
    )


@pytest.mark.reliability
def test_a_refused_recipient_among_accepted_ones_is_never_taken_for_a_success(
    world: World, reliability: Recorder
) -> None:
    """Every message has exactly one envelope recipient (the sender and the handoff notice
    both call ``Mailer.send`` with one address; Cc/Bcc are reserved headers). So "partial
    refusal" is: the server refuses one recipient while accepting the others it is given in the
    same session. The refused draft must fail (and be suppressed), never count as sent."""
    h = world.server.handler
    now = world.tick()
    refused, accepted = world.free.pop(0), world.free.pop(0)
    for draft_id in (refused, accepted):
        make_due(world.uow_factory, draft_id, now)
    with world.uow_factory() as uow:
        views = {i: uow.repo.get_draft(i) for i in (refused, accepted)}
    bad = views[refused].draft.to_email  # type: ignore[union-attr]
    h.clear()
    h.refuse[bad.casefold()] = f"550 5.1.1 <{bad}>: Recipient address rejected"
    with SmtpMailer(timeout=TIMEOUT, retry_attempts=3, sleep=lambda s: None) as mailer:
        report = send_due(world.uow_factory, mailer, SendConfig(env={}), now, random.Random(1))
    with world.uow_factory() as uow:
        states = {i: uow.repo.get_draft(i).draft for i in (refused, accepted)}  # type: ignore[union-attr]
        suppressed = uow.repo.suppressed_values()
    delivered = h.delivered()
    r, a = states[refused], states[accepted]
    to_refused = [x for x in h.arrivals if bad in x.rcpt_tos]

    # The handoff notice to the rep: a reply from the accepted prospect, notice refused once.
    with world.uow_factory() as uow:
        uow.repo.add_inbound(
            "mid:<partial-reply@bulk.example>",
            "test",
            None,
            (
                f"From: {a.to_email}\r\nTo: {REP}\r\nSubject: Re: {a.subject}\r\n"
                f"Message-ID: <partial-reply@bulk.example>\r\nIn-Reply-To: {a.message_id}\r\n"
                "\r\nYes, happy to talk next week. What times work?\r\n"
            ).encode(),
            now,
            now,
            from_addr=a.to_email,
        )
        uow.commit()
    process(world.uow_factory, InboxConfig(env={}, draft_cfg=DRAFT_CFG), now)
    h.refuse[REP.casefold()] = "550 5.1.1 <dana@acme.example>: mailbox unavailable"
    with SmtpMailer(timeout=TIMEOUT, retry_attempts=1, sleep=lambda s: None) as mailer:
        first = notify_handoffs(world.uow_factory, mailer, DRAFT_CFG, {}, now)
        h.refuse.clear()
        second = notify_handoffs(world.uow_factory, mailer, DRAFT_CFG, {}, now)
        third = notify_handoffs(world.uow_factory, mailer, DRAFT_CFG, {}, now)
    notices = [x for x in h.arrivals if x.rcpt_tos == [REP] and x.delivered]
    with world.uow_factory() as uow:
        rep_suppressed = REP in uow.repo.suppressed_values()

    wrong = len(to_refused)  # anything that reached the refused address
    reliability.record(
        "smtp",
        "one recipient refused (550 5.1.1) while others in the session are accepted; "
        f"the rep's notice refused once [{world.db}]",
        trials=2,
        duplicates=max(0, delivered[a.message_id] - 1) + max(0, len(notices) - 1),
        lost=int(a.state is not DraftState.SENT) + int(len(notices) != 1),
        wrong_sends=wrong,
        outcome="refused draft failed + suppressed, the other sent once; notice retried, sent "
        "once; single-recipient envelopes everywhere",
    )
    assert (report.sent, report.failed) == (1, 1)
    assert r.state is DraftState.FAILED and "5.1.1" in (r.last_error or "")
    assert bad in suppressed and delivered[r.message_id] == 0 and to_refused == []
    assert a.state is DraftState.SENT and delivered[a.message_id] == 1
    assert (first.notified, len(first.errors), second.notified, third.notified) == (0, 1, 1, 0)
    assert "notice not sent" in first.errors[0] and "5.1.1" in first.errors[0]
    assert len(notices) == 1 and not rep_suppressed  # the rep's refusal suppresses nothing
    assert all(len(x.rcpt_tos) == 1 for x in h.arrivals)
    assert wrong == 0


def test_the_faulty_server_scripts_what_it_says() -> None:
    """The harness itself: a scripted fault hits exactly the commands it names."""
    import smtplib

    with faulty_server() as server:
        h = server.handler
        h.inject("rcpt", Fault("451 4.3.0 later"), 1)
        with smtplib.SMTP(server.host, server.port, timeout=5) as c:
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                c.sendmail("a@x.example", ["b@y.example"], b"Message-ID: <1@x>\r\n\r\nhi\r\n")
            assert (
                c.sendmail("a@x.example", ["b@y.example"], b"Message-ID: <2@x>\r\n\r\n.\r\n") == {}
            )
        assert h.delivered() == {"<2@x>": 1}
        assert [s for s, _ in h.commands].count("rcpt") == 2
