"""Read the rep's mailbox right before sending, so a reply that sits unread in INBOX stops the
send instead of waiting for the next poll.

The claim and the last check before DATA (``services/sending.py``) hold back a draft whose
prospect has mail waiting to be read, but only mail already fetched counts. The regular poll
runs every minute (the Celery beat, ``refseq run``), so without this a reply that arrived since
then was invisible to the send. After each claim of a mailbox's drafts (nothing claimed,
nothing read), before the batch is sent, the IMAP mailboxes of its campaigns are fetched (new
UIDs since the checkpoint: one SEARCH on a kept connection) and what is new is stored as
waiting to be read: the last check before DATA then hands that prospect's draft back, and the
regular poll classifies the mail. The window left is from that SEARCH to the start of DATA
(measured by the ``benchmarks`` stage ``presend``).

An IMAP mailbox that cannot be read does not stop sending (it never did): the error is
reported with the pass and the regular poll keeps reporting it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime

from sequencer.core.model import CampaignSpec
from sequencer.core.ports import ImapAccount, MailboxReader, UnitOfWork
from sequencer.errors import ConfigError, SequencerError
from sequencer.services.inbox import InboxConfig, InboxReport, imap_account
from sequencer.services.inbox import _fetch as fetch_into_store

UowFactory = Callable[[], UnitOfWork]
ReaderLease = Callable[[str], AbstractContextManager[MailboxReader | None]]
# (sending mailbox key, its campaigns' specs, now) → problems to report (empty when all read)
PreSend = Callable[[str, Mapping[int, CampaignSpec], datetime], list[str]]


def _accounts(specs: Mapping[int, CampaignSpec], env: Mapping[str, str]) -> dict[str, ImapAccount]:
    accounts: dict[str, ImapAccount] = {}
    for spec in specs.values():
        try:
            account = imap_account(spec, env)
        except ConfigError:
            continue  # the regular poll reports a missing IMAP password
        if account is not None:
            accounts[account.key] = account
    return accounts


def inbox_refresher(uow_factory: UowFactory, reader_for: ReaderLease, cfg: InboxConfig) -> PreSend:
    """A ``PreSend`` that fetches the IMAP mailboxes of the campaigns about to send, with the
    reader ``reader_for(sending mailbox key)`` lends (one per sending thread)."""

    def refresh(key: str, specs: Mapping[int, CampaignSpec], now: datetime) -> list[str]:
        accounts = _accounts(specs, cfg.env)
        if not accounts:
            return []
        problems: list[str] = []
        with reader_for(key) as reader:
            if reader is None:
                return []
            for account_key, account in accounts.items():
                try:
                    fetch_into_store(
                        uow_factory, reader, cfg, account_key, account, now, InboxReport()
                    )
                except SequencerError as exc:
                    problems.append(f"read before sending failed, sent without it: {exc}")
        return problems

    return refresh
