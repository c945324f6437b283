"""The report's figures on hand-made facts (pure: no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sequencer.core.report import (
    EnrollmentFact,
    Facts,
    Funnel,
    HandoffFact,
    InboundFact,
    SendFact,
    build_report,
)

T0 = datetime(2026, 11, 23, 14, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


def enrollment(i: int, temperature: str, referrer: str, *, named=True, state="active", camp="c1"):
    return EnrollmentFact(
        enrollment_id=i,
        campaign=camp,
        temperature=temperature,
        sequence=temperature if named else "unnamed",
        referrer_id=referrer,
        referrer_name=referrer.title(),
        named=named,
        prospect_email=f"p{i}@x.example",
        state=state,
        enrolled_at=T0 - D,
    )


def send(i: int, step: int, at: datetime, template: str | None = None) -> SendFact:
    return SendFact(i, step, template or f"t{step}", at)


# 1 warm  ann    named   step1 T0, step2 T0+3d; human reply (interested) T0+3d+5h, handoff
# 2 warm  ann    named   step1 T0; auto reply T0+1h; human reply (question) T0+2d
# 3 warm  bob    named   step1 T0; hard bounce T0+10m (state bounced)
# 4 cold  bob    named   step1 T0+1h, step2 T0+4d; unsubscribe T0+4d+1h (state unsubscribed)
# 5 cold  cy     unnamed step1 T0; human reply (interested) T0+6h, handoff
# 6 cold  cy     named   held, never sent
# 7 cold  ann    named   state replied (no inbound row), step1 T0
FACTS = Facts(
    enrollments=[
        enrollment(1, "warm", "ann", state="replied"),
        enrollment(2, "warm", "ann", state="replied"),
        enrollment(3, "warm", "bob", state="bounced"),
        enrollment(4, "cold", "bob", state="unsubscribed"),
        enrollment(5, "cold", "cy", named=False, state="replied"),
        enrollment(6, "cold", "cy", state="held"),
        enrollment(7, "cold", "ann", state="replied", camp="c2"),
    ],
    sends=[
        send(1, 1, T0),
        send(1, 2, T0 + 3 * D),
        send(2, 1, T0),
        send(3, 1, T0),
        send(4, 1, T0 + H),
        send(4, 2, T0 + 4 * D),
        send(5, 1, T0, template="unnamed_intro"),
        send(7, 1, T0),
    ],
    inbound=[
        InboundFact(1, "human_reply", "interested", T0 + 3 * D + 5 * H),
        InboundFact(1, "human_reply", "question", T0 + 4 * D),  # a second reply: ignored
        InboundFact(2, "auto_reply", None, T0 + H),
        InboundFact(2, "human_reply", "question", T0 + 2 * D),
        InboundFact(3, "hard_bounce", None, T0 + timedelta(minutes=10)),
        InboundFact(4, "unsubscribe", None, T0 + 4 * D + H),
        InboundFact(5, "human_reply", "interested", T0 + 6 * H),
        InboundFact(5, "soft_bounce", None, T0 + 7 * H),  # never a figure
        InboundFact(99, "human_reply", "interested", T0),  # another campaign's enrollment
    ],
    handoffs=[
        HandoffFact(1, T0 + 3 * D + 6 * H),
        HandoffFact(5, T0 + 7 * H),
    ],
)


def counts(f: Funnel) -> tuple[int, ...]:
    return tuple(f.counts().values())


# enrolled, sent, bounced, auto_replied, replied, interested, unsubscribed, handed_off
def test_total_and_warm_versus_cold():
    r = build_report(FACTS, "temperature")
    assert counts(r.total.all) == (7, 6, 1, 1, 4, 2, 1, 2)
    assert counts(r.total.warm) == (3, 3, 1, 1, 2, 1, 0, 1)
    assert counts(r.total.cold) == (4, 3, 0, 0, 2, 1, 1, 1)
    assert [row.group for row in r.rows] == ["warm", "cold"]
    warm, cold = r.rows
    assert warm.all == r.total.warm and cold.all == r.total.cold
    assert counts(warm.cold) == (0, 0, 0, 0, 0, 0, 0, 0)

    assert r.total.all.reply_rate == pytest.approx(4 / 6)
    assert r.total.all.send_rate == pytest.approx(6 / 7)
    assert r.total.warm.bounce_rate == pytest.approx(1 / 3)
    assert r.total.cold.unsubscribe_rate == pytest.approx(1 / 3)
    assert r.total.all.handoff_rate == pytest.approx(2 / 6)
    assert r.total.all.interested_rate == pytest.approx(2 / 6)
    # first send → first human reply: #1 3d5h, #2 2d, #5 6h (#7 has no reply row)
    assert r.total.warm.median_first_reply_seconds == (2 * D + (3 * D + 5 * H)).total_seconds() / 2
    assert r.total.cold.median_first_reply_seconds == (6 * H).total_seconds()
    assert r.total.all.median_first_reply_seconds == (2 * D).total_seconds()


def test_by_step_counts_messages_and_gives_each_outcome_to_the_message_it_answers():
    r = build_report(FACTS, "step")
    assert [(row.group, row.label) for row in r.rows] == [("1", "step 1"), ("2", "step 2")]
    step1, step2 = r.rows
    # step 1: six messages; #2's replies, #3's bounce, #5's reply+handoff, #7's stateful reply
    assert counts(step1.all) == (6, 6, 1, 1, 3, 1, 0, 1)
    # step 2: #1's interested reply and handoff, #4's unsubscribe
    assert counts(step2.all) == (2, 2, 0, 0, 1, 1, 1, 1)
    assert counts(step2.warm) == (1, 1, 0, 0, 1, 1, 0, 1)
    assert step1.all.median_first_reply_seconds == (2 * D + 6 * H).total_seconds() / 2
    assert step2.all.median_first_reply_seconds == (3 * D + 5 * H).total_seconds()
    # the total still counts enrollments, not messages
    assert r.total.all.sent == 6


def test_by_template_and_by_campaign():
    by_template = {row.group: row.all for row in build_report(FACTS, "template").rows}
    assert list(by_template) == ["t1", "t2", "unnamed_intro"]
    assert counts(by_template["t1"]) == (5, 5, 1, 1, 2, 0, 0, 0)
    assert counts(by_template["unnamed_intro"]) == (1, 1, 0, 0, 1, 1, 0, 1)
    by_campaign = {row.group: row.all for row in build_report(FACTS, "campaign").rows}
    assert counts(by_campaign["c1"]) == (6, 5, 1, 1, 3, 2, 1, 2)
    assert counts(by_campaign["c2"]) == (1, 1, 0, 0, 1, 0, 0, 0)


def test_by_referrer_is_labelled_with_the_name():
    rows = {row.group: row for row in build_report(FACTS, "referrer").rows}
    assert {g: r.label for g, r in rows.items()} == {"ann": "Ann", "bob": "Bob", "cy": "Cy"}
    assert counts(rows["ann"].all) == (3, 3, 0, 1, 3, 1, 0, 1)
    assert counts(rows["cy"].all) == (2, 1, 0, 0, 1, 1, 0, 1)


def test_leaderboard_counts_named_sent_intros_only_and_sorts_by_handoffs_then_replies():
    board = build_report(FACTS).referrers
    assert [
        (r.referrer_id, r.enrolled, r.intros, r.replies, r.interested, r.handoffs) for r in board
    ] == [
        ("ann", 3, 3, 3, 1, 1),
        ("bob", 2, 2, 0, 0, 0),
        ("cy", 2, 0, 0, 0, 0),  # #5 did not name cy, #6 was never sent
    ]
    assert board[0].conversion_rate == pytest.approx(1 / 3)
    assert board[2].conversion_rate == 0.0


def test_edges_say_what_came_of_each_referral():
    edges = {e.prospect_email: e for e in build_report(FACTS).edges}
    assert {p: e.outcome for p, e in edges.items()} == {
        "p1@x.example": "handed_off",
        "p2@x.example": "replied",
        "p3@x.example": "bounced",
        "p4@x.example": "unsubscribed",
        "p5@x.example": "handed_off",
        "p6@x.example": "not_sent",
        "p7@x.example": "replied",
    }
    assert edges["p1@x.example"].intent == "interested"
    assert edges["p1@x.example"].messages_sent == 2
    assert edges["p2@x.example"].intent == "question"
    assert edges["p6@x.example"].first_sent_at is None
    order = [e.referrer_id for e in build_report(FACTS).edges]
    assert order == ["ann", "ann", "ann", "bob", "bob", "cy", "cy"]


def test_empty_facts_give_zero_rates_not_errors():
    r = build_report(Facts(), "step", campaign="none")
    assert r.rows == () and r.referrers == () and r.edges == ()
    assert counts(r.total.all) == (0,) * 8
    assert set(r.total.all.rates().values()) == {0.0}
    assert r.total.all.median_first_reply_seconds is None
    d = r.as_dict()
    assert d["campaign"] == "none" and d["total"]["all"]["reply_rate"] == 0.0


def test_an_unknown_grouping_is_refused():
    with pytest.raises(ValueError, match="cannot group by 'mood'"):
        build_report(FACTS, "mood")
