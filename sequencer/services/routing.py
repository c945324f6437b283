"""Route an engaged prospect to their rep: handoff record, notice email, webhook, thank-you note.

Inside the inbox transaction only rows are written (handoff, webhook row, thank-you draft);
the notice email and the webhook POST happen afterwards, recorded, and retried until they work.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from sequencer.core import webhooksig
from sequencer.core.compose import make_message_id
from sequencer.core.drafts import DraftConfig, enrollment_context
from sequencer.core.model import CampaignSpec
from sequencer.core.ports import (
    EnrollmentRecord,
    HandoffRecord,
    Mailer,
    Store,
    UnitOfWork,
    WebhookPoster,
)
from sequencer.core.render import render_step, template_dirs
from sequencer.core.specjson import spec_from_json
from sequencer.core.states import DraftKind, DraftState
from sequencer.core.wirepolicy import WIRE_POLICY
from sequencer.errors import AmbiguousDeliveryError, DeliveryError, SequencerError
from sequencer.services.notes import thank_referrer

UowFactory = Callable[[], UnitOfWork]
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
            handoff.id,
            spec.routing.webhook_url_env,
            webhook_payload(spec, handoff, e),
            now,
            secret_env=spec.routing.webhook_secret_env,
        )
    thank_referrer(repo, spec, handoff, e, cfg, now)  # services.notes: one per window


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
                    if d.sent_at is not None and d.kind is DraftKind.STEP
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


def deliver_webhooks(
    uow_factory: UowFactory,
    poster: WebhookPoster,
    master_key: str,
    env: Mapping[str, str],
    now: datetime,
    clock: Callable[[], float] = time.time,
) -> RoutingReport:
    """POST pending webhooks, each signed with its endpoint's own secret and the wall-clock
    time (``clock``: the receiver checks it against its own), retrying with backoff; every
    attempt is recorded. ``master_key`` is only checked against: it never signs a webhook."""
    report = RoutingReport()
    with uow_factory() as uow:
        pending = uow.repo.pending_webhooks(now)
    for w in pending:
        url = env.get(w.url_env, "")
        body = json.dumps(w.payload, sort_keys=True, ensure_ascii=False).encode()
        attempts = w.attempts + 1
        code: int | None = None
        error: str | None = None
        try:
            if not url:
                raise OSError(
                    f"environment variable {w.url_env} (routing.webhook_url_env) is not set"
                )
            secret = webhook_secret(w.secret_env, env, master_key)
            headers = {
                "Content-Type": "application/json",
                webhooksig.HEADER: webhooksig.sign(secret, body, int(clock())),
                "X-Refseq-Delivery": str(w.id),
            }
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


def webhook_secret(secret_env: str | None, env: Mapping[str, str], master_key: str) -> str:
    """The endpoint's signing secret; OSError (recorded, retried) when it is unusable."""
    if secret_env is None:
        raise OSError(
            "this campaign names no routing.webhook_secret_env: add one and run "
            "`refseq launch` again"
        )
    secret = env.get(secret_env, "").strip()
    if len(secret) < webhooksig.MIN_SECRET_LENGTH:
        raise OSError(
            f"environment variable {secret_env} (routing.webhook_secret_env) is "
            f"{'not set' if not secret else 'too short'}: set it to a random secret of at "
            f"least {webhooksig.MIN_SECRET_LENGTH} characters shared with the receiver"
        )
    if hmac.compare_digest(secret.encode(), master_key.encode()):
        raise OSError(
            f"{secret_env} (routing.webhook_secret_env) is REFSEQ_SECRET_KEY: a receiver "
            "could then forge sessions and unsubscribe links; give the endpoint its own secret"
        )
    return secret


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


__all__ = ["DraftState"]
