from datetime import UTC, datetime, time
from pathlib import Path

from sequencer.core.model import (
    Approval,
    Audience,
    CampaignSpec,
    DataFiles,
    MailboxSpec,
    NamePolicy,
    Prospect,
    Referral,
    Referrer,
    RepSpec,
    RoutingSpec,
    ScheduleSpec,
    Security,
    SendWindow,
    ServerSpec,
    StepSpec,
    Temperature,
    TemperatureRule,
)
from sequencer.core.plan import ExclusionReason, build_plan
from sequencer.core.states import EnrollmentState

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # Monday 10:00 New York
STEP = (StepSpec("warm_intro", None, False, Approval.REQUIRED),)


def spec(policy=NamePolicy.CONSENTED, unnamed=False):
    seqs = {"warm": STEP, "cold": STEP}
    if unnamed:
        seqs["unnamed"] = STEP
    return CampaignSpec(
        name="c",
        source=Path("c.yaml"),
        rep=RepSpec("Rep", "rep@acme.example", "America/New_York"),
        mailbox=MailboxSpec(ServerSpec("h", 25, Security.NONE, "u", None), None, "INBOX", 100, 60),
        data=DataFiles(Path("p"), Path("r"), Path("rr")),
        temperature=TemperatureRule(4, 4, None, policy),
        schedule=ScheduleSpec("prospect", SendWindow((0, 1, 2, 3, 4), time(9), time(17)), ()),
        sequences=seqs,
        postal_address="1 Main St",
        routing=RoutingSpec(True, None, "draft"),
    )


def prospect(email, tz="", row=2):
    return Prospect(email, "First", "Last", "", "", tz, {}, row)


def referrer(rid, ours=5, consent=True):
    return Referrer(rid, rid.title(), "", "", "", False, None, ours, "", consent)


def audience(prospects, referrers, referrals):
    return Audience(tuple(prospects), {r.id: r for r in referrers}, tuple(referrals))


def plan(aud, s=None, **kw):
    args = {"now": NOW, "suppressed": set(), "live_elsewhere": {}, "already": {}}
    args.update(kw)
    return build_plan(s or spec(), aud, **args)


def test_it_enrolls_on_the_strongest_path_and_records_the_others():
    aud = audience(
        [prospect("ana@x.example")],
        [referrer("weak", ours=2), referrer("strong", ours=5)],
        [Referral("weak", "ana@x.example", 5, "a"), Referral("strong", "ana@x.example", 4, "b")],
    )
    (p,) = plan(aud).enroll
    assert (p.path.referrer.id, p.temperature, p.sequence) == ("strong", Temperature.WARM, "warm")
    assert [o.referrer.id for o in p.others] == ["weak"]
    assert p.first_due == NOW and p.zone == "America/New_York"


def test_it_excludes_suppressed_addresses_and_domains_case_insensitively():
    aud = audience(
        [prospect("Ana@X.example", row=2), prospect("bo@blocked.example", row=3)],
        [referrer("r")],
        [Referral("r", "Ana@X.example", 5, ""), Referral("r", "bo@blocked.example", 5, "")],
    )
    result = plan(aud, suppressed={"ana@x.example", "@blocked.example"})
    assert result.enroll == ()
    assert [(e.row, e.reason) for e in result.excluded] == [
        (2, ExclusionReason.SUPPRESSED),
        (3, ExclusionReason.SUPPRESSED),
    ]


def test_it_excludes_prospects_live_in_another_campaign_and_without_referral():
    aud = audience(
        [prospect("a@x.example"), prospect("b@x.example", row=3)],
        [referrer("r")],
        [Referral("r", "a@x.example", 5, "")],
    )
    result = plan(aud, live_elsewhere={"a@x.example": "other"})
    assert [(e.email, e.reason, e.detail) for e in result.excluded] == [
        ("a@x.example", ExclusionReason.ACTIVE_ELSEWHERE, "already in active campaign 'other'"),
        ("b@x.example", ExclusionReason.NO_REFERRAL, "no row in referrals.csv names this prospect"),
    ]


def test_it_holds_a_prospect_whose_referrer_has_not_consented():
    aud = audience(
        [prospect("a@x.example")],
        [referrer("r", consent=False)],
        [Referral("r", "a@x.example", 5, "")],
    )
    result = plan(aud)
    (p,) = result.enroll
    assert p.state is EnrollmentState.HELD and not p.may_name_referrer
    assert "has not consented to be named" in (p.hold_reason or "")
    assert [e.reason for e in result.excluded] == [ExclusionReason.NO_CONSENT]


def test_it_uses_the_unnamed_sequence_when_the_campaign_has_one():
    aud = audience(
        [prospect("a@x.example")],
        [referrer("r", consent=False)],
        [Referral("r", "a@x.example", 5, "")],
    )
    (p,) = plan(aud, spec(unnamed=True)).enroll
    assert (p.state, p.sequence, p.may_name_referrer) == (EnrollmentState.ACTIVE, "unnamed", False)


def test_it_never_names_under_never_but_still_enrolls():
    aud = audience(
        [prospect("a@x.example")], [referrer("r")], [Referral("r", "a@x.example", 5, "")]
    )
    (p,) = plan(aud, spec(NamePolicy.NEVER)).enroll
    assert (p.state, p.sequence, p.may_name_referrer) == (EnrollmentState.ACTIVE, "warm", False)


def test_it_leaves_enrolled_prospects_alone_but_replans_held_ones():
    aud = audience(
        [prospect("a@x.example"), prospect("b@x.example")],
        [referrer("r")],
        [Referral("r", "a@x.example", 5, ""), Referral("r", "b@x.example", 5, "")],
    )
    result = plan(
        aud, already={"a@x.example": EnrollmentState.ACTIVE, "b@x.example": EnrollmentState.HELD}
    )
    assert result.unchanged == 1
    assert [p.prospect.email for p in result.enroll] == ["b@x.example"]


def test_it_schedules_the_first_step_in_the_prospects_zone():
    aud = audience(
        [prospect("a@x.example", tz="Asia/Tokyo")],
        [referrer("r")],
        [Referral("r", "a@x.example", 5, "")],
    )
    (p,) = plan(aud).enroll
    assert p.first_due == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # Tue 09:00 Tokyo
    assert p.first_due_local.hour == 9
