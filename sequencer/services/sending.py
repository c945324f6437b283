"""Send approved drafts over SMTP, exactly once.

For each mailbox: lock it, check its cap and gap, claim one due draft with a compare-and-set
after re-checking everything that could forbid the send, record SENDING, commit; then record
``data_started_at`` right before DATA, send, and record the outcome. A crash at any point leaves
a row the sweeper can judge: never started → back to approved; started → needs attention.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sequencer.core.drafts import to_message
from sequencer.core.model import CampaignSpec, NamePolicy
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
from sequencer.core.states import CampaignStatus, DraftState, EnrollmentState
from sequencer.errors import (
    AmbiguousDeliveryError,
    ConfigError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

UowFactory = Callable[[], UnitOfWork]
SENDER = "refseq-sender"
CLAIM_SCAN = 25


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


NOTE_STEP = 1000  # drafts at or above this step index are one-off notes (thank the referrer)


def is_note(draft: DraftRecord) -> bool:
    return draft.step_index >= NOTE_STEP


def _recipient(view: DraftView) -> dict[str, str]:
    """Whose name goes in To: the prospect's, or the referrer's for a note to them."""
    if is_note(view.draft):
        return {"first_name": str(view.enrollment.referrer.get("name", ""))}
    return view.enrollment.prospect


def _why_not(repo: Store, view: DraftView, spec: CampaignSpec, now: datetime) -> str | None:
    """The reason this draft must never go out now, or None when it may."""
    e = view.enrollment
    campaign = repo.campaign_by_id(view.draft.campaign_id)
    if campaign is None or campaign.status is CampaignStatus.STOPPED:
        return "campaign stopped"
    if is_suppressed(view.draft.to_email.casefold(), repo.suppressed_values()):
        return "address or domain is suppressed"
    if is_note(view.draft):
        return None  # a thank-you to the referrer goes out whatever the prospect's state
    if e.state not in (EnrollmentState.ACTIVE, EnrollmentState.PAUSED):
        return f"enrollment is {e.state.value}"
    names = e.may_name_referrer and spec.temperature.name_referrer is NamePolicy.CONSENTED
    if names and not e.referrer.get("consent", False):
        return "the referrer withdrew consent to be named"
    return None


def _claim(
    uow_factory: UowFactory,
    key: str,
    specs: dict[int, CampaignSpec],
    now: datetime,
    rng: random.Random,
    report: SendReport,
) -> tuple[DraftView, DraftRecord, CampaignSpec] | None:
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
            return None
        for view in repo.claimable(sorted(specs), now, CLAIM_SCAN):
            spec = specs[view.draft.campaign_id]
            d = view.draft
            reason = _why_not(repo, view, spec, now)
            if reason is not None:
                if repo.update_draft(
                    d.id, d.revision, now, state=DraftState.CANCELLED, reason=reason
                ):
                    _event(repo, d, "cancel", now, reason=reason)
                    report.cancelled += 1
                continue
            campaign = repo.campaign_by_id(d.campaign_id)
            paused = view.enrollment.state is EnrollmentState.PAUSED and not is_note(d)
            if paused or (campaign is not None and campaign.status is CampaignStatus.PAUSED):
                continue  # keep it approved; it goes when the pause ends
            if repo.inbound_since(d.to_email.casefold(), view.enrollment.created_at, pending=True):
                report.deferred += 1
                continue  # mail from them is waiting to be read: it may stop this step
            inside, slot = in_window(now, spec.schedule, _zone(view, spec))
            if not inside:
                repo.update_draft(d.id, d.revision, now, due_at=slot)
                report.deferred += 1
                continue
            claimed = repo.update_draft(
                d.id,
                d.revision,
                now,
                state=DraftState.SENDING,
                claimed_at=now,
                mailbox_key=key,
                attempts=d.attempts + 1,
                data_started_at=None,
            )
            if claimed is None:
                continue  # another sender changed it first
            repo.set_mailbox_next(key, now + gap_with_jitter(gap, rng), now)
            _event(repo, d, "claim", now, mailbox=key, attempt=claimed.attempts)
            uow.commit()
            return view, claimed, spec
        uow.commit()
        return None


def _finish(
    uow_factory: UowFactory,
    draft_id: int,
    now: datetime,
    apply: Callable[[Store, DraftRecord], None],
) -> None:
    with uow_factory() as uow:
        view = uow.repo.get_draft(draft_id)
        assert view is not None
        apply(uow.repo, view.draft)
        uow.commit()


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
    revision = [draft.revision]

    def before_data() -> None:
        with uow_factory() as uow:
            updated = uow.repo.update_draft(draft.id, revision[0], now, data_started_at=now)
            assert updated is not None, "a SENDING draft changed under its sender"
            revision[0] = updated.revision
            uow.commit()

    try:
        account = smtp_account(spec, cfg.env)
        raw = to_message(draft, spec, _recipient(view), now).as_bytes()
        receipt = mailer.send(account, spec.rep.email, draft.to_email, raw, before_data)
    except TransientDeliveryError as exc:
        _on_transient(uow_factory, cfg, draft.id, now, str(exc), report)
    except PermanentDeliveryError as exc:
        _on_permanent(uow_factory, view, now, exc, report)
    except (AmbiguousDeliveryError, ConfigError) as exc:
        # Ambiguous: the data may have been delivered; a human decides (never resent blindly).
        # ConfigError (a missing password) would fail every draft alike: park it visibly.
        def attention(repo: Store, d: DraftRecord, message: str = str(exc)) -> None:
            repo.update_draft(
                d.id,
                d.revision,
                now,
                state=DraftState.NEEDS_ATTENTION if d.data_started_at else DraftState.APPROVED,
                last_error=message,
                next_attempt_at=now + retry_backoff(d.attempts),
            )
            _event(repo, d, "unknown" if d.data_started_at else "release", now, error=message)

        _finish(uow_factory, draft.id, now, attention)
        if isinstance(exc, AmbiguousDeliveryError):
            report.attention += 1
        else:
            report.errors.append(str(exc))
    else:

        def sent(repo: Store, d: DraftRecord) -> None:
            repo.update_draft(
                d.id,
                d.revision,
                now,
                state=DraftState.SENT,
                sent_at=now,
                smtp_reply=receipt.reply,
                last_error=None,
            )
            _event(repo, d, "sent", now, reply=receipt.reply)
            if is_note(d):
                return  # not a step of the sequence
            e = view.enrollment
            done = d.step_index + 1
            due = next_step_due(spec, e.sequence, done, now, _zone(view, spec))
            if due is None:
                repo.update_enrollment(
                    e.id, now, steps_done=done, next_due_at=None, state=EnrollmentState.COMPLETED
                )
            else:
                repo.update_enrollment(e.id, now, steps_done=done, next_due_at=due)

        _finish(uow_factory, draft.id, now, sent)
        report.sent += 1


def _on_transient(
    uow_factory: UowFactory,
    cfg: SendConfig,
    draft_id: int,
    now: datetime,
    message: str,
    report: SendReport,
) -> None:
    def retry(repo: Store, d: DraftRecord) -> None:
        if d.attempts >= cfg.max_attempts:
            repo.update_draft(d.id, d.revision, now, state=DraftState.FAILED, last_error=message)
            _event(repo, d, "fail", now, error=message)
            report.failed += 1
            return
        repo.update_draft(
            d.id,
            d.revision,
            now,
            state=DraftState.APPROVED,
            data_started_at=None,
            next_attempt_at=now + retry_backoff(d.attempts),
            last_error=message,
        )
        _event(repo, d, "release", now, error=message)
        report.retried += 1

    _finish(uow_factory, draft_id, now, retry)


def _on_permanent(
    uow_factory: UowFactory,
    view: DraftView,
    now: datetime,
    exc: PermanentDeliveryError,
    report: SendReport,
) -> None:
    def fail(repo: Store, d: DraftRecord) -> None:
        repo.update_draft(
            d.id,
            d.revision,
            now,
            state=DraftState.FAILED,
            last_error=str(exc),
            smtp_reply=exc.reply or None,
        )
        _event(repo, d, "fail", now, error=str(exc))
        if exc.recipient_unknown:
            repo.add_suppression(
                d.to_email.casefold(), f"hard bounce at send: {exc.reply or exc}", "smtp", now
            )
            stop_enrollment(
                repo, view.enrollment.id, EnrollmentState.BOUNCED, "the address does not exist", now
            )

    _finish(uow_factory, view.draft.id, now, fail)
    report.failed += 1


def _mailboxes(uow_factory: UowFactory) -> dict[str, dict[int, CampaignSpec]]:
    groups: dict[str, dict[int, CampaignSpec]] = {}
    with uow_factory() as uow:
        for summary in uow.repo.list_campaigns():
            c = summary.campaign
            if c.status is not CampaignStatus.STOPPED:
                spec = spec_from_json(c.spec)
                groups.setdefault(mailbox_key(spec), {})[c.id] = spec
    return groups


def due_mailboxes(uow_factory: UowFactory, now: datetime) -> list[str]:
    """Mailboxes with at least one approved draft due now (what the dispatcher fans out)."""
    groups = _mailboxes(uow_factory)
    with uow_factory() as uow:
        counts = uow.repo.outbox_counts(now)
    return [
        key for key, specs in groups.items() if any(counts.get(c, {}).get("due") for c in specs)
    ]


def send_due(
    uow_factory: UowFactory,
    mailer: Mailer,
    cfg: SendConfig,
    now: datetime,
    rng: random.Random | None = None,
    stop: Callable[[], bool] = lambda: False,
    only_mailbox: str | None = None,
) -> SendReport:
    """Send every due, approved draft that the mailboxes' caps and gaps allow at ``now``."""
    rng = rng or random.Random()
    report = SendReport()
    for key, specs in _mailboxes(uow_factory).items():
        if only_mailbox is not None and key != only_mailbox:
            continue
        try:  # a missing password fails the whole mailbox: say so, claim nothing
            smtp_account(next(iter(specs.values())), cfg.env)
        except ConfigError as exc:
            report.waiting[key] = "not configured"
            report.errors.append(str(exc))
            continue
        while not stop():
            claimed = _claim(uow_factory, key, specs, now, rng, report)
            if claimed is None:
                break
            view, draft, spec = claimed
            _deliver(uow_factory, mailer, cfg, view, draft, spec, now, report)
    return report


@dataclass
class SweepReport:
    released: int = 0
    attention: int = 0


def sweep(uow_factory: UowFactory, cfg: SendConfig, now: datetime) -> SweepReport:
    """Drafts stuck in SENDING (their sender crashed): back to approved when the data was
    never started, otherwise to needs_attention. Never resends blindly."""
    report = SweepReport()
    with uow_factory() as uow:
        for d in uow.repo.stuck_sending(now - cfg.stale_after):
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
