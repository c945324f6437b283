"""The rows a campaign report is computed from: four set-based queries, whatever the size.

One query per table (enrollments, sent steps, matched inbound messages, handoffs), each filtered
by campaign in SQL and reading only the columns the report needs; the referrer's id and name are
pulled out of the JSON column by the database, not by decoding every document in Python.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Select, String, Table, select, type_coerce
from sqlalchemy.orm import Session

from sequencer.adapters.db.tables import Campaign, Draft, Enrollment
from sequencer.adapters.db.tables_inbound import Handoff, InboundMessage
from sequencer.core.ports import UnitOfWork
from sequencer.core.report import EnrollmentFact, Facts, HandoffFact, InboundFact, SendFact
from sequencer.core.states import DraftKind, DraftState

CAMPAIGNS = cast(Table, Campaign.__table__)
ENROLLMENTS = cast(Table, Enrollment.__table__)
DRAFTS = cast(Table, Draft.__table__)
INBOUND = cast(Table, InboundMessage.__table__)
HANDOFFS = cast(Table, Handoff.__table__)

# Classes the report counts; "unknown" and soft bounces never change a figure.
REPORTED_KLASSES = ("auto_reply", "hard_bounce", "human_reply", "unsubscribe")


def _session(source: Session | UnitOfWork) -> Session:
    if isinstance(source, Session):
        return source
    session = getattr(source, "session", None)
    if not isinstance(session, Session):
        raise TypeError(f"load_facts needs a Session or a SQL unit of work, got {source!r}")
    return session


def _campaign_ids(campaign: str | None) -> Select[Any]:
    stmt = select(CAMPAIGNS.c.id)
    return stmt if campaign is None else stmt.where(CAMPAIGNS.c.name == campaign)


def load_facts(source: Session | UnitOfWork, campaign: str | None) -> Facts:
    """Every fact about ``campaign`` (all campaigns when None), in four queries."""
    session = _session(source)
    e = ENROLLMENTS
    enrollments_q = select(
        e.c.id,
        CAMPAIGNS.c.name,
        e.c.temperature,
        e.c.sequence,
        e.c.referrer["id"].as_string(),
        e.c.referrer["name"].as_string(),
        e.c.may_name_referrer,
        e.c.prospect_email,
        type_coerce(e.c.state, String),  # the stored value: no enum round trip per row
        e.c.created_at,
    ).join(CAMPAIGNS, CAMPAIGNS.c.id == e.c.campaign_id)
    if campaign is not None:
        enrollments_q = enrollments_q.where(CAMPAIGNS.c.name == campaign)
    enrollments = [
        EnrollmentFact(
            enrollment_id=r[0],
            campaign=r[1],
            temperature=r[2],
            sequence=r[3],
            referrer_id=r[4] or "",
            referrer_name=r[5] or r[4] or "",
            named=bool(r[6]),
            prospect_email=r[7],
            state=r[8],
            enrolled_at=r[9],
        )
        for r in session.execute(enrollments_q).all()
    ]

    sends_q = select(
        DRAFTS.c.enrollment_id, DRAFTS.c.step_index, DRAFTS.c.template, DRAFTS.c.sent_at
    )
    sends_q = sends_q.where(
        DRAFTS.c.state == DraftState.SENT,
        DRAFTS.c.sent_at.is_not(None),
        DRAFTS.c.kind == DraftKind.STEP,  # a note to the referrer is no step, no message to them
    )
    if campaign is not None:
        sends_q = sends_q.where(DRAFTS.c.campaign_id.in_(_campaign_ids(campaign)))
    sends = [SendFact(r[0], r[1] + 1, r[2], r[3]) for r in session.execute(sends_q).all()]

    inbound_q = select(
        INBOUND.c.enrollment_id, INBOUND.c.klass, INBOUND.c.intent, INBOUND.c.received_at
    ).where(INBOUND.c.enrollment_id.is_not(None), INBOUND.c.klass.in_(REPORTED_KLASSES))
    if campaign is not None:
        in_campaign = select(e.c.id).where(e.c.campaign_id.in_(_campaign_ids(campaign)))
        inbound_q = inbound_q.where(INBOUND.c.enrollment_id.in_(in_campaign))
    inbound = [InboundFact(r[0], r[1], r[2], r[3]) for r in session.execute(inbound_q).all()]

    # A handoff answers the message its reply answered: it is dated by that reply's arrival.
    handoffs_q = select(
        HANDOFFS.c.enrollment_id, HANDOFFS.c.created_at, INBOUND.c.received_at
    ).outerjoin(INBOUND, INBOUND.c.id == HANDOFFS.c.inbound_id)
    if campaign is not None:
        handoffs_q = handoffs_q.where(HANDOFFS.c.campaign_id.in_(_campaign_ids(campaign)))
    handoffs = [HandoffFact(r[0], r[1], r[2]) for r in session.execute(handoffs_q).all()]

    return Facts(enrollments=enrollments, sends=sends, inbound=inbound, handoffs=handoffs)
