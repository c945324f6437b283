"""Route an engaged prospect to their rep: handoff record, notice email, webhook, thank-you draft.

Inside the inbox transaction only rows are written (handoff, webhook row, thank-you draft);
the notice email and the webhook POST happen afterwards, recorded, and retried until they work.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from sequencer.core.compose import make_message_id
from sequencer.core.drafts import DraftConfig, build_draft_for_template, enrollment_context
from sequencer.core.model import CampaignSpec
from sequencer.core.ports import (
    DraftEvent,
    EnrollmentRecord,
    HandoffRecord,
    Mailer,
    Store,
    UnitOfWork,
    WebhookPoster,
)
from sequencer.core.render import render_step, template_dirs
from sequencer.core.specjson import spec_from_json
from sequencer.core.states import DraftState
from sequencer.core.wirepolicy import WIRE_POLICY
from sequencer.errors import AmbiguousDeliveryError, DeliveryError, SequencerError
from sequencer.services.sending import NOTE_STEP

UowFactory = Callable[[], UnitOfWork]
THANK_STEP = NOTE_STEP  # the step index of the thank-you to the referrer (one per referral)
WEBHOOK_ATTEMPTS = 6


def webhook_payload(
    spec: CampaignSpec, handoff: HandoffRecord, e: EnrollmentRecord
) -> dict[str, Any]:
    return {
        "event": "handoff",
        "handoff_id": handoff.id,
        "campaign": spec.name,
        "rep": spec.rep.email,
        "prospect": e.prospect,
        "intent": handoff.intent,
        "reply_text": handoff.reply_text,
        "redirect_to": handoff.redirect_to,
        "referrer": {k: e.referrer.get(k) for k in ("id", "name", "company", "email")},
        "referral": {
            "context": e.referral.get("context"),
            "strength": e.referral.get("strength"),
            "temperature": e.temperature,
        },
        "at": handoff.created_at.isoformat(),
    }


def on_handoff(
    repo: Store,
    spec: CampaignSpec,
    handoff: HandoffRecord,
    e: EnrollmentRecord,
    cfg: DraftConfig | None,
    now: datetime,
) -> None:
    """Rows written with the handoff, in the same transaction."""
    if spec.routing.webhook_url_env:
        repo.add_webhook(
            handoff.id, spec.routing.webhook_url_env, webhook_payload(spec, handoff, e), now
        )
    email = str(e.referrer.get("email") or "")
    if spec.routing.thank_referrer == "draft" and cfg is not None and email:
        draft = build_draft_for_template(
            spec, e, e.id, THANK_STEP, "thank_referrer", email, cfg, now
        )
        record = repo.add_draft(draft, now)  # unique (enrollment, step): once per referral
        if record is not None:
            repo.add_draft_event(
                DraftEvent(
                    record.id,
                    "refseq-inbox",
                    "created",
                    {},
                    {"state": record.state.value, "why": "thank the referrer"},
                    now,
                )
            )


@dataclass
class RoutingReport:
    notified: int = 0
    webhooks_delivered: int = 0
    webhooks_failed: int = 0
    errors: list[str] = field(default_factory=list)


def _notice(
    spec: CampaignSpec,
    handoff: HandoffRecord,
    e: EnrollmentRecord,
    cfg: DraftConfig,
    reply_subject: str,
    now: datetime,
    thread: list[dict[str, str]] | None = None,
) -> EmailMessage:
    context = enrollment_context(
        spec,
        e,
        max(1, e.steps_done),
        "",
        internal=True,
        extra={
            "reply_excerpt": handoff.reply_text or "(no text)",
            "reply_subject": reply_subject,
            "thread": thread or [],
        },
    )
    rendered = render_step(
        "handoff_notice", context, template_dirs(cfg.shipped_templates, spec.templates_dir)
    )
    msg = EmailMessage(policy=WIRE_POLICY)
    msg["From"] = Address("refseq", addr_spec=spec.rep.email)
    msg["To"] = Address(spec.rep.name, addr_spec=spec.rep.email)
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_message_id(spec.rep.email)  # RFC 5322 §3.6.4: SHOULD have one
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: our own poller must not act on it
    msg["X-Refseq-Handoff"] = str(handoff.id)
    msg.set_content(rendered.text)
    return msg


# A worker that claimed a notice and died: after this, another may send it.
NOTICE_CLAIM_TTL = timedelta(minutes=10)


def notify_handoffs(
    uow_factory: UowFactory, mailer: Mailer, cfg: DraftConfig, env: Mapping[str, str], now: datetime
) -> RoutingReport:
    """Email the rep a notice for each handoff not yet notified."""
    from sequencer.services.sending import smtp_account

    report = RoutingReport()
    with uow_factory() as uow:
        pending = [
            h for h in uow.repo.list_handoffs(states=("open", "handled")) if h.notified_at is None
        ]
        work = []
        for h in pending:
            campaign = uow.repo.campaign_by_id(h.campaign_id)
            e = uow.repo.get_enrollment(h.enrollment_id)
            inbound = uow.repo.get_inbound(h.inbound_id)
            if campaign and e and inbound:
                if not campaign.spec.get("routing", {}).get("notify_rep", True):
                    continue
                thread = [
                    {"subject": d.subject, "sent": f"{d.sent_at:%a %d %b %Y %H:%M} UTC"}
                    for d in uow.repo.drafts_of(e.id)
                    if d.sent_at is not None and d.step_index < NOTE_STEP
                ]
                subject = inbound[0].subject or ""
                work.append((h, spec_from_json(campaign.spec), e, subject, thread))
    for h, spec, e, subject, thread in work:
        with uow_factory() as uow:  # one worker per notice, even when polls overlap
            claimed = uow.repo.claim_handoff_notice(h.id, now, now - NOTICE_CLAIM_TTL)
            uow.commit()
        if not claimed:
            continue
        try:
            clean = subject.replace("\r", " ").replace("\n", " ")
            msg = _notice(spec, h, e, cfg, clean, now, thread)
            mailer.send(
                smtp_account(spec, env),
                spec.rep.email,
                spec.rep.email,
                msg.as_bytes(),
                lambda: None,
            )
        except AmbiguousDeliveryError as exc:
            # The data went out and no answer came: it may well be in the rep's inbox. A
            # notice is never sent twice; `refseq handoffs` lists the handoff either way.
            report.errors.append(f"handoff {h.id}: notice may not have arrived (not resent): {exc}")
        except (DeliveryError, SequencerError, ValueError) as exc:
            report.errors.append(f"handoff {h.id}: notice not sent: {exc}")
            with uow_factory() as uow:  # nothing was delivered: the next poll tries again
                uow.repo.update_handoff(h.id, notice_claimed_at=None)
                uow.commit()
            continue
        with uow_factory() as uow:
            uow.repo.update_handoff(h.id, notified_at=now)
            uow.commit()
        report.notified += 1
    return report


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver_webhooks(
    uow_factory: UowFactory,
    poster: WebhookPoster,
    secret: str,
    env: Mapping[str, str],
    now: datetime,
) -> RoutingReport:
    """POST pending webhooks (HMAC-signed), retrying with backoff; every attempt is recorded."""
    report = RoutingReport()
    with uow_factory() as uow:
        pending = uow.repo.pending_webhooks(now)
    for w in pending:
        url = env.get(w.url_env, "")
        body = json.dumps(w.payload, sort_keys=True, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Refseq-Signature": sign(secret, body),
            "X-Refseq-Delivery": str(w.id),
        }
        attempts = w.attempts + 1
        code: int | None = None
        error: str | None = None
        try:
            if not url:
                raise OSError(
                    f"environment variable {w.url_env} (routing.webhook_url_env) is not set"
                )
            code = poster.post(url, body, headers)
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        except OSError as exc:
            error = str(exc)
        with uow_factory() as uow:
            if error is None:
                uow.repo.update_webhook(
                    w.id,
                    status="delivered",
                    attempts=attempts,
                    last_status_code=code,
                    last_error=None,
                    delivered_at=now,
                )
                report.webhooks_delivered += 1
            elif attempts >= WEBHOOK_ATTEMPTS:
                uow.repo.update_webhook(
                    w.id,
                    status="failed",
                    attempts=attempts,
                    last_status_code=code,
                    last_error=error,
                )
                report.webhooks_failed += 1
                report.errors.append(f"webhook {w.id}: gave up after {attempts} attempts: {error}")
            else:
                uow.repo.update_webhook(
                    w.id,
                    attempts=attempts,
                    last_status_code=code,
                    last_error=error,
                    next_attempt_at=now + timedelta(minutes=2**attempts),
                )
                report.errors.append(f"webhook {w.id}: attempt {attempts} failed: {error}")
            uow.commit()
    return report


def mark_handled(
    uow_factory: UowFactory,
    handoff_id: int,
    actor: str,
    now: datetime,
    rep_email: str | None = None,
) -> HandoffRecord:
    from sequencer.errors import NotFound

    with uow_factory() as uow:
        found = [
            h
            for h in uow.repo.list_handoffs(rep_email, states=("open", "handled"))
            if h.id == handoff_id
        ]
        if not found:
            raise NotFound(f"no handoff {handoff_id} (see `refseq handoffs`)")
        uow.repo.update_handoff(handoff_id, state="handled", handled_at=now, handled_by=actor)
        uow.commit()
        return found[0]


def list_handoffs(
    uow_factory: UowFactory, rep_email: str | None = None, states: tuple[str, ...] = ("open",)
) -> list[HandoffRecord]:
    with uow_factory() as uow:
        return uow.repo.list_handoffs(rep_email, states)


__all__ = ["THANK_STEP", "DraftState"]
