"""Inbound mail nobody acted on, in front of a person until someone marks it handled.

``unhandled`` (could not be classified, an unverified bounce/opt-out/auto-reply, a reply on a
thread from another domain) and ``unmatched`` (about no prospect we know) messages are listed
by ``refseq inbox --unhandled``, the web inbox page (a rep sees their campaigns' mailboxes, an
admin every one) and counted by ``refseq status``; ``refseq inbound done`` or the page's button
marks one handled. Marking does not release a held sequence: ``refseq release`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sequencer.core.model import CampaignSpec
from sequencer.core.ports import ImapAccount, InboundRecord, Store, UnitOfWork
from sequencer.core.specjson import spec_from_json
from sequencer.errors import NotFound

UowFactory = Callable[[], UnitOfWork]


def mailbox_key(spec: CampaignSpec) -> str | None:
    """The key the poller stores a campaign's inbound mail under (no password needed)."""
    imap = spec.mailbox.imap
    if imap is None:
        return None
    account = ImapAccount(
        imap.host, imap.port, imap.security.value, imap.username, None, spec.mailbox.imap_folder
    )
    return account.key


def _in_scope(repo: Store, rep_email: str | None) -> Callable[[InboundRecord], bool]:
    if rep_email is None:
        return lambda record: True
    rep = rep_email.casefold()
    mailboxes: set[str] = set()
    campaign_ids: set[int] = set()
    for summary in repo.list_campaigns():
        spec = spec_from_json(summary.campaign.spec)
        if spec.rep.email.casefold() == rep:
            campaign_ids.add(summary.campaign.id)
            key = mailbox_key(spec)
            if key:
                mailboxes.add(key)
    cache: dict[int, bool] = {}

    def mine(record: InboundRecord) -> bool:
        if record.mailbox_key in mailboxes:
            return True
        if record.enrollment_id is None:
            return False
        if record.enrollment_id not in cache:
            e = repo.get_enrollment(record.enrollment_id)
            cache[record.enrollment_id] = e is not None and e.campaign_id in campaign_ids
        return cache[record.enrollment_id]

    return mine


def needs_person(uow_factory: UowFactory, rep_email: str | None = None) -> list[InboundRecord]:
    """Unhandled and unmatched messages not yet marked handled (a rep's, or all: None)."""
    with uow_factory() as uow:
        mine = _in_scope(uow.repo, rep_email)
        return [r for r in uow.repo.inbound_for_review() if mine(r)]


def mark_handled(
    uow_factory: UowFactory,
    inbound_id: int,
    actor: str,
    now: datetime,
    rep_email: str | None = None,
) -> bool:
    """A person has looked at it: off the list. False if it was already marked.

    Raises NotFound for a message that does not exist, is not the rep's, or never needed a
    person (it was acted on)."""
    with uow_factory() as uow:
        found = uow.repo.get_inbound(inbound_id)
        record = found[0] if found else None
        if (
            record is None
            or record.status not in ("unhandled", "unmatched")
            or not _in_scope(uow.repo, rep_email)(record)
        ):
            raise NotFound(
                f"no inbound message {inbound_id} waiting for a person "
                "(see `refseq inbox --unhandled`)"
            )
        done = uow.repo.mark_inbound_reviewed(inbound_id, actor, now)
        uow.commit()
        return done
