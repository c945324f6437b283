"""Sends whose outcome is unknown (``needs_attention``): the connection was lost after the
message data went out, so it may or may not have been delivered, and it is never resent
blindly. Until this is settled the prospect's sequence waits at that step.

Two ways to settle one:

* ``check_sent_folders``: look for its Message-ID in the mailbox's Sent folder (providers such
  as Google Workspace file a copy of every message sent over SMTP there). Found means it went
  out: recorded as sent and the sequence moves on. Not found proves nothing (many servers keep
  no copy), so nothing else changes.
* A person decides: ``mark_sent`` (it arrived; the prospect confirmed, or the Sent folder shows
  it) or ``resend`` (it did not: the same message, same Message-ID, goes out again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sequencer.core.ports import DraftEvent, DraftRecord, DraftView, MailboxReader, UnitOfWork
from sequencer.core.specjson import spec_from_json
from sequencer.core.states import DraftState, draft_transition
from sequencer.errors import (
    ConfigError,
    ConflictError,
    InvalidTransition,
    NoSentFolder,
    NotFound,
    SequencerError,
)
from sequencer.services.inbox import imap_account
from sequencer.services.sending import record_sent

UowFactory = Callable[[], UnitOfWork]
IMAP_ACTOR = "refseq-sent-folder"


@dataclass
class CheckReport:
    found: list[int] = field(default_factory=list)  # draft ids now recorded as sent
    not_found: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def attention_drafts(uow_factory: UowFactory) -> list[DraftView]:
    with uow_factory() as uow:
        return uow.repo.list_drafts([DraftState.NEEDS_ATTENTION])


def _attention_view(uow: UnitOfWork, draft_id: int, event: str) -> tuple[DraftView, DraftState]:
    """The draft, and the state ``event`` takes it to (only a needs_attention draft has one)."""
    view = uow.repo.get_draft(draft_id)
    if view is None:
        raise NotFound(f"no draft {draft_id} (see `refseq attention list`)")
    return view, draft_transition(view.draft.state, event)


def mark_sent(uow_factory: UowFactory, draft_id: int, actor: str, now: datetime) -> DraftRecord:
    """A person (or the Sent folder) says it arrived: sent, and the sequence moves on."""
    with uow_factory() as uow:
        view, _ = _attention_view(uow, draft_id, "sent")
        campaign = uow.repo.campaign_by_id(view.draft.campaign_id)
        if campaign is None:
            raise NotFound(f"the campaign of draft {draft_id} is gone")
        d = view.draft
        spec = spec_from_json(campaign.spec)
        sent_at = d.data_started_at or now  # when it went out, as far as anyone knows
        if not record_sent(uow.repo, view, spec, d, sent_at, f"confirmed by {actor}", actor):
            raise ConflictError(f"draft {draft_id} changed meanwhile; look again")
        uow.commit()
    return _reloaded(uow_factory, draft_id)


def resend(uow_factory: UowFactory, draft_id: int, actor: str, now: datetime) -> DraftRecord:
    """A person says it never arrived: the same message goes out again at the next send."""
    with uow_factory() as uow:
        view, state = _attention_view(uow, draft_id, "resend")
        d = view.draft
        if not uow.repo.update_draft(
            d.id, d.revision, now, state=state, next_attempt_at=now, data_started_at=None
        ):
            raise ConflictError(f"draft {draft_id} changed meanwhile; look again")
        uow.repo.add_draft_event(
            DraftEvent(d.id, actor, "resend", {"state": d.state.value}, {"state": state.value}, now)
        )
        uow.commit()
    return _reloaded(uow_factory, draft_id)


def _reloaded(uow_factory: UowFactory, draft_id: int) -> DraftRecord:
    with uow_factory() as uow:
        view = uow.repo.get_draft(draft_id)
    assert view is not None
    return view.draft


def check_sent_folders(
    uow_factory: UowFactory,
    reader: MailboxReader,
    env: Mapping[str, str],
    now: datetime,
    folder: str | None = None,
    *,
    automatic: bool = False,
) -> CheckReport:
    """Every needs_attention draft found by Message-ID in its mailbox's sent folder is sent.

    The folder: ``folder`` if given, else the campaign's ``imap.sent_folder``, else the one the
    server marks ``\\Sent`` (RFC 6154 SPECIAL-USE), found without configuration. The workers
    run this on every poll (``automatic``): a mailbox whose server marks no Sent folder is then
    skipped quietly instead of reported at every poll.
    """
    report = CheckReport()
    with uow_factory() as uow:
        views = uow.repo.list_drafts([DraftState.NEEDS_ATTENTION])
        specs = {}
        for v in views:
            campaign = uow.repo.campaign_by_id(v.draft.campaign_id)
            if campaign is not None:
                specs[v.draft.id] = spec_from_json(campaign.spec)
    for v in views:
        spec = specs.get(v.draft.id)
        configured = spec.mailbox.imap_sent_folder if spec is not None else None
        try:
            account = imap_account(spec, env) if spec is not None else None
            if account is None:
                report.errors.append(f"draft {v.draft.id}: its campaign has no imap mailbox")
                continue
            found = reader.find_message_id(account, folder or configured, v.draft.message_id)
        except NoSentFolder as exc:
            if not automatic:
                report.errors.append(f"draft {v.draft.id}: {exc}")
            report.not_found.append(v.draft.id)
            continue
        except (ConfigError, SequencerError) as exc:
            report.errors.append(f"draft {v.draft.id}: {exc}")
            continue
        if not found:
            report.not_found.append(v.draft.id)
            continue
        try:
            mark_sent(uow_factory, v.draft.id, IMAP_ACTOR, now)
        except (ConflictError, InvalidTransition, NotFound):
            continue  # settled by someone else meanwhile
        report.found.append(v.draft.id)
    return report
