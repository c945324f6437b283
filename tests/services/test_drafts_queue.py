"""Drafts and the rep's approval queue through the real CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sequencer.core.states import DraftState
from sequencer.core.tokens import verify_unsubscribe_token
from tests.cli_helpers import NOW, Cli, init_example

TUESDAY = "2026-11-24T10:00:00+00:00"
SECRET = "test-secret-key-0123456789"


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    c = Cli(db_url, tmp_path)
    c.env.update(
        {
            "REFSEQ_SECRET_KEY": SECRET,
            "REFSEQ_BASE_URL": "https://refseq.acme.example",
            "REFSEQ_ACTOR": "dana@acme.example",
        }
    )
    return c


@pytest.fixture
def launched(cli: Cli, tmp_path: Path) -> Path:
    yaml = init_example(cli, tmp_path / "camp")
    cli("launch", str(yaml), "--now", NOW)
    return yaml


def pending(cli: Cli, *extra: str) -> dict[str, dict]:
    return {d["prospect"]: d for d in cli.json("queue", *extra)}


def test_tick_drafts_due_steps_once_and_respects_each_prospects_window(cli, launched):
    first = cli.json("tick", "--now", NOW, "--only", "draft")
    assert (first["drafts_created"], first["auto_approved"], first["errors"]) == (3, 0, [])
    assert set(pending(cli)) == {
        "elena.park@northbank.example",
        "john.reyes@ledgerline.example",
        "sam.ortiz@cleardesk.example",
    }
    assert cli.json("tick", "--now", NOW)["drafts_created"] == 0  # running twice creates nothing
    assert (
        cli.json("tick", "--now", TUESDAY)["drafts_created"] == 3
    )  # London, Paris, Tokyo mornings
    rows = pending(cli)
    assert len(rows) == 6
    assert {r["step"] for r in rows.values()} == {1}
    assert rows["aiko.tanaka@kumo.example"]["named"] is False
    assert set(pending(cli, "--campaign", "q4-fintech-intros")) == set(rows)
    assert pending(cli, "--campaign", "nope") == {}
    assert set(pending(cli, "--rep", "DANA@acme.example")) == set(rows)
    assert pending(cli, "--rep", "someone@else.example") == {}


def _message(cli, draft_id):
    shown = cli.json("show", str(draft_id))
    return shown, email.message_from_string(shown["message"], policy=email.policy.default)


def test_a_warm_draft_names_the_referrer_and_carries_unsubscribe_headers(cli, launched):
    cli("tick", "--now", NOW)
    john = pending(cli)["john.reyes@ledgerline.example"]
    shown, msg = _message(cli, john["id"])
    body = msg.get_body(("plain",)).get_content()
    assert "Jon Smith" in body and "worked with our CTO Jim Walsh" in body
    assert "your former colleague on the security team at Altex" in body
    assert "Acme Analytics Inc, 100 Main St, Springfield, MA 01101" in body
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = (part.strip(" <>") for part in msg["List-Unsubscribe"].split(","))
    assert mailto == "mailto:dana@acme.example?subject=unsubscribe"
    assert https.startswith("https://refseq.acme.example/u/") and https in body
    token = https.rsplit("/", 1)[1]
    assert verify_unsubscribe_token(SECRET, token) == (
        "john.reyes@ledgerline.example",
        "q4-fintech-intros",
    )
    assert verify_unsubscribe_token("another-secret-0123456789", token) is None
    assert msg["Message-ID"].endswith("@acme.example>")
    assert msg["From"] == "Dana Whitfield <dana@acme.example>"
    assert shown["referral"]["context"] == "your former colleague on the security team at Altex"


def test_an_unnamed_draft_never_mentions_the_referrer(cli, launched):
    cli("tick", "--now", TUESDAY)
    aiko = pending(cli)["aiko.tanaka@kumo.example"]
    _, msg = _message(cli, aiko["id"])
    text = msg.as_string()
    assert "Omar" not in text and "Haddad" not in text and "Quanta" not in text


def test_edit_is_revalidated_audited_and_guards_stale_approvals(cli, launched, tmp_path):
    cli("tick", "--now", NOW)
    draft = pending(cli)["elena.park@northbank.example"]
    did, rev = draft["id"], draft["revision"]
    bad = tmp_path / "bad.txt"
    bad.write_text("Hi {{ prospect.first_name }},\nthanks\n")
    err = cli("edit", str(did), "--body-file", str(bad), code=1).stderr
    assert "body line 1: a template placeholder '{{' is left in" in err
    assert (
        "the subject contains a line break"
        in cli("edit", str(did), "--subject", "Hi\nBcc: x@evil.example", code=1).stderr
    )

    good = tmp_path / "good.txt"
    good.write_text("Hi Elena,\n\nJames suggested we talk. Coffee next week?\n\nDana\n")
    out = cli(
        "edit", str(did), "--subject", "James suggested we talk", "--body-file", str(good)
    ).stdout
    assert f"revision {rev + 1}" in out
    stale = cli("approve", f"{did}@{rev}", code=1).stderr
    assert f"draft {did} changed since you saw it (revision {rev}, now {rev + 1})" in stale
    assert "approved" in cli("approve", f"{did}@{rev + 1}").stdout
    assert "already approved" in cli("approve", str(did)).stdout  # approving twice is harmless

    shown, msg = _message(cli, did)
    assert shown["state"] == "approved" and msg["Subject"] == "James suggested we talk"
    assert "Coffee next week?" in msg.get_body(("plain",)).get_content()
    assert msg.get_body(("html",)) is None  # the template's HTML no longer matches the edit
    assert [(e["actor"], e["action"]) for e in shown["events"]] == [
        ("refseq", "created"),
        ("dana@acme.example", "edit"),
        ("dana@acme.example", "approve"),
    ]


def test_reject_and_bulk_approve(cli, launched, uow_factory):
    cli("tick", "--now", NOW)
    rows = pending(cli)
    sam = rows.pop("sam.ortiz@cleardesk.example")
    assert "--reason" in cli("reject", str(sam["id"]), code=2).stderr
    cli("reject", str(sam["id"]), "--reason", "Sam is already talking to our CEO")
    assert "cannot 'approve' from state 'rejected'" in cli("approve", str(sam["id"]), code=1).stderr
    cli("approve", "--all", "--campaign", "q4-fintech-intros")
    assert pending(cli) == {}
    with uow_factory() as uow:
        views = uow.repo.list_drafts(list(DraftState))
        states = {v.draft.to_email: (v.draft.state, v.draft.reason) for v in views}
    assert states == {
        "sam.ortiz@cleardesk.example": (DraftState.REJECTED, "Sam is already talking to our CEO"),
        **dict.fromkeys(rows, (DraftState.APPROVED, None)),
    }


def test_a_threaded_follow_up_replies_to_the_first_message(cli, launched, uow_factory):
    cli("tick", "--now", NOW)
    john = pending(cli)["john.reyes@ledgerline.example"]
    later = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    with uow_factory() as uow:  # what the sender will do once step 1 has gone out
        first = uow.repo.get_draft(john["id"])
        uow.repo.update_draft(first.draft.id, first.draft.revision, later, state=DraftState.SENT)
        uow.repo.update_enrollment(first.enrollment.id, later, steps_done=1, next_due_at=later)
        uow.commit()
    # drafting only: the campaign's SMTP is the example's 127.0.0.1:2525, which no test opened
    assert cli.json("tick", "--now", later.isoformat(), "--only", "draft")["auto_approved"] == 1
    with uow_factory() as uow:
        (follow_up,) = [d for d in uow.repo.drafts_of(first.enrollment.id) if d.step_index == 1]
    assert follow_up.state is DraftState.APPROVED  # warm step 2 is `approval: auto`
    _, msg = _message(cli, follow_up.id)
    assert msg["Subject"] == f"Re: {first.draft.subject}"
    assert msg["In-Reply-To"] == first.draft.message_id
    assert msg["References"] == first.draft.message_id


def test_another_reps_draft_is_invisible_through_the_service(cli, launched, uow_factory):
    from sequencer.errors import NotFound
    from sequencer.services import approval

    cli("tick", "--now", NOW)
    did = next(iter(pending(cli).values()))["id"]
    with pytest.raises(NotFound, match=f"no draft {did}"):
        approval.show(uow_factory, did, rep_email="mallory@acme.example")
    results = approval.approve(
        uow_factory, [did], "mallory", datetime.now(UTC), rep_email="mallory@acme.example"
    )
    assert [r.ok for r in results] == [False]
    assert approval.show(uow_factory, did)[0].draft.state is DraftState.PENDING_APPROVAL


def test_edit_opens_the_editor_and_records_who_changed_what(cli, launched, tmp_path):
    cli("tick", "--now", NOW)
    draft = pending(cli)["john.reyes@ledgerline.example"]
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import sys, pathlib\n"
        "p = pathlib.Path(sys.argv[1])\n"
        "t = p.read_text().replace('20-minute call', '15-minute call')\n"
        "p.write_text(t.replace('Subject: ', 'Subject: Quick intro: ', 1))\n"
    )
    import sys

    cli.env["EDITOR"] = f"{sys.executable} {editor}"
    out = cli("edit", str(draft["id"])).stdout
    assert f"revision {draft['revision'] + 1}" in out
    shown = cli.json("show", str(draft["id"]))
    assert shown["subject"] == "Quick intro: " + draft["subject"]
    assert "15-minute call" in shown["text"] and "20-minute call" not in shown["text"]
    (edit,) = [e for e in shown["events"] if e["action"] == "edit"]
    assert edit["actor"] == "dana@acme.example"
    assert edit["before"]["subject"] == draft["subject"]
    assert edit["after"]["subject"] == "Quick intro: " + draft["subject"]
