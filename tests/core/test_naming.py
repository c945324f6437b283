"""The naming gate: the ledger's latest applicable change wins, flags and detractors block."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sequencer.core.model import NamePolicy, TemperatureRule
from sequencer.core.naming import ConsentChange, NamingGate, Via, is_detractor

T0 = datetime(2026, 12, 1, tzinfo=UTC)
RULE = TemperatureRule(4, 4, None, NamePolicy.CONSENTED)


def change(n: int, granted: bool, prospect: str | None = None) -> ConsentChange:
    return ConsentChange("r1", prospect, granted, "ops", Via.CLI, T0 + timedelta(hours=n), id=n)


def test_the_latest_change_that_applies_wins_and_the_csv_only_until_there_is_one() -> None:
    assert NamingGate().block("r1", 9, True, "p@x.example", RULE) is None
    assert NamingGate().block("r1", 9, False, "p@x.example", RULE) is not None
    gate = NamingGate((change(1, False), change(2, True, "p@x.example")))
    assert gate.block("r1", 9, True, "p@x.example", RULE) is None  # granted for p, later
    why = gate.block("r1", 9, True, "q@x.example", RULE, "Rae One")
    assert why is not None and "Rae One (r1) revoked consent (by ops via cli" in why
    later = gate.with_changes([change(3, False)])  # a referrer-wide revocation after p's grant
    assert later.block("r1", 9, True, "p@x.example", RULE) is not None


def test_a_flag_or_a_detractor_blocks_even_when_the_campaign_always_names() -> None:
    always = TemperatureRule(4, 4, None, NamePolicy.ALWAYS)
    assert NamingGate().block("r1", 9, False, None, always) is None
    assert "flagged" in str(
        NamingGate(flagged=frozenset({"r1"})).block("r1", 9, True, None, always)
    )
    assert "detractor (NPS 6 < 7)" in str(NamingGate().block("r1", 6, True, None, always))


def test_a_detractor_is_below_min_nps_or_at_most_6_without_one() -> None:
    assert is_detractor(6, RULE) and not is_detractor(7, RULE) and not is_detractor(None, RULE)
    strict = TemperatureRule(4, 4, 9, NamePolicy.CONSENTED)
    assert is_detractor(8, strict) and not is_detractor(9, strict)


def test_drafting_sees_other_referrers_as_the_ledger_says_now() -> None:
    from sequencer.core.ports import EnrollmentRecord
    from sequencer.core.states import EnrollmentState
    from sequencer.services.consent import referrer_ids, with_live_others

    others = [
        {"referrer_id": "r1", "name": "Rae One", "may_name": True},
        {"referrer_id": "r2", "name": "Ro Two", "may_name": True},
        {"referrer_id": "r3", "name": "Ri Three", "may_name": False},
    ]
    e = EnrollmentRecord(
        1, 1, "p@x.example", "p@x.example", {}, {"id": "r0"}, {}, others, "warm", "warm", True,
        "", EnrollmentState.ACTIVE, None, 0, None, None, T0, T0,
    )  # fmt: skip
    assert referrer_ids(e) == {"r0", "r1", "r2", "r3"}
    gate = NamingGate((change(1, False),), frozenset({"r2"}))  # r1 revoked, r2 flagged
    live = with_live_others(gate, e, RULE)
    assert [o["may_name"] for o in live.other_referrals] == [False, False, False]
    assert with_live_others(NamingGate(), e, RULE) is e  # nothing turns naming on
