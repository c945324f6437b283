"""Send approved drafts over SMTP, exactly once.

For each mailbox: lock it, check its cap and gap, claim its next due drafts with a
compare-and-set after re-checking everything that could forbid each send (one draft when the
mailbox has a ``min_gap``, up to ``CLAIM_BATCH`` when not), record SENDING, commit; then for
each: record ``data_started_at`` right before DATA, send, and record the outcome. A crash at any
point leaves rows the sweeper can judge: never started → back to approved; started → needs
attention. A sender that stops hands its unsent claimed drafts back at once.

The message bytes were built when the draft was made (or edited); only ``Date:`` is added here.
A successful send's outcome is committed right after the server's 250, in its own transaction:
a crash can then leave a delivered message needs_attention only inside that one commit (or
while the message is on the wire), not until the next message's transaction. With
``concurrency`` > 1 several mailboxes send at once, one thread and SMTP session each.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sequencer.core.drafts import sendable_bytes
from sequencer.core.model import CampaignSpec, NamePolicy
from sequencer.core.notes import note_zone
from sequencer.core.plan import is_suppressed
from sequencer.core.ports import (
    DraftEvent,
    DraftRecord,
    DraftView,
    Mailer,
    SmtpAccount,
    Store,
    UnitOfWork,
)
from sequencer.core.sequence import (
    gap_with_jitter,
    in_window,
    mailbox_gate,
    next_step_due,
    retry_backoff,
)
from sequencer.core.specjson import spec_from_json
from sequencer.core.states import (
    WAITING_ENROLLMENT_STATES,
    CampaignStatus,
    DraftKind,
    DraftState,
    EnrollmentState,
)
from sequencer.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    LostClaim,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from sequencer.services import consent
from sequencer.services.notes import note_wait

UowFactory = Callable[[], UnitOfWork]
SENDER = "refseq-sender"
CLAIM_SCAN = 25
# Drafts claimed per mailbox transaction when the mailbox has no min_gap (see _claim).
CLAIM_BATCH = 10

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendConfig:
    env: Mapping[str, str]  # where password_env variables are read
    max_attempts: int = 5
    stale_after: timedelta = timedelta(minutes=10)


@dataclass
class SendReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    attention: int = 0
    cancelled: int = 0
    deferred: int = 0
    lost: int = 0  # claims another process took back (a sweeper whose clock is ahead)
    waiting: dict[str, str] = field(default_factory=dict)  # mailbox → why it is not sending
    errors: list[str] = field(default_factory=list)


def smtp_account(spec: CampaignSpec, env: Mapping[str, str]) -> SmtpAccount:
    smtp = spec.mailbox.smtp
    password = None
    if smtp.password_env:
        password = env.get(smtp.password_env)
        if password is None:
            raise ConfigError(
                f"campaign {spec.name}: environment variable {smtp.password_env} (the SMTP "
                "password named by mailbox.smtp.password_env) is not set"
            )
    dkim = spec.mailbox.dkim
    key = None
    if dkim is not None:
        try:
            key = dkim.key_file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"campaign {spec.name}: DKIM key file {dkim.key_file} cannot be read: "
                f"{exc.strerror}"
            ) from None
    return SmtpAccount(
        smtp.host,
        smtp.port,
        smtp.security.value,
        smtp.username,
        password,
        dkim_selector=dkim.selector if dkim else None,
        dkim_domain=dkim.domain if dkim else None,
        dkim_key_pem=key,
    )


def mailbox_key(spec: CampaignSpec) -> str:
    s = spec.mailbox.smtp
    return f"{s.username}@{s.host}:{s.port}"


def _zone(view: DraftView, spec: CampaignSpec) -> ZoneInfo:
    if is_note(view.draft):  # to the referrer: their hours, not the prospect's
        return note_zone(view.enrollment.referrer, spec)
    return ZoneInfo(view.enrollment.referral.get("zone") or spec.rep.timezone)


def _event(repo: Store, draft: DraftRecord, action: str, now: datetime, **after: object) -> None:
    repo.add_draft_event(
        DraftEvent(
            draft.id,
            SENDER,
            action,
            {"state": draft.state.value},
            {k: str(v) for k, v in after.items()},
            now,
        )
    )


def is_note(draft: DraftRecord) -> bool:
    return draft.kind is DraftKind.NOTE


def _why_not(
    view: DraftView,
    spec: CampaignSpec,
    campaign_status: CampaignStatus | None,
    suppressed: set[str],
) -> str | None:
    """The reason this draft must never go out now, or None when it may (``campaign_status``
    None: the campaign is gone)."""
    e = view.enrollment
    if campaign_status is None or campaign_status is CampaignStatus.STOPPED:
        return "campaign stopped"
    if is_suppressed(view.draft.to_email.casefold(), suppressed):
        return "address or domain is suppressed"
    if is_note(view.draft):
        return None  # a thank-you to the referrer goes out whatever the prospect's state
    if e.state is not EnrollmentState.ACTIVE and e.state not in WAITING_ENROLLMENT_STATES:
        return f"enrollment is {e.state.value}"
    names = e.may_name_referrer and spec.temperature.name_referrer is NamePolicy.CONSENTED
    if names and not e.referrer.get("consent", False):
        return "the referrer withdrew consent to be named"
    return None


Claim = tuple[DraftView, DraftRecord, CampaignSpec]


def _claim(
    uow_factory: UowFactory,
    key: str,
    specs: dict[int, CampaignSpec],
    now: datetime,
    rng: random.Random,
    report: SendReport,
    batch: int = CLAIM_BATCH,
) -> list[Claim]:
    """Claim the mailbox's next due drafts in one transaction under its lock: one when it has
    a ``min_gap`` (the gap then holds the next), up to ``batch`` (and the cap's room) when not.

    Every draft is re-checked here, at claim time, right before it is sent: campaign stopped
    or paused, suppression, the enrollment's state (reply, bounce, opt-out), the referrer's
    consent, mail from the prospect waiting to be read, and the send window."""
    with uow_factory() as uow:
        repo = uow.repo
        cap = min(s.mailbox.daily_cap for s in specs.values())
        gap = max(s.mailbox.min_gap_seconds for s in specs.values())
        state = repo.lock_mailbox(key, now)
        gate = mailbox_gate(
            now, state.next_send_at, state.sent_last_24h, cap, state.oldest_in_window
        )
        if not gate.open:
            report.waiting[key] = gate.reason
            uow.commit()
            return []
        want = 1 if gap > 0 else max(1, min(batch, cap - state.sent_last_24h))
        views = repo.claimable(sorted(specs), now, max(CLAIM_SCAN, 2 * want))
        if not views:
            uow.commit()
            return []
        suppressed = repo.suppressed_values()
        campaigns = {c: repo.campaign_by_id(c) for c in {v.draft.campaign_id for v in views}}
        unread = repo.latest_pending_inbound([v.draft.to_email.casefold() for v in views])
        naming = consent.gate_for(repo, {str(v.enrollment.referrer.get("id", "")) for v in views})
        chosen: list[Claim] = []
        for view in views:
            if len(chosen) >= want:
                break
            spec = specs[view.draft.campaign_id]
            d = view.draft
            campaign = campaigns[d.campaign_id]
            reason = _why_not(view, spec, None if campaign is None else campaign.status, suppressed)
            why = (
                None
                if is_note(d)
                else consent.enrollment_block(naming, view.enrollment, spec.temperature)
            )
            if reason is None and why is not None:  # the live ledger: hold, the draft waits
                consent.hold_enrollment(repo, view.enrollment, why, now)
                report.deferred += 1
                continue
            if reason is not None:
                if repo.update_draft(
                    d.id, d.revision, now, state=DraftState.CANCELLED, reason=reason
                ):
                    _event(repo, d, "cancel", now, reason=reason)
                    report.cancelled += 1
                continue
            paused = view.enrollment.state in WAITING_ENROLLMENT_STATES and not is_note(d)
            if paused or (campaign is not None and campaign.status is CampaignStatus.PAUSED):
                continue  # keep it approved; it goes when the pause ends
            latest = unread.get(d.to_email.casefold())
            if latest is not None and latest > view.enrollment.created_at:
                report.deferred += 1
                continue  # mail from them is waiting to be read: it may stop this step
            inside, slot = in_window(now, spec.schedule, _zone(view, spec))
            later = note_wait(repo, d, spec, now) if is_note(d) else None
            if not inside or later is not None:
                repo.update_draft(d.id, d.revision, now, due_at=later or slot)
                report.deferred += 1
                continue
            if is_note(d) and any(is_note(c) and c.to_email == d.to_email for _, c, _ in chosen):
                continue  # one note per referrer: the next claim defers this one a window
            chosen.append((view, d, spec))
        # One compare-and-set for the batch: a draft another sender changed first is left out.
        records = repo.claim_drafts([(d.id, d.revision) for _, d, _ in chosen], key, now)
        by_id = {r.id: r for r in records}
        claimed = [(v, by_id[d.id], s) for v, d, s in chosen if d.id in by_id]
        repo.add_draft_events(
            [
                DraftEvent(
                    d.id,
                    SENDER,
                    "claim",
                    {"state": d.state.value},
                    {"mailbox": key, "attempt": str(by_id[d.id].attempts)},
                    now,
                )
                for _, d, _ in chosen
                if d.id in by_id
            ]
        )
        if claimed:
            repo.set_mailbox_next(key, now + gap_with_jitter(gap, rng), now)
        uow.commit()
        return claimed


def _release(uow_factory: UowFactory, drafts: list[DraftRecord], now: datetime) -> None:
    """Claimed drafts this sender will not send after all (it is stopping): back to approved
    at once, rather than when the sweeper finds them stale. DATA never started for them."""
    with uow_factory() as uow:
        for d in drafts:
            if uow.repo.update_draft(d.id, d.revision, now, state=DraftState.APPROVED):
                _event(uow.repo, d, "release", now, reason="sender stopping")
        uow.commit()


# What a finish step does to the draft; it returns False when the draft's revision had moved on
# (the compare-and-set failed, nothing written), so the caller re-reads the draft and retries.
Apply = Callable[[Store, DraftRecord], bool]


def _finish(
    uow_factory: UowFactory,
    draft_id: int,
    now: datetime,
    apply: Apply,
    known: DraftRecord | None = None,
) -> None:
    """Record an outcome in one transaction. With ``known`` (the record this sender last
    wrote) no read is needed; if the draft changed since (the sweeper judged a very slow send),
    it is re-read and the outcome applied to what is there."""
    with uow_factory() as uow:
        _apply_to(uow.repo, draft_id, apply, known)
        uow.commit()


# Waits before retrying the record of a delivered message (a dropped database connection):
# only this process knows the server said 250; if it gives up the draft ends needs_attention.
SENT_RECORD_RETRIES = (0.2, 0.5, 1.0, 2.0)


def _finish_delivered(
    uow_factory: UowFactory, draft_id: int, now: datetime, apply: Apply, known: DraftRecord
) -> None:
    for wait in (*SENT_RECORD_RETRIES, None):
        try:
            _finish(uow_factory, draft_id, now, apply, known)
            return
        except Exception as exc:
            if wait is None:
                raise
            log.warning(
                "database connection lost or busy while recording delivered draft %s (%s); "
                "retrying in %.1f s",
                draft_id,
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                wait,
            )
            time.sleep(wait)


def _apply_to(repo: Store, draft_id: int, apply: Apply, known: DraftRecord | None) -> None:
    if known is None or not apply(repo, known):  # a failed compare-and-set wrote nothing
        view = repo.get_draft(draft_id)
        assert view is not None
        apply(repo, view.draft)


def stop_enrollment(
    repo: Store, enrollment_id: int, state: EnrollmentState, reason: str, now: datetime
) -> int:
    """Stop an enrollment and cancel every draft of it that could still go out."""
    repo.update_enrollment(enrollment_id, now, state=state, next_due_at=None)
    cancelled = 0
    for d in repo.open_drafts_of(enrollment_id):
        if repo.update_draft(d.id, d.revision, now, state=DraftState.CANCELLED, reason=reason):
            _event(repo, d, "cancel", now, reason=reason)
            cancelled += 1
    return cancelled


_GOING = (EnrollmentState.ACTIVE, EnrollmentState.PAUSED)


class _Withdrawn(Exception):
    """Raised by ``before_data``: the draft was withdrawn (cancelled or released), no DATA."""

    def __init__(self, state: DraftState) -> None:
        super().__init__(state.value)
        self.state = state


def _last_check(
    repo: Store, view: DraftView, spec: CampaignSpec, now: datetime
) -> tuple[DraftState, str] | None:
    """Right before DATA: what may have changed since the claim (a batch waits for the sends
    ahead of it, a slow server longer): a reply handled or waiting, an opt-out, a stop or pause.
    Returns the state the draft takes instead of going out, and why."""
    d = view.draft
    fresh = repo.recheck_before_send(view.enrollment.id, d.campaign_id, d.to_email)
    if fresh is None:  # the enrollment is gone: check what can still be checked
        e = view.enrollment
        campaign = repo.campaign_by_id(d.campaign_id)
        status = None if campaign is None else campaign.status
        suppressed = repo.is_address_suppressed(d.to_email)
        unread = bool(repo.inbound_since(d.to_email.casefold(), e.created_at, pending=True))
    else:  # one query instead of four: this runs for every message
        e, status = fresh.enrollment, fresh.campaign_status
        suppressed, unread = fresh.suppressed, fresh.unread
    blocked = {d.to_email.casefold()} if suppressed else set()
    reason = _why_not(replace(view, enrollment=e), spec, status, blocked)
    if reason is not None:
        return DraftState.CANCELLED, reason
    why = None if is_note(d) else consent.live_block(repo, e, spec.temperature)
    if why is not None:  # consent revoked or a flag raised since the claim: no DATA
        consent.hold_enrollment(repo, e, why, now)
        return DraftState.APPROVED, why
    paused = e.state in WAITING_ENROLLMENT_STATES and not is_note(d)
    if paused or status is CampaignStatus.PAUSED:
        return DraftState.APPROVED, "paused while it was being sent"
    if unread:
        return DraftState.APPROVED, "mail from the recipient is waiting to be read"
    return None


def _deliver(
    uow_factory: UowFactory,
    mailer: Mailer,
    cfg: SendConfig,
    view: DraftView,
    draft: DraftRecord,
    spec: CampaignSpec,
    now: datetime,
    report: SendReport,
) -> None:
    current = [draft]  # the record as this sender last wrote it

    def before_data() -> None:
        with uow_factory() as uow:
            withdrawn = _last_check(uow.repo, view, spec, now)
            if withdrawn is not None:  # it must not go out after all: no DATA
                state, reason = withdrawn
                changes = {"reason": reason} if state is DraftState.CANCELLED else {}
                updated = uow.repo.update_draft(
                    draft.id, current[0].revision, now, state=state, **changes
                )
                if updated is None:
                    raise LostClaim(draft.id)
                _event(uow.repo, current[0], "cancel" if changes else "release", now, reason=reason)
                uow.commit()
                raise _Withdrawn(state)
            updated = uow.repo.update_draft(draft.id, current[0].revision, now, data_started_at=now)
            if updated is None:  # no DATA: whoever took the claim back owns the draft now
                raise LostClaim(draft.id)
            current[0] = updated
            uow.commit()

    try:
        account = smtp_account(spec, cfg.env)
        raw = sendable_bytes(draft, spec, view.enrollment, now)
        receipt = mailer.send(account, spec.rep.email, draft.to_email, raw, before_data)
    except LostClaim:
        report.lost += 1
    except _Withdrawn as exc:
        if exc.state is DraftState.CANCELLED:
            report.cancelled += 1
        else:
            report.deferred += 1
    except TransientDeliveryError as exc:
        _on_transient(uow_factory, cfg, current[0], now, str(exc), report)
    except PermanentDeliveryError as exc:
        _on_permanent(uow_factory, view, current[0], now, exc, report)
    except (AmbiguousDeliveryError, ConfigError) as exc:
        # Ambiguous: the data may have been delivered; a human decides (never resent blindly).
        # ConfigError (a missing password) would fail every draft alike: park it visibly.
        def attention(repo: Store, d: DraftRecord, message: str = str(exc)) -> bool:
            if not repo.update_draft(
                d.id,
                d.revision,
                now,
                state=DraftState.NEEDS_ATTENTION if d.data_started_at else DraftState.APPROVED,
                last_error=message,
                next_attempt_at=now + retry_backoff(d.attempts),
            ):
                return False
            _event(repo, d, "unknown" if d.data_started_at else "release", now, error=message)
            return True

        _finish(uow_factory, draft.id, now, attention, current[0])
        if isinstance(exc, AmbiguousDeliveryError):
            report.attention += 1
        else:
            report.errors.append(str(exc))
    else:

        def sent(repo: Store, d: DraftRecord) -> bool:
            if d.state is DraftState.SENT:  # a commit whose answer was lost had gone through
                return True
            return record_sent(repo, view, spec, d, now, receipt.reply)

        # At once, in its own transaction: the shortest window between the server's 250 and
        # the recorded outcome, where a crash leaves a delivered message needs_attention.
        _finish_delivered(uow_factory, draft.id, now, sent, current[0])
        report.sent += 1


def record_sent(
    repo: Store,
    view: DraftView,
    spec: CampaignSpec,
    d: DraftRecord,
    now: datetime,
    reply: str,
    actor: str = SENDER,
) -> bool:
    """Record ``d`` as delivered at ``now`` and move its enrollment on (next step due, or
    completed). False when the draft's compare-and-set failed (it changed meanwhile)."""
    # The enrollment first, then the draft: the order drafting (enrollment, then a new
    # draft) and reply handling (enrollment, then its open drafts) take the same rows
    # in, so these transactions queue behind each other instead of deadlocking. Both
    # writes are idempotent, so a failed compare-and-set below may run this again.
    if not is_note(d):  # a note is not a step of the sequence
        e = view.enrollment
        done = d.step_index + 1
        due = next_step_due(spec, e.sequence, done, now, _zone(view, spec))
        if due is None:
            # A reply, bounce or opt-out handled while this last step was in flight
            # keeps its state (replied, ...): "completed" would hide it and allow
            # re-enrollment. Write first (it locks the row), then read: a concurrent
            # stop either committed before (seen here) or waits for this commit.
            repo.update_enrollment(e.id, now, steps_done=done, next_due_at=None)
            now_e = repo.get_enrollment(e.id)
            if now_e is None or now_e.state in _GOING:
                repo.update_enrollment(e.id, now, state=EnrollmentState.COMPLETED)
        else:
            repo.update_enrollment(e.id, now, steps_done=done, next_due_at=due)
    if not repo.update_draft(
        d.id,
        d.revision,
        now,
        state=DraftState.SENT,
        sent_at=now,
        smtp_reply=reply,
        last_error=None,
    ):
        return False
    repo.add_draft_event(
        DraftEvent(d.id, actor, "sent", {"state": d.state.value}, {"reply": reply}, now)
    )
    return True


def _on_transient(
    uow_factory: UowFactory,
    cfg: SendConfig,
    draft: DraftRecord,
    now: datetime,
    message: str,
    report: SendReport,
) -> None:
    outcome: list[str] = []

    def retry(repo: Store, d: DraftRecord) -> bool:
        if d.attempts >= cfg.max_attempts:
            if not repo.update_draft(
                d.id, d.revision, now, state=DraftState.FAILED, last_error=message
            ):
                return False
            _event(repo, d, "fail", now, error=message)
            outcome[:] = ["failed"]
            return True
        if not repo.update_draft(
            d.id,
            d.revision,
            now,
            state=DraftState.APPROVED,
            data_started_at=None,
            next_attempt_at=now + retry_backoff(d.attempts),
            last_error=message,
        ):
            return False
        _event(repo, d, "release", now, error=message)
        outcome[:] = ["retried"]
        return True

    _finish(uow_factory, draft.id, now, retry, draft)
    if outcome == ["failed"]:
        report.failed += 1
    elif outcome == ["retried"]:
        report.retried += 1


def _on_permanent(
    uow_factory: UowFactory,
    view: DraftView,
    draft: DraftRecord,
    now: datetime,
    exc: PermanentDeliveryError,
    report: SendReport,
) -> None:
    def fail(repo: Store, d: DraftRecord) -> bool:
        if not repo.update_draft(
            d.id,
            d.revision,
            now,
            state=DraftState.FAILED,
            last_error=str(exc),
            smtp_reply=exc.reply or None,
        ):
            return False
        _event(repo, d, "fail", now, error=str(exc))
        if exc.recipient_unknown:
            repo.add_suppression(
                d.to_email.casefold(), f"hard bounce at send: {exc.reply or exc}", "smtp", now
            )
            stop_enrollment(
                repo, view.enrollment.id, EnrollmentState.BOUNCED, "the address does not exist", now
            )
        return True

    _finish(uow_factory, view.draft.id, now, fail, draft)
    report.failed += 1


def _mailboxes(uow_factory: UowFactory) -> dict[str, dict[int, CampaignSpec]]:
    groups: dict[str, dict[int, CampaignSpec]] = {}
    with uow_factory() as uow:
        for c in uow.repo.campaign_records():
            if c.status is not CampaignStatus.STOPPED:
                spec = spec_from_json(c.spec)
                groups.setdefault(mailbox_key(spec), {})[c.id] = spec
    return groups


def due_mailboxes(uow_factory: UowFactory, now: datetime) -> list[str]:
    """Mailboxes with at least one approved draft due now (what the dispatcher fans out)."""
    groups = _mailboxes(uow_factory)
    with uow_factory() as uow:
        due = uow.repo.campaigns_with_due_drafts(now)
    return [key for key, specs in groups.items() if due.intersection(specs)]


# Called after each claim, before its batch is sent, with (mailbox key, its campaigns, now):
# reads the reps' mailboxes, so a reply waiting there is stored as unread and the last check
# before DATA holds that send back (services/presend.py); returns problems to report.
BeforeBatch = Callable[[str, dict[int, CampaignSpec], datetime], list[str]]

# A mailer for one mailbox, held exclusively while the block runs; None when another thread
# of this process is already sending from that mailbox (it will send what is due).
MailerLease = Callable[[str], AbstractContextManager[Mailer | None]]


def send_due(
    uow_factory: UowFactory,
    mailer: Mailer,
    cfg: SendConfig,
    now: datetime,
    rng: random.Random | None = None,
    stop: Callable[[], bool] = lambda: False,
    only_mailbox: str | None = None,
    *,
    mailer_for: MailerLease | None = None,
    concurrency: int = 1,
    before_batch: BeforeBatch | None = None,
) -> SendReport:
    """Send every due, approved draft that the mailboxes' caps and gaps allow at ``now``.

    With ``concurrency`` > 1 and ``mailer_for``, up to that many mailboxes send at once, each
    on its own thread and SMTP session (one mailbox is always sent in order, by one thread):
    what lets a slow remote server (hundreds of ms per message) not limit the whole outbox.
    """
    rng = rng or random.Random()
    boxes = [
        (key, specs)
        for key, specs in _mailboxes(uow_factory).items()
        if only_mailbox is None or key == only_mailbox
    ]
    if concurrency <= 1 or len(boxes) <= 1 or mailer_for is None:
        report = SendReport()
        for key, specs in boxes:
            _send_mailbox(
                uow_factory, mailer, cfg, key, specs, now, rng, stop, report, before_batch
            )
        return report
    lease = mailer_for

    def one(key: str, specs: dict[int, CampaignSpec]) -> SendReport:
        part = SendReport()
        with lease(key) as leased:
            if leased is not None:
                _send_mailbox(
                    uow_factory, leased, cfg, key, specs, now, rng, stop, part, before_batch
                )
        return part

    with ThreadPoolExecutor(min(concurrency, len(boxes)), "refseq-send") as pool:
        parts = [pool.submit(one, key, specs) for key, specs in boxes]
        return _merged([f.result() for f in parts])


def _merged(parts: list[SendReport]) -> SendReport:
    report = SendReport()
    for p in parts:
        report.sent += p.sent
        report.retried += p.retried
        report.failed += p.failed
        report.attention += p.attention
        report.cancelled += p.cancelled
        report.deferred += p.deferred
        report.lost += p.lost
        report.waiting.update(p.waiting)
        report.errors.extend(p.errors)
    return report


def _send_mailbox(
    uow_factory: UowFactory,
    mailer: Mailer,
    cfg: SendConfig,
    key: str,
    specs: dict[int, CampaignSpec],
    now: datetime,
    rng: random.Random,
    stop: Callable[[], bool],
    report: SendReport,
    before_batch: BeforeBatch | None = None,
) -> None:
    try:  # a missing password fails the whole mailbox: say so, claim nothing
        smtp_account(next(iter(specs.values())), cfg.env)
    except ConfigError as exc:
        report.waiting[key] = "not configured"
        report.errors.append(str(exc))
        return
    _send_batches(uow_factory, mailer, cfg, key, specs, now, rng, stop, report, before_batch)


def _send_batches(
    uow_factory: UowFactory,
    mailer: Mailer,
    cfg: SendConfig,
    key: str,
    specs: dict[int, CampaignSpec],
    now: datetime,
    rng: random.Random,
    stop: Callable[[], bool],
    report: SendReport,
    before_batch: BeforeBatch | None = None,
) -> None:
    while not stop():
        batch = _claim(uow_factory, key, specs, now, rng, report)
        if not batch:
            return
        if before_batch is not None:  # mail it stores as unread holds a send back before DATA
            report.errors.extend(p for p in before_batch(key, specs, now) if p not in report.errors)
        for i, (view, draft, spec) in enumerate(batch):
            if stop():  # finish the message in flight, hand the rest back now
                _release(uow_factory, [d for _, d, _ in batch[i:]], now)
                return
            try:
                _deliver(uow_factory, mailer, cfg, view, draft, spec, now, report)
            except BaseException:
                # Hand back the rest and this one too: its compare-and-set on the claimed
                # revision only succeeds if DATA never started (before_data bumps it). Else it
                # sat in SENDING until the sweeper (e.g. a deadlock in before_data on PG).
                with contextlib.suppress(Exception):  # else the sweeper releases them
                    _release(uow_factory, [d for _, d, _ in batch[i:]], now)
                raise


@dataclass
class SweepReport:
    released: int = 0
    attention: int = 0


def sweep(uow_factory: UowFactory, cfg: SendConfig, now: datetime) -> SweepReport:
    """Drafts stuck in SENDING (their sender crashed): back to approved when the data was
    never started, otherwise to needs_attention. Never resends blindly."""
    report = SweepReport()
    with uow_factory() as uow:
        for d in uow.repo.stuck_sending(cfg.stale_after):  # by the database's clock
            if d.data_started_at is None:
                if uow.repo.update_draft(
                    d.id,
                    d.revision,
                    now,
                    state=DraftState.APPROVED,
                    last_error="sender crashed before sending; released",
                ):
                    _event(uow.repo, d, "release", now, reason="stale claim")
                    report.released += 1
            elif uow.repo.update_draft(
                d.id,
                d.revision,
                now,
                state=DraftState.NEEDS_ATTENTION,
                last_error="sender crashed during SMTP DATA; may have been delivered",
            ):
                _event(uow.repo, d, "unknown", now, reason="crashed during DATA")
                report.attention += 1
        uow.commit()
    return report
