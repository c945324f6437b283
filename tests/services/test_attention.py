"""Settling sends whose outcome is unknown (needs_attention), on real SMTP (aiosmtpd) and IMAP
(Dovecot), SQLite and PostgreSQL: the Sent folder settles what it holds, a person settles the
rest (`refseq attention sent|resend`), and until then the prospect's sequence waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sequencer.core.states import DraftState
from sequencer.services.attention import IMAP_ACTOR, check_sent_folders
from sequencer.services.runner import run_pass
from tests.services.test_replies import (  # noqa: F401  (fixtures)
    MON,
    REP,
    enrollment,
    webhook,
    world,
)

LATER = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # next Monday: every second step is due


def _to(sink, address: str) -> list[str]:
    return [str(r.message["Message-ID"]) for r in sink.handler.received if address in r.rcpt_tos]


def test_unknown_outcomes_are_settled_by_the_sent_folder_or_by_a_person(
    world,  # noqa: F811
    uow_factory,
):
    deps, sink, dovecot, cli = world["deps"], world["sink"], world["dovecot"], world["cli"]
    sink.handler.drop_after_data = 2  # delivered, then the connection drops before the reply
    run_pass(deps, MON)
    listed = cli.json("attention", "list")
    assert len(listed) == 2
    found, missing = listed
    assert all(x["data_started_at"] for x in listed)

    # The server filed a copy of the first in the Sent folder (as Google Workspace does).
    (copy,) = [
        r.data for r in sink.handler.received if r.message["Message-ID"] == found["message_id"]
    ]
    dovecot.append(world["user"], "Sent", copy)
    # The workers' next poll looks there (the campaign names imap.sent_folder) and settles it.
    report = run_pass(deps, MON + timedelta(minutes=5), ["poll"]).attention
    assert report is not None
    assert (report.found, report.not_found, report.errors) == ([found["id"]], [missing["id"]], [])
    with uow_factory() as uow:
        settled = uow.repo.get_draft(found["id"])
        events = uow.repo.draft_events(found["id"])
    assert settled is not None and settled.draft.state is DraftState.SENT
    assert (events[-1].actor, events[-1].action) == (IMAP_ACTOR, "sent")
    assert [x["id"] for x in cli.json("attention", "list")] == [missing["id"]]

    # A week on: the settled prospect gets the follow-up; the unsettled one's sequence waits.
    run_pass(deps, LATER)
    assert len(_to(sink, found["to"])) == 2
    assert _to(sink, missing["to"]) == [missing["message_id"]]

    # A person learns it never arrived: the same message goes again, once, and the sequence
    # moves on from there.
    cli("attention", "resend", str(missing["id"]), "--by", REP, "--now", LATER.isoformat())
    run_pass(deps, LATER)
    assert _to(sink, missing["to"]) == [missing["message_id"]] * 2
    with uow_factory() as uow:
        resent = uow.repo.get_draft(missing["id"])
    assert resent is not None and resent.draft.state is DraftState.SENT
    assert enrollment(uow_factory, missing["to"]).steps_done == 1
    assert cli.json("attention", "list") == []

    # Settling twice is refused with the state machine's reason; nothing changes.
    refused = cli("attention", "sent", str(found["id"]), code=1)
    assert "cannot 'sent' from state 'sent'" in refused.stderr
    assert len(_to(sink, found["to"])) == 2


def test_a_person_can_confirm_delivery_and_the_sequence_moves_on(
    world,  # noqa: F811
    uow_factory,
):
    deps, sink, cli = world["deps"], world["sink"], world["cli"]
    sink.handler.drop_after_data = 1
    run_pass(deps, MON)
    (stuck,) = cli.json("attention", "list")
    run_pass(deps, LATER)
    assert len(_to(sink, stuck["to"])) == 1  # waiting for a person

    assert deps.reader is not None and deps.inbox_cfg is not None
    nothing = check_sent_folders(uow_factory, deps.reader, deps.inbox_cfg.env, LATER)
    assert (nothing.found, nothing.not_found) == ([], [stuck["id"]])  # no copy: proves nothing
    out = cli("attention", "sent", str(stuck["id"]), "--by", REP, "--now", LATER.isoformat())
    assert "sent" in out.stdout
    run_pass(deps, LATER)
    assert len(_to(sink, stuck["to"])) == 2  # confirmed: its follow-up went, nothing resent
    assert _to(sink, stuck["to"]).count(stuck["message_id"]) == 1
