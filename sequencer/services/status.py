"""What is going on: per campaign and per mailbox (due, waiting, sent vs cap, attention, next)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sequencer.core.ports import UnitOfWork
from sequencer.core.sequence import mailbox_gate
from sequencer.core.specjson import spec_from_json
from sequencer.services.sending import mailbox_key

UowFactory = Callable[[], UnitOfWork]


@dataclass(frozen=True)
class CampaignStatusRow:
    campaign: str
    status: str
    mailbox: str
    active_enrollments: int
    pending_approval: int
    approved_due: int
    approved_later: int
    sent: int
    needs_attention: int
    failed: int
    next_step_due: datetime | None


@dataclass(frozen=True)
class MailboxStatusRow:
    mailbox: str
    sent_last_24h: int
    daily_cap: int
    next_send_at: datetime | None
    blocked: str  # why it is not sending now ("" when it may)


def status(
    uow_factory: UowFactory, now: datetime
) -> tuple[list[CampaignStatusRow], list[MailboxStatusRow]]:
    campaigns: list[CampaignStatusRow] = []
    caps: dict[str, int] = {}
    with uow_factory() as uow:
        counts = uow.repo.outbox_counts(now)
        next_due = uow.repo.next_due_by_campaign()
        for summary in uow.repo.list_campaigns():
            c = summary.campaign
            spec = spec_from_json(c.spec)
            key = mailbox_key(spec)
            caps[key] = min(caps.get(key, spec.mailbox.daily_cap), spec.mailbox.daily_cap)
            n = counts.get(c.id, {})
            approved = n.get("approved", 0)
            due = n.get("due", 0)
            campaigns.append(
                CampaignStatusRow(
                    campaign=c.name,
                    status=c.status.value,
                    mailbox=key,
                    active_enrollments=summary.by_state.get("active", 0),
                    pending_approval=n.get("pending_approval", 0),
                    approved_due=due,
                    approved_later=approved - due,
                    sent=n.get("sent", 0),
                    needs_attention=n.get("needs_attention", 0),
                    failed=n.get("failed", 0),
                    next_step_due=next_due.get(c.id),
                )
            )
        mailboxes = []
        states = {m.key: m for m in uow.repo.mailbox_states(now)}
        for key, cap in sorted(caps.items()):
            m = states.get(key)
            sent = m.sent_last_24h if m else 0
            gate = mailbox_gate(
                now, m.next_send_at if m else None, sent, cap, m.oldest_in_window if m else None
            )
            mailboxes.append(
                MailboxStatusRow(
                    key, sent, cap, gate.retry_at or (m.next_send_at if m else None), gate.reason
                )
            )
    return campaigns, mailboxes
