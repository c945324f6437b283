"""`refseq demo` end to end: its outcome is read back from the database, not from its output."""

from __future__ import annotations

import mailbox
import re
import stat
from email import message_from_bytes, policy
from pathlib import Path

from typer.testing import CliRunner

from sequencer.adapters.cli.main import app
from sequencer.adapters.db.session import make_uow_factory
from sequencer.core.states import DraftKind, DraftState, EnrollmentState
from sequencer.core.tokens import verify_unsubscribe_token


def test_the_demo_runs_the_whole_job_and_ends_in_the_right_state(tmp_path: Path):
    folder = tmp_path / "demo"
    result = CliRunner().invoke(
        app,
        ["demo", "--dir", str(folder), "--start", "2026-11-30T13:00:00+00:00"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    factory = make_uow_factory(f"sqlite:///{folder / 'refseq.db'}")
    try:
        with factory() as uow:
            (summary,) = uow.repo.list_campaigns()
            enrollments = {
                e.prospect_email: e for e in uow.repo.list_enrollments(summary.campaign.id)
            }
            sent = uow.repo.list_drafts([DraftState.SENT])
            handoffs = uow.repo.list_handoffs(states=("open", "handled"))
            suppressed = uow.repo.suppressed_values()
            inbound = {i.from_addr: i.klass for i in uow.repo.list_inbound()}
    finally:
        factory.dispose()
    states = {k.split("@")[0]: e.state for k, e in enrollments.items()}
    assert states == {
        "elena.park": EnrollmentState.REPLIED,  # interested: stopped and handed to the rep
        "john.reyes": EnrollmentState.COMPLETED,  # out of office: paused, then resumed
        "priya.nair": EnrollmentState.BOUNCED,
        "marc.dubois": EnrollmentState.UNSUBSCRIBED,
        "sam.ortiz": EnrollmentState.COMPLETED,  # silence: the whole sequence
        "aiko.tanaka": EnrollmentState.COMPLETED,
    }
    steps = {}
    for v in sent:
        step = v.draft.step_number if v.draft.kind is DraftKind.STEP else "note"
        steps.setdefault(v.draft.to_email.split("@")[0], []).append(step)
    assert {k: sorted(v) for k, v in steps.items()} == {
        "elena.park": [1],
        "john.reyes": [1, 2],
        "priya.nair": [1],
        "marc.dubois": [1],
        "sam.ortiz": [1, 2],
        "aiko.tanaka": [1, 2],
        "james": ["note"],  # + the thank-you to James: a note, not a step
    }
    (handoff,) = handoffs
    assert (handoff.enrollment_id, handoff.intent) == (
        enrollments["elena.park@northbank.example"].id,
        "interested",
    )
    assert handoff.notified_at is not None
    assert {"priya.nair@fintrust.example", "marc.dubois@paysage.example"} <= suppressed
    assert inbound["john.reyes@ledgerline.example"] == "auto_reply"
    john_follow_up = next(
        v for v in sent if v.draft.to_email.startswith("john") and v.draft.step_number == 2
    )
    assert john_follow_up.draft.sent_at is not None
    box = mailbox.mbox(str(folder / "sent.mbox"))
    count = len(box)
    first = box[0].as_bytes()
    box.close()
    assert count == len(sent) + 1  # every message, plus the handoff notice to the rep
    # No configuration, yet no public key: the demo generated its own, 0600, in its folder,
    # and its unsubscribe links are signed with it (not with the old fixed demo key).
    key_file = folder / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    msg = message_from_bytes(first, policy=policy.default)
    body = msg.get_body(("plain",))
    assert body is not None
    (token,) = re.findall(r"http://127\.0\.0\.1:8000/u/(\S+)", body.get_content())
    assert verify_unsubscribe_token(key, token) is not None
    assert verify_unsubscribe_token("refseq-demo-secret-key", token) is None
    assert (folder / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
