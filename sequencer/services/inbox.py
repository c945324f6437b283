"""Poll the reps' mailboxes and act on what arrives: stop, pause, suppress, hand off.

Raw bytes are stored first (deduped on Message-ID, or a hash), the checkpoint advances only
after they are committed, then each message is parsed, matched and classified. A message that
cannot be handled is kept as ``unhandled`` for a human and holds that prospect's next step.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from email.utils import parseaddr
from typing import Any

from sequencer.core.drafts import DraftConfig
from sequencer.core.inbound import (
    InboundClass,
    Intent,
    ParsedInbound,
    Verdict,
    classify,
    parse_inbound,
)
from sequencer.core.model import CampaignSpec
from sequencer.core.ports import (
    Checkpoint,
    EnrollmentRecord,
    HandoffRecord,
    ImapAccount,
    InboundRecord,
    MailboxReader,
    NewEnrollment,
    Store,
    UnitOfWork,
)
from sequencer.core.specjson import spec_from_json
from sequencer.core.states import (
    CampaignStatus,
    EnrollmentState,
    enrollment_transition,
)
from sequencer.errors import ConfigError, SequencerError
from sequencer.services.consent import hold_naming
from sequencer.services.inbound_match import UNVERIFIED, match, same_party
from sequencer.services.notes import NOTE_MATCH, note_inbound
from sequencer.services.optout import opt_out
from sequencer.services.sending import stop_enrollment

log = logging.getLogger(__name__)
UowFactory = Callable[[], UnitOfWork]
SYSTEM = "refseq-inbox"
ENGAGED = {Intent.INTERESTED, Intent.QUESTION, Intent.REDIRECT}
SOFT_BOUNCE_LIMIT = 3
# What a poll parsed while storing, so processing the same bytes does not parse them again:
# dedupe key -> (raw, parsed). Bounded: beyond it messages are simply parsed twice.
ParsedCache = dict[str, tuple[bytes, ParsedInbound]]
PARSED_CACHE_LIMIT = 2000


@dataclass(frozen=True)
class InboxConfig:
    env: Mapping[str, str]
    rescan_days: int = 14
    pause_days: int = 7  # an out-of-office without a return date pauses this long
    fetch_limit: int = 500
    draft_cfg: DraftConfig | None = None  # to draft the thank-you to the referrer


@dataclass
class InboxReport:
    fetched: int = 0
    stored: int = 0
    handled: dict[str, int] = field(default_factory=dict)  # class → count
    unmatched: int = 0
    unhandled: int = 0
    handoffs: int = 0
    errors: list[str] = field(default_factory=list)


def imap_account(spec: CampaignSpec, env: Mapping[str, str]) -> ImapAccount | None:
    imap = spec.mailbox.imap
    if imap is None:
        return None
    password = None
    if imap.password_env:
        password = env.get(imap.password_env)
        if password is None:
            raise ConfigError(
                f"campaign {spec.name}: environment variable {imap.password_env} (the IMAP "
                "password named by mailbox.imap.password_env) is not set"
            )
    return ImapAccount(
        imap.host, imap.port, imap.security.value, imap.username, password, spec.mailbox.imap_folder
    )


def dedupe_key(parsed: ParsedInbound | None, raw: bytes) -> str:
    if parsed is not None and parsed.message_id and len(parsed.message_id) <= 290:
        return "mid:" + parsed.message_id
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _accounts(
    uow_factory: UowFactory, env: Mapping[str, str], report: InboxReport
) -> dict[str, ImapAccount]:
    accounts: dict[str, ImapAccount] = {}
    with uow_factory() as uow:
        for campaign in uow.repo.campaign_records():
            if campaign.status is CampaignStatus.STOPPED:
                continue
            try:
                account = imap_account(spec_from_json(campaign.spec), env)
            except ConfigError as exc:
                report.errors.append(str(exc))
                continue
            if account is not None:
                accounts[account.key] = account
    return accounts


def poll(
    uow_factory: UowFactory, reader: MailboxReader, cfg: InboxConfig, now: datetime
) -> InboxReport:
    """Fetch new mail from every campaign mailbox, store it, then process it."""
    report = InboxReport()
    parsed: ParsedCache = {}
    for key, account in _accounts(uow_factory, cfg.env, report).items():
        try:
            _fetch(uow_factory, reader, cfg, key, account, now, report, parsed)
        except SequencerError as exc:  # the server is down or refuses: try again next poll
            report.errors.append(str(exc))
    process(uow_factory, cfg, now, report, parsed)
    return report


def _fetch(
    uow_factory: UowFactory,
    reader: MailboxReader,
    cfg: InboxConfig,
    key: str,
    account: ImapAccount,
    now: datetime,
    report: InboxReport,
    cache: ParsedCache | None = None,
) -> None:
    while True:
        with uow_factory() as uow:
            checkpoint = uow.repo.checkpoint(key)
        batch = reader.fetch_new(
            account, checkpoint, now - timedelta(days=cfg.rescan_days), cfg.fetch_limit
        )
        report.fetched += len(batch.messages)
        with uow_factory() as uow:
            for mail in batch.messages:
                try:
                    parsed: ParsedInbound | None = parse_inbound(mail.raw)
                except Exception:
                    parsed = None
                dedupe = dedupe_key(parsed, mail.raw)
                stored = uow.repo.add_inbound(
                    dedupe,
                    key,
                    mail.uid,
                    mail.raw,
                    mail.internal_date,
                    now,
                    from_addr=parsed.from_addr if parsed else None,
                )
                report.stored += stored is not None
                if (
                    stored is not None
                    and parsed is not None
                    and cache is not None
                    and len(cache) < PARSED_CACHE_LIMIT
                ):
                    cache[dedupe] = (mail.raw, parsed)
            if batch.last_uid is not None:
                uow.repo.save_checkpoint(key, Checkpoint(batch.uidvalidity, batch.last_uid), now)
            elif checkpoint is not None and not batch.rescanned:
                uow.repo.save_checkpoint(key, checkpoint, now)  # polled, nothing new
            uow.commit()  # the checkpoint moves only with the messages it covers
        if len(batch.messages) < cfg.fetch_limit:
            return


def process(
    uow_factory: UowFactory,
    cfg: InboxConfig,
    now: datetime,
    report: InboxReport | None = None,
    parsed: ParsedCache | None = None,
) -> InboxReport:
    """Parse, match, classify and act on every stored message not yet handled.

    ``parsed``: what the poll that stored them already parsed (used when the bytes match)."""
    report = report or InboxReport()
    while True:
        with uow_factory() as uow:
            batch = uow.repo.inbound_to_process(100)
        if not batch:
            return report
        for record, raw in batch:
            try:
                with uow_factory() as uow:
                    _handle(uow.repo, cfg, record, raw, now, report, parsed)
                    uow.commit()
            except Exception as exc:
                log.exception("inbound #%s could not be handled", record.id)
                with uow_factory() as uow:
                    _hold_for_human(uow.repo, record, raw, f"{type(exc).__name__}: {exc}", now)
                    uow.commit()
                report.unhandled += 1


def _hold_reason(text: str) -> str:
    """Inbound text made safe to show in a list: one line, bounded."""
    return " ".join(text.split())[:300]


def _hold(repo: Store, enrollment: EnrollmentRecord, reason: str, now: datetime) -> bool:
    """Hold a going enrollment for a person (``refseq held`` lists it, ``refseq release``
    continues it); its approved drafts wait. False if it had already ended or was held."""
    if enrollment.state not in (EnrollmentState.ACTIVE, EnrollmentState.PAUSED):
        return False
    enrollment_transition(enrollment.state, "hold")
    repo.update_enrollment(
        enrollment.id,
        now,
        state=EnrollmentState.HELD,
        paused_until=None,
        hold_reason=_hold_reason(reason),
    )
    return True


def _hold_for_human(
    repo: Store, record: InboundRecord, raw: bytes, error: str, now: datetime, hold: bool = True
) -> None:
    """Unhandled: kept and listed; the sender's enrollment is held until a human looks
    (unless ``hold`` is False: then it is only listed)."""
    enrollment = None
    try:
        parsed = parse_inbound(raw)
        candidates = repo.live_enrollments_for(parsed.from_addr) if parsed.from_addr else []
        enrollment = candidates[0] if candidates and hold else None
    except Exception:
        parsed = None
    if enrollment is not None:
        _hold(repo, enrollment, f"inbound #{record.id} needs a person: {error}", now)
    repo.update_inbound(
        record.id,
        status="unhandled",
        error=error[:2000],
        from_addr=parsed.from_addr if parsed else None,
        enrollment_id=enrollment.id if enrollment else None,
    )


def _thread_enrollment(repo: Store, parsed: ParsedInbound) -> EnrollmentRecord | None:
    draft = repo.draft_by_message_ids([*parsed.in_reply_to, *parsed.references])
    return None if draft is None else repo.get_enrollment(draft.enrollment_id)


def _handle(
    repo: Store,
    cfg: InboxConfig,
    record: InboundRecord,
    raw: bytes,
    now: datetime,
    report: InboxReport,
    cache: ParsedCache | None = None,
) -> None:
    hit = cache.pop(record.dedupe_key, None) if cache else None
    parsed = hit[1] if hit is not None and hit[0] == raw else parse_inbound(raw)
    verdict = classify(parsed, raw)
    enrollment, how = match(repo, parsed, verdict)
    extracted = {
        "bounced": [list(b) for b in verdict.bounced],
        "return_date": verdict.return_date.isoformat() if verdict.return_date else None,
        "reply_text": verdict.reply_text[:5000],
        "redirect_to": verdict.redirect_to,
        "confidence": verdict.confidence,
    }
    common = {
        "klass": verdict.klass.value,
        "intent": verdict.intent.value,
        "evidence": list(verdict.evidence),
        "extracted": extracted,
        "from_addr": parsed.from_addr or None,
        "subject": parsed.subject[:1000] or None,
        "message_id": parsed.message_id,
        "matched_by": how or None,
    }
    if verdict.klass is InboundClass.UNKNOWN:
        _hold_for_human(
            repo, record, raw, "could not classify: " + "; ".join(verdict.evidence), now
        )
        repo.update_inbound(record.id, **common)
        report.unhandled += 1
        return
    if enrollment is None and how in UNVERIFIED:
        # an opt-out we cannot verify still holds the sender's sequence: never email someone
        # who may have opted out before a person has looked
        hold = verdict.klass is InboundClass.UNSUBSCRIBE
        _hold_for_human(repo, record, raw, UNVERIFIED[how], now, hold=hold)
        # linked to no enrollment: the report must not count what nobody acted on
        repo.update_inbound(record.id, enrollment_id=None, **common)
        report.unhandled += 1
        return
    if enrollment is None and how == "thread-other-sender":
        _hold_thread_reply(repo, record, parsed, now, common)
        report.unhandled += 1
        return
    if enrollment is None:
        if how == NOTE_MATCH:
            note_inbound(repo, verdict.klass, verdict.bounced, now)
        repo.update_inbound(record.id, status="unmatched", handled_at=now, **common)
        report.unmatched += 1
        return
    _act(repo, cfg, record, parsed, verdict, enrollment, now, report)
    repo.update_inbound(
        record.id, status="handled", handled_at=now, enrollment_id=enrollment.id, **common
    )
    report.handled[verdict.klass.value] = report.handled.get(verdict.klass.value, 0) + 1


def _hold_thread_reply(
    repo: Store, record: InboundRecord, parsed: ParsedInbound, now: datetime, common: dict[str, Any]
) -> None:
    """A reply on a prospect's thread from another domain: the prospect writing from another
    address (personal mail, a forward), or someone who copied our Message-ID. Acting on it
    could stop a sequence for a stranger; ignoring it could email someone who already replied.
    So the prospect's sequence is held, nothing else is done, and a person decides
    (``refseq inbox --unhandled``, then ``refseq release`` or ``refseq suppress add``)."""
    enrollment = _thread_enrollment(repo, parsed)
    sender = _hold_reason(parsed.from_addr or "an unknown sender")
    why = f"a reply on this prospect's thread came from {sender}, another domain"
    if enrollment is not None:
        _hold(
            repo, enrollment, f"{why} (inbound #{record.id}): release it if that was not them", now
        )
    repo.update_inbound(
        record.id,
        status="unhandled",
        error=why,
        enrollment_id=enrollment.id if enrollment else None,
        **common,
    )


def _live(e: EnrollmentRecord) -> bool:
    return e.state in (EnrollmentState.ACTIVE, EnrollmentState.PAUSED, EnrollmentState.HELD)


def _act(
    repo: Store,
    cfg: InboxConfig,
    record: InboundRecord,
    parsed: ParsedInbound,
    verdict: Verdict,
    e: EnrollmentRecord,
    now: datetime,
    report: InboxReport,
) -> None:
    k = verdict.klass
    if k is InboundClass.HARD_BOUNCE:
        # only our own recipient: never the other addresses a bounce lists (see inbound_match)
        repo.add_suppression(
            e.prospect_key, "hard bounce: " + "; ".join(verdict.evidence)[:200], "inbox", now
        )
        if _live(e):
            stop_enrollment(repo, e.id, EnrollmentState.BOUNCED, "hard bounce", now)
    elif k is InboundClass.SOFT_BOUNCE:
        count = e.soft_bounces + 1
        repo.update_enrollment(e.id, now, soft_bounces=count)
        if count >= SOFT_BOUNCE_LIMIT and _live(e):
            stop_enrollment(
                repo, e.id, EnrollmentState.BOUNCED, f"{count} soft bounces in a row", now
            )
    elif k is InboundClass.AUTO_REPLY:
        if e.state is EnrollmentState.ACTIVE:
            until = (
                datetime.combine(verdict.return_date, time(8), tzinfo=UTC)
                if verdict.return_date
                else now + timedelta(days=cfg.pause_days)
            )
            repo.update_enrollment(
                e.id, now, state=EnrollmentState.PAUSED, paused_until=max(until, now)
            )
    elif k is InboundClass.UNSUBSCRIBE:
        # the sender too when it is the prospect's side (not a feedback loop's address)
        sender = {parsed.from_addr} if same_party(parsed.from_addr, e.prospect_key) else set()
        for address in sorted({e.prospect_key} | sender):
            opt_out(repo, address, "asked to be removed", f"inbox #{record.id}", now)
    elif k is InboundClass.HUMAN_REPLY:
        _human_reply(repo, cfg, record, verdict, e, now, report)


def _human_reply(
    repo: Store,
    cfg: InboxConfig,
    record: InboundRecord,
    verdict: Verdict,
    e: EnrollmentRecord,
    now: datetime,
    report: InboxReport,
) -> None:
    if _live(e):
        stop_enrollment(repo, e.id, EnrollmentState.REPLIED, "the prospect replied", now)
    elif e.state is EnrollmentState.COMPLETED:  # a reply to the last step: still a reply
        repo.update_enrollment(e.id, now, state=EnrollmentState.REPLIED)
    if verdict.intent is Intent.UNKNOWN_REFERRER:
        referrer_id = str(e.referrer.get("id", ""))
        repo.add_referrer_flag(
            e.campaign_id,
            referrer_id,
            e.prospect_email,
            record.id,
            "the prospect says they do not know the referrer",
            now,
        )
        # Hold every live enrollment that names this referrer, in every campaign, until a
        # person clears the flag (`refseq flags`); later launches see the flag too.
        hold_naming(
            repo,
            referrer_id,
            None,
            f"referrer {referrer_id} flagged: a prospect did not know them",
            now,
        )
    if verdict.intent is Intent.REDIRECT and verdict.redirect_to:
        _capture_lead(repo, e, verdict.redirect_to, now)
    if verdict.intent in ENGAGED or verdict.intent is Intent.UNKNOWN_REFERRER:  # the rep is told
        campaign = repo.campaign_by_id(e.campaign_id)
        rep_email = str(campaign.spec["rep"]["email"]) if campaign else ""
        handoff = repo.add_handoff(
            HandoffRecord(
                id=0,
                inbound_id=record.id,
                enrollment_id=e.id,
                campaign_id=e.campaign_id,
                rep_email=rep_email,
                intent=verdict.intent.value,
                reply_text=verdict.reply_text[:5000],
                redirect_to=verdict.redirect_to,
                state="open",
                notified_at=None,
                created_at=now,
                handled_at=None,
                handled_by=None,
            )
        )
        if handoff is not None:
            report.handoffs += 1
            # Not for "I don't know them": the rep is told, the referrer is not thanked.
            if campaign is not None and verdict.intent in ENGAGED:
                from sequencer.services.routing import on_handoff

                on_handoff(repo, spec_from_json(campaign.spec), handoff, e, cfg.draft_cfg, now)


def _capture_lead(repo: Store, e: EnrollmentRecord, redirect_to: str, now: datetime) -> None:
    """ "Talk to my colleague X": X becomes a new lead on the same referrer, held for the rep."""
    name, address = parseaddr(redirect_to)
    key = address.strip().casefold()
    if "@" not in key or key == e.prospect_key or repo.live_enrollments_for(key):
        return
    if key in repo.enrollment_states(e.campaign_id):
        return
    who = " ".join(
        p for p in (e.prospect.get("first_name", ""), e.prospect.get("last_name", "")) if p
    )
    first, _, last = name.strip().partition(" ")
    repo.add_enrollments(
        e.campaign_id,
        [
            NewEnrollment(
                prospect_key=key,
                prospect_email=address.strip(),
                prospect={
                    "email": address.strip(),
                    "first_name": first,
                    "last_name": last,
                    "title": "",
                    "company": e.prospect.get("company", ""),
                    "timezone": e.prospect.get("timezone", ""),
                    "redirected_by": e.prospect_email,
                },
                referrer=e.referrer,
                referral={**e.referral, "context": f"{who or e.prospect_email} pointed us to you"},
                other_referrals=[],
                temperature="cold",
                sequence="cold",
                may_name_referrer=e.may_name_referrer,
                reason=f"redirected by {e.prospect_email}",
                state=EnrollmentState.HELD,
                hold_reason=f"new lead: {e.prospect_email} asked us to talk to them instead; "
                "review, then `refseq release`",
                next_due_at=None,
            )
        ],
        now,
    )


def resume_paused(uow_factory: UowFactory, now: datetime) -> int:
    """Out-of-office pauses that have run out: back to active, next step not before now."""
    with uow_factory() as uow:
        due = uow.repo.paused_due(now)
        for e in due:
            next_due = max(e.next_due_at or now, now)
            uow.repo.update_enrollment(
                e.id, now, state=EnrollmentState.ACTIVE, paused_until=None, next_due_at=next_due
            )
        uow.commit()
    return len(due)
