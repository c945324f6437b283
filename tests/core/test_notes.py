"""Thank-you notes, the pure parts: the window setting, the referrer's zone, one note naming
several prospects, the referrer footer; and the referrer ``timezone`` column."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sequencer.core.drafts import DraftConfig
from sequencer.core.notes import NOTE_INDEX, build_note, note_zone, referrer_key
from sequencer.core.ports import EnrollmentRecord
from sequencer.core.specjson import spec_from_json, spec_to_json
from sequencer.core.states import DraftKind, DraftState, EnrollmentState
from tests.core.test_audience import referrers, rendered
from tests.core.test_spec import FULL, check, edit, folder  # noqa: F401 (fixture)

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
SHIPPED = Path(__file__).resolve().parents[2] / "templates" / "email"
CFG = DraftConfig("k" * 32, "https://refseq.acme.example", SHIPPED)


def _spec(text: str = FULL):
    from sequencer.core.spec import load_campaign

    Path("camp.yaml").write_text(text)
    spec, errors, _ = load_campaign(Path("camp.yaml"))
    assert spec is not None, [e.render() for e in errors]
    return spec


def _enrollment(i: int, first: str, last: str, company: str, named: bool) -> EnrollmentRecord:
    return EnrollmentRecord(
        id=i,
        campaign_id=1,
        prospect_key=f"{first.lower()}@{company.lower()}.example",
        prospect_email=f"{first.lower()}@{company.lower()}.example",
        prospect={"first_name": first, "last_name": last, "company": company},
        referrer={"id": "james", "name": "James Hervin", "email": "James@Pixel.example"},
        referral={"context": "colleagues", "strength": 5},
        other_referrals=[],
        temperature="warm",
        sequence="warm",
        may_name_referrer=named,
        reason="",
        state=EnrollmentState.REPLIED,
        hold_reason=None,
        steps_done=1,
        soft_bounces=0,
        next_due_at=None,
        paused_until=None,
        created_at=NOW,
        updated_at=NOW,
    )


def test_the_window_is_a_day_by_default_configurable_and_checked(folder) -> None:  # noqa: F811
    assert _spec().routing.thank_window_seconds == 86_400
    text = edit(FULL, '  thank_referrer: "off"\n', '  thank_referrer: "off"\n  thank_window: 36h\n')
    spec = _spec(text)
    assert spec.routing.thank_window_seconds == 36 * 3600
    assert spec_from_json(spec_to_json(spec)).routing == spec.routing
    too_short = edit(
        FULL, '  thank_referrer: "off"\n', '  thank_referrer: "off"\n  thank_window: 5m\n'
    )
    (error,) = check(too_short)
    assert "routing.thank_window: expected a duration from 3600 to 2592000 seconds" in error
    assert error.startswith("camp.yaml:53:17:")


def test_a_note_goes_in_the_referrers_zone_else_the_reps(folder) -> None:  # noqa: F811
    spec = _spec()
    assert note_zone({"timezone": "Asia/Tokyo"}, spec) == ZoneInfo("Asia/Tokyo")
    assert note_zone({}, spec) == ZoneInfo(spec.rep.timezone)
    assert note_zone({"timezone": "Mars/Base"}, spec) == ZoneInfo(spec.rep.timezone)


def test_one_note_names_every_prospect_and_has_a_referrer_footer(folder) -> None:  # noqa: F811
    spec = _spec()
    elena = _enrollment(1, "Elena", "Park", "Northbank", named=True)
    sam = _enrollment(2, "Sam", "Ortiz", "ClearDesk", named=False)
    note = build_note(spec, elena, 1, [elena, sam], CFG, NOW)
    assert (note.kind, note.step_index, note.state) == (
        DraftKind.NOTE,
        NOTE_INDEX,
        DraftState.PENDING_APPROVAL,
    )
    assert note.to_email == "James@Pixel.example" and referrer_key(elena) == "james@pixel.example"
    assert "- Elena Park at Northbank\n" in note.text
    assert "- Sam Ortiz at ClearDesk (I kept your name out of it)\n\nI'll let you" in note.text
    assert note.message is not None
    msg = email.message_from_bytes(note.message, policy=email.policy.default)
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "because you introduced me to someone you know" in body
    assert "rather not hear from me again" not in body
    assert str(msg["To"]) == "James Hervin <James@Pixel.example>"
    alone = build_note(spec, elena, 1, [elena], CFG, NOW)
    assert "Elena Park at Northbank and I are now in touch" in alone.text
    unnamed = build_note(spec, sam, 2, [replace(sam)], CFG, NOW)
    assert "I kept your name out of it" in unnamed.text


def test_a_referrers_timezone_is_optional_and_checked() -> None:
    kept, problems, _ = referrers(
        "id,name,our_strength,timezone\na,Ann,3,Asia/Tokyo\nb,Bob,3,\nc,Cy,3,Europe/Pariss\n"
    )
    assert rendered(problems) == [
        "referrers.csv: row 4: timezone: 'Europe/Pariss' is not a known IANA time zone "
        "(did you mean Europe/Paris?)"
    ]
    assert [(r.id, r.timezone) for r in kept] == [("a", "Asia/Tokyo"), ("b", "")]
    assert kept[0].fields()["timezone"] == "Asia/Tokyo" and "timezone" not in kept[1].fields()
