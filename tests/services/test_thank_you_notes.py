"""Thank-you notes to referrers, end to end on both databases: replies in over IMAP (Dovecot),
notes out over SMTP (aiosmtpd), read back from the raw bytes the sink received with the
standard library's parser, and the report recounted from the raw tables.

James Hervin (``james@pixel.example``, zone Asia/Tokyo here) referred Elena Park (New York) and
Sam Ortiz (no zone: the rep's, New York). Tokyo's 09:00-17:00 is 00:00-08:00 UTC, so a note
sent in the prospects' hours (14:00-22:00 UTC) is visibly in the wrong zone.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import random
import threading
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from sequencer.adapters.cli.main import app
from sequencer.adapters.db.session import make_engine
from sequencer.adapters.imap import ImapMailboxReader
from sequencer.adapters.smtp import SmtpMailer
from sequencer.core.drafts import DraftConfig
from sequencer.services.inbox import InboxConfig
from sequencer.services.runner import Deps, replay, run_pass
from sequencer.services.sending import SendConfig
from tests.cli_helpers import Cli, imap_at, init_example
from tests.services.test_replies import MON, SECRET, reply, sent_to
from tests.smtp_sink import Sink

JAMES = "james@pixel.example"
TOKYO = ZoneInfo("Asia/Tokyo")
TUE = MON + timedelta(days=1)  # Tuesday 14:00 UTC, 09:00 New York, 23:00 Tokyo
INTERESTED = "Yes, happy to talk. Could we do Thursday at 10?\n\n{name}\n"


def _world(
    db_url: str,
    tmp_path: Path,
    sink: Sink,
    dovecot: Any,
    imap_user: str,
    uow_factory: Any,
    **yaml: str,
) -> dict[str, Any]:
    login, password = dovecot.user(imap_user)
    cli = Cli(db_url, tmp_path)
    cli.env["REFSEQ_SECRET_KEY"] = SECRET
    path = init_example(cli, tmp_path / "camp")
    referrers = path.parent / "referrers.csv"
    lines = referrers.read_text(encoding="utf-8-sig").splitlines()
    zones = {"james-hervin": "Asia/Tokyo"}
    out = [lines[0] + ",timezone"] + [f"{x},{zones.get(x.split(',')[0], '')}" for x in lines[1:]]
    referrers.write_text("\n".join(out) + "\n")
    body = (
        imap_at(path.read_text(), dovecot.port)
        .replace("port: 2525", f"port: {sink.port}")
        .replace("min_gap: 90s", "min_gap: 0s")
        .replace(
            "username: dana, password_env: REFSEQ_IMAP_PASSWORD",
            f"username: {login}, password_env: TEST_IMAP_PW",
        )
        .replace("approval: required", "approval: auto")
        .replace("  webhook_url_env: CRM_WEBHOOK_URL\n", "")
    )
    for key, value in yaml.items():
        body = body.replace(
            "  thank_referrer: draft\n", f"  thank_referrer: draft\n  {key}: {value}\n"
        )
    path.write_text(body)
    cli("launch", str(path), "--now", MON.isoformat())
    env = {"TEST_IMAP_PW": password}
    drafts = DraftConfig(SECRET, "https://refseq.acme.example", Path("templates/email"))
    deps = Deps(
        uow_factory=uow_factory,
        draft_cfg=drafts,
        send_cfg=SendConfig(env=env),
        mailer_factory=lambda: SmtpMailer(retry_attempts=1, sleep=lambda s: None),
        rng=random.Random(5),
        reader_factory=ImapMailboxReader,
        inbox_cfg=InboxConfig(env=env, draft_cfg=drafts),
    )
    return {"cli": cli, "deps": deps, "sink": sink, "dovecot": dovecot, "user": imap_user}


@pytest.fixture
def world(db_url, tmp_path, smtp_sink, dovecot, imap_user, uow_factory):
    w = _world(db_url, tmp_path, smtp_sink, dovecot, imap_user, uow_factory)
    yield w
    w["deps"].close()


@pytest.fixture
def world_36h(db_url, tmp_path, smtp_sink, dovecot, imap_user, uow_factory):
    w = _world(db_url, tmp_path, smtp_sink, dovecot, imap_user, uow_factory, thank_window="36h")
    yield w
    w["deps"].close()


def answer(w: dict[str, Any], prefix: str, body: str, at: datetime) -> None:
    """The prospect answers our first message to them, arriving at ``at``."""
    intro = sent_to(w["sink"], prefix)[0]
    sender = str(intro["To"])
    w["dovecot"].append(w["user"], "INBOX", reply(intro, body, at, sender), date=at)


def notes_received(sink: Sink) -> list[EmailMessage]:
    """What the SMTP peer got for James, parsed by the standard library alone."""
    return [
        email.message_from_bytes(r.data, policy=email.policy.default)  # type: ignore[misc]
        for r in sink.handler.received
        if r.rcpt_tos == [JAMES]
    ]


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def note_rows(cli: Cli, state: str = "pending_approval") -> list[dict[str, Any]]:
    return [r for r in cli.json("queue", "--state", state) if r["prospect"] == JAMES]


def report_json(cli: Cli) -> Any:
    return json.loads(cli("report", "--by", "step", "--format", "json").stdout)


def in_tokyo_hours(msg: EmailMessage) -> bool:
    local = email.utils.parsedate_to_datetime(str(msg["Date"])).astimezone(TOKYO)
    return local.weekday() < 5 and 9 <= local.hour < 17


def test_two_prospects_engaging_at_once_make_one_note_in_the_referrers_hours(world):
    """Issue 13.7: James got two identical notes in the same minute, one per prospect."""
    deps, sink, cli = world["deps"], world["sink"], world["cli"]
    run_pass(deps, MON)
    arrived = TUE + timedelta(minutes=30)
    answer(world, "elena", INTERESTED.format(name="Elena"), arrived)
    answer(world, "sam", INTERESTED.format(name="Sam"), arrived)
    run_pass(deps, TUE + timedelta(hours=1))  # one poll: both replies, two handoffs

    assert len(cli.json("handoffs")) == 2
    (note,) = note_rows(cli)
    assert (note["prospect"], note["kind"], note["step"]) == (JAMES, "note", None)
    cli("approve", f"{note['id']}@{note['revision']}")
    replay(deps, TUE + timedelta(hours=2), TUE + timedelta(days=2), timedelta(hours=1))

    (msg,) = notes_received(sink)  # exactly one, though two prospects engaged
    assert msg["To"].addresses[0].addr_spec == JAMES
    assert msg["Subject"] == "Thank you, James"
    body = text_of(msg)
    lines = body.splitlines()
    assert "- Elena Park at Northbank" in lines and "- Sam Ortiz at ClearDesk" in lines
    assert "now in touch with 2 people you know:" in body
    # a footer for a referrer, with a working opt-out, not the prospects' one
    assert "because you introduced me to someone you know" in body
    assert "rather not hear from me again" not in body
    assert "Acme Analytics Inc" in body
    links = str(msg["List-Unsubscribe"])
    assert "https://refseq.acme.example/u/" in links and "mailto:" in links
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # timed in James's zone (Tokyo), not in the prospects' (New York)
    assert in_tokyo_hours(msg), msg["Date"]
    with world["deps"].uow_factory() as uow:
        events = [e.action for e in uow.repo.draft_events(note["id"])]
    assert events.count("claim") == 1 and events.count("sent") <= 1
    assert not note_rows(cli) and not note_rows(cli, "approved")


def test_the_report_counts_steps_only_and_equals_a_recount_of_the_raw_rows(world, db_url):
    """Issue 13.8: no "step 1001", nothing counted against a note, edges count what the
    prospect received: every figure equals a recount from the raw tables."""
    deps, sink, cli = world["deps"], world["sink"], world["cli"]
    run_pass(deps, MON)
    answer(world, "elena", INTERESTED.format(name="Elena"), TUE + timedelta(minutes=30))
    run_pass(deps, TUE + timedelta(hours=1))
    (note,) = note_rows(cli)
    cli("approve", str(note["id"]))
    replay(deps, TUE + timedelta(hours=2), TUE + timedelta(days=2), timedelta(hours=1))
    assert len(notes_received(sink)) == 1
    # Elena then asks to be left alone: that answers her intro, not James's note.
    answer(world, "elena", "Please remove me from your list. Thanks.\n", TUE + timedelta(days=3))
    run_pass(deps, TUE + timedelta(days=3, hours=1), ["poll"])
    check_report_against_raw_rows(cli, db_url)


def check_report_against_raw_rows(cli: Cli, db_url: str) -> None:
    rep = report_json(cli)
    engine = make_engine(db_url)
    try:
        with engine.connect() as c:
            # messages sent *to the prospect*, by step: the raw rows, no refseq code
            per_step = dict(
                c.execute(
                    text(
                        "SELECT d.step_index + 1, count(*) FROM drafts d "
                        "JOIN enrollments e ON e.id = d.enrollment_id "
                        "WHERE d.state = 'sent' AND d.to_email = e.prospect_email "
                        "GROUP BY d.step_index"
                    )
                ).all()
            )
            per_prospect = dict(
                c.execute(
                    text(
                        "SELECT e.prospect_email, count(d.id) FROM enrollments e "
                        "LEFT JOIN drafts d ON d.enrollment_id = e.id AND d.state = 'sent' "
                        "AND d.to_email = e.prospect_email GROUP BY e.prospect_email"
                    )
                ).all()
            )
            outcome = (
                "SELECT count(DISTINCT e.id) FROM enrollments e LEFT JOIN inbound_messages m "
                "ON m.enrollment_id = e.id AND m.klass = :klass "
                "WHERE e.state = :state OR m.id IS NOT NULL"
            )
            replied = c.execute(
                text(outcome), {"klass": "human_reply", "state": "replied"}
            ).scalar_one()
            unsubscribed = c.execute(
                text(outcome), {"klass": "unsubscribe", "state": "unsubscribed"}
            ).scalar_one()
            handed = c.execute(text("SELECT count(DISTINCT enrollment_id) FROM handoffs")).scalar()
    finally:
        engine.dispose()
    rows = {r["group"]: r["all"] for r in rep["rows"]}
    assert set(rows) == {str(s) for s in per_step}  # steps only: no "1001", no "0"
    assert {g: r["sent"] for g, r in rows.items()} == {str(s): n for s, n in per_step.items()}
    assert {e["prospect_email"]: e["messages_sent"] for e in rep["edges"]} == per_prospect
    assert per_prospect["elena.park@northbank.example"] == 1  # one intro, whatever James got
    for key, raw in (("replied", replied), ("handed_off", handed), ("unsubscribed", unsubscribed)):
        assert rep["total"]["all"][key] == raw, key
        assert sum(r[key] for r in rows.values()) == raw, key  # every outcome on some step
    assert (rows["1"]["replied"], rows["1"]["handed_off"], rows["1"]["unsubscribed"]) == (1, 1, 1)


def test_a_prospect_engaging_after_the_note_went_out_waits_for_the_window(world_36h):
    deps, sink, cli = world_36h["deps"], world_36h["sink"], world_36h["cli"]
    run_pass(deps, MON)
    answer(world_36h, "elena", INTERESTED.format(name="Elena"), TUE + timedelta(minutes=30))
    run_pass(deps, TUE + timedelta(hours=1))
    (first,) = note_rows(cli)
    cli("approve", str(first["id"]))
    wed = TUE + timedelta(days=1)
    replay(deps, TUE + timedelta(hours=2), wed + timedelta(minutes=30), timedelta(hours=1))
    (a,) = notes_received(sink)
    assert "Elena Park" in text_of(a) and "Sam Ortiz" not in text_of(a)

    answer(world_36h, "sam", INTERESTED.format(name="Sam"), wed + timedelta(minutes=40))
    run_pass(deps, wed + timedelta(hours=1))
    (second,) = note_rows(cli)
    assert second["id"] != first["id"]
    cli("approve", str(second["id"]))
    replay(deps, wed + timedelta(hours=2), wed + timedelta(days=4), timedelta(hours=1))

    a, b = notes_received(sink)
    assert "Sam Ortiz" in text_of(b) and "Elena Park" not in text_of(b)
    sent_a = email.utils.parsedate_to_datetime(str(a["Date"]))
    sent_b = email.utils.parsedate_to_datetime(str(b["Date"]))
    assert sent_b - sent_a >= timedelta(hours=36), (a["Date"], b["Date"])
    assert in_tokyo_hours(a) and in_tokyo_hours(b)


def test_a_prospect_engaging_while_the_note_waits_joins_it_and_it_needs_approval_again(world):
    deps, sink, cli = world["deps"], world["sink"], world["cli"]
    run_pass(deps, MON)
    answer(world, "elena", INTERESTED.format(name="Elena"), TUE + timedelta(minutes=30))
    run_pass(deps, TUE + timedelta(hours=1))
    (note,) = note_rows(cli)
    cli("approve", f"{note['id']}@{note['revision']}")  # approved, not yet sent (Tokyo night)
    answer(world, "sam", INTERESTED.format(name="Sam"), TUE + timedelta(hours=1, minutes=30))
    run_pass(deps, TUE + timedelta(hours=2))

    (again,) = note_rows(cli)  # the same note, changed: the rep approved other words
    assert again["id"] == note["id"] and again["revision"] > note["revision"]
    assert not notes_received(sink)
    stale = cli.runner.invoke(app, ["approve", f"{note['id']}@{note['revision']}"], env=cli.env)
    assert stale.exit_code != 0 and "revision" in stale.output
    cli("approve", f"{again['id']}@{again['revision']}")
    replay(deps, TUE + timedelta(hours=3), TUE + timedelta(days=2), timedelta(hours=1))
    (msg,) = notes_received(sink)
    assert "Elena Park at Northbank" in text_of(msg) and "Sam Ortiz at ClearDesk" in text_of(msg)


def test_a_redirect_does_not_thank_the_referrer_for_a_conversation(world):
    """ "I'm not the right person": no note claiming "we're now in touch"."""
    deps, cli = world["deps"], world["cli"]
    run_pass(deps, MON)
    body = (
        "Thanks for reaching out. Please talk to my colleague Jane Doe "
        "(jane.doe@northbank.example), she handles this.\n\nElena\n"
    )
    answer(world, "elena", body, TUE + timedelta(minutes=30))
    run_pass(deps, TUE + timedelta(hours=1))
    (handoff,) = cli.json("handoffs")
    assert handoff["intent"] == "redirect"
    every = ("pending_approval", "approved", "sent")
    assert not [r for s in every for r in cli.json("queue", "--state", s) if r["prospect"] == JAMES]


def test_a_handoff_counts_against_the_message_its_reply_answered(world):
    """Elena's answer to the intro crosses the follow-up: written a minute before it goes, it
    reaches the mailbox only after (so the read before sending cannot see it), and the poll
    reads it then. Her reply and her handoff both belong to step 1 (before: replied on 1,
    handed off on 2)."""
    deps, cli = world["deps"], world["cli"]
    run_pass(deps, MON)
    thu = datetime(2026, 11, 26, 13, 59, tzinfo=UTC)
    run_pass(deps, thu + timedelta(minutes=1), ["draft", "send"])  # the follow-up goes out
    assert len(sent_to(world["sink"], "elena")) == 2
    answer(world, "elena", INTERESTED.format(name="Elena"), thu)  # to the intro, dated before
    run_pass(deps, thu + timedelta(hours=1))  # the poll reads her reply now
    rows = {r["group"]: r["all"] for r in report_json(cli)["rows"]}
    assert (rows["1"]["replied"], rows["1"]["handed_off"]) == (1, 1)
    assert (rows["2"]["replied"], rows["2"]["handed_off"]) == (0, 0)


BOUNCE = (
    Path(__file__).parent.parent / "fixtures" / "mail" / "hard_bounce" / "postfix_user_unknown.eml"
)


def test_a_bounced_note_is_about_the_referrer_not_the_prospect(world):
    """James's mailbox rejects the note: James takes no more notes; Elena (who replied) is
    neither counted as bounced nor suppressed."""
    deps, sink, cli = world["deps"], world["sink"], world["cli"]
    run_pass(deps, MON)
    answer(world, "elena", INTERESTED.format(name="Elena"), TUE + timedelta(minutes=30))
    run_pass(deps, TUE + timedelta(hours=1))
    (note,) = note_rows(cli)
    cli("approve", str(note["id"]))
    replay(deps, TUE + timedelta(hours=2), TUE + timedelta(days=1), timedelta(hours=1))
    (msg,) = notes_received(sink)
    raw = (
        BOUNCE.read_bytes()
        .replace(b"ghost@initech.example", JAMES.encode())
        .replace(b"<abc123@acme.example>", str(msg["Message-ID"]).encode())
    )
    at = TUE + timedelta(days=1, hours=1)
    world["dovecot"].append(world["user"], "INBOX", raw, date=at)
    run_pass(deps, at + timedelta(minutes=30), ["poll"])

    suppressed = {s["value"] for s in cli.json("suppress", "list")}
    assert JAMES in suppressed and "elena.park@northbank.example" not in suppressed
    total = report_json(cli)["total"]["all"]
    assert (total["bounced"], total["replied"], total["handed_off"]) == (0, 1, 1)
    (elena,) = [e for e in report_json(cli)["edges"] if e["prospect_email"].startswith("elena")]
    assert elena["outcome"] == "handed_off" and elena["state"] == "replied"


def test_senders_racing_for_a_note_send_it_once(world, uow_factory):
    """Three workers' send passes at the same instant: the outbox claim gives the note to one."""
    deps, sink, cli = world["deps"], world["sink"], world["cli"]
    run_pass(deps, MON)
    answer(world, "elena", INTERESTED.format(name="Elena"), TUE + timedelta(minutes=30))
    run_pass(deps, TUE + timedelta(hours=1))
    (note,) = note_rows(cli)
    cli("approve", str(note["id"]))
    tokyo_morning = TUE + timedelta(hours=11)  # Wednesday 09:00 in Tokyo
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def worker() -> None:
        mine = Deps(
            uow_factory=deps.uow_factory,
            draft_cfg=deps.draft_cfg,
            send_cfg=deps.send_cfg,
            mailer_factory=lambda: SmtpMailer(retry_attempts=1, sleep=lambda s: None),
        )
        try:
            barrier.wait(timeout=10)
            run_pass(mine, tokyo_morning, ["send"])
        except BaseException as exc:
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(notes_received(sink)) == 1
    with uow_factory() as uow:
        view = uow.repo.get_draft(note["id"])
        assert view is not None and view.draft.state.value == "sent"
        assert [e.action for e in uow.repo.draft_events(note["id"])].count("claim") == 1
