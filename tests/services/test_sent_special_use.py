"""Unknown send outcomes are settled from the Sent folder found by SPECIAL-USE (RFC 6154),
with nothing configured: real SMTP (aiosmtpd), real IMAP (Dovecot, whose ``\\Sent`` folder is
"Gesendete Elemente" while an unmarked "Sent" is a decoy), SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sequencer.core.states import DraftState
from sequencer.services.attention import IMAP_ACTOR
from sequencer.services.runner import run_pass
from tests.services.test_replies import (  # noqa: F401  (fixtures)
    MON,
    webhook,
    world,
)

MARKED = "Gesendete Elemente"  # the folder tests/dovecot.py marks \Sent


def test_every_poll_settles_unknown_sends_from_the_special_use_sent_folder(
    world,  # noqa: F811
    uow_factory,
    tmp_path: Path,
):
    deps, sink, dovecot, cli = world["deps"], world["sink"], world["dovecot"], world["cli"]
    yaml = tmp_path / "camp" / "campaign.yaml"  # the world's campaign, minus its sent_folder
    yaml.write_text(yaml.read_text().replace(", sent_folder: Sent}", "}"))
    cli("launch", str(yaml), "--now", MON.isoformat())
    with uow_factory() as uow:
        assert "sent_folder" not in str(uow.repo.list_campaigns()[0].campaign.spec)

    sink.handler.drop_after_data = 2  # delivered, then the connection drops before the reply
    run_pass(deps, MON)
    found, decoy = cli.json("attention", "list")
    raw = {str(r.message["Message-ID"]): r.data for r in sink.handler.received}
    dovecot.append(world["user"], MARKED, raw[found["message_id"]])
    dovecot.append(
        world["user"], "Sent", raw[decoy["message_id"]]
    )  # a folder named so proves nothing

    report = run_pass(deps, MON + timedelta(minutes=5), ["poll"]).attention
    assert report is not None
    assert (report.found, report.not_found, report.errors) == ([found["id"]], [decoy["id"]], [])
    with uow_factory() as uow:
        settled = uow.repo.get_draft(found["id"])
        events = uow.repo.draft_events(found["id"])
    assert settled is not None and settled.draft.state is DraftState.SENT
    assert (events[-1].actor, events[-1].action) == (IMAP_ACTOR, "sent")
    assert [x["id"] for x in cli.json("attention", "list")] == [decoy["id"]]

    # Every poll looks again: once the server files the other one, it is settled too.
    dovecot.append(world["user"], MARKED, raw[decoy["message_id"]])
    again = run_pass(deps, MON + timedelta(minutes=6), ["poll"]).attention
    assert again is not None and again.found == [decoy["id"]]
    assert cli.json("attention", "list") == []
