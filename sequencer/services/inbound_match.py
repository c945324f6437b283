"""Which prospect an inbound message is about, and whether it may be acted on.

Anyone can write a bounce, an auto-reply or an opt-out and name any address in it, so:

* a **bounce** is acted on only for the recipient of a message refseq sent: matched by the
  returned Message-ID (or our Message-ID in its In-Reply-To/References), or by a bounced
  recipient we sent to, with the bounce's Date after our send. Only that recipient is ever
  suppressed, never the other addresses a bounce lists;
* an **auto-reply** or an **opt-out** outside a thread is acted on only when its sender is our
  own recipient and its Date is after our send (an ARF complaint: by the returned Message-ID);
* a reply on a prospect's thread from another domain is only a hint (``thread-other-sender``).

Everything else goes to a person (``unverified-*``): kept as ``unhandled``, nothing suppressed.
"""

from __future__ import annotations

from datetime import datetime

from sequencer.core.inbound import InboundClass, ParsedInbound, Verdict
from sequencer.core.ports import DraftRecord, EnrollmentRecord, Store
from sequencer.core.states import DraftKind
from sequencer.services.notes import NOTE_MATCH

BOUNCES = (InboundClass.HARD_BOUNCE, InboundClass.SOFT_BOUNCE)
SENDER_CHECKED = (InboundClass.AUTO_REPLY, InboundClass.UNSUBSCRIBE)
UNVERIFIED_BOUNCE = "unverified-bounce"
UNVERIFIED_SENDER = "unverified-sender"
UNVERIFIED = {
    UNVERIFIED_BOUNCE: "a bounce that names no message refseq sent (no returned Message-ID of "
    "ours, no recipient of ours with a Date after our send): nothing was suppressed",
    UNVERIFIED_SENDER: "an opt-out or auto-reply outside our threads from someone refseq has "
    "not emailed before its Date: nothing was done",
}


def _went(draft: DraftRecord) -> bool:
    return draft.sent_at is not None or draft.data_started_at is not None


def _recipient(repo: Store, draft: DraftRecord | None) -> EnrollmentRecord | None:
    """The enrollment whose prospect received ``draft``: None if it never went out, or went to
    someone else (a thank-you note to the referrer is filed under the prospect's enrollment)."""
    if draft is None or not _went(draft):
        return None
    enrollment = repo.get_enrollment(draft.enrollment_id)
    if enrollment is None or draft.to_email.casefold() != enrollment.prospect_key:
        return None
    return enrollment


def _sent_before(repo: Store, address: str, date: datetime | None) -> DraftRecord | None:
    return None if not address or date is None else repo.last_sent_to(address, date)


def match(
    repo: Store, parsed: ParsedInbound, verdict: Verdict
) -> tuple[EnrollmentRecord | None, str]:
    """(enrollment, how): our Message-ID in the thread, in a bounce's returned message, then
    the sender. ``None`` with ``how`` in ``UNVERIFIED`` or ``thread-other-sender``: a person
    decides; ``None`` with another ``how``: matched to no one."""
    bounce = verdict.klass in BOUNCES
    draft = repo.draft_by_message_ids([*parsed.in_reply_to, *parsed.references])
    if draft is not None and draft.kind is DraftKind.NOTE:
        return None, NOTE_MATCH  # about the referrer, never the prospect (services.notes)
    if draft is not None:
        enrollment = repo.get_enrollment(draft.enrollment_id)
        if bounce:
            ours = _recipient(repo, draft)
            return (ours, "in-reply-to") if ours else (None, UNVERIFIED_BOUNCE)
        if enrollment is None or same_party(parsed.from_addr, enrollment.prospect_key):
            return enrollment, "in-reply-to"
        return None, "thread-other-sender"
    if bounce:
        return _bounce_match(repo, parsed, verdict)
    if verdict.klass is InboundClass.UNSUBSCRIBE:  # an ARF complaint returns our message
        ours = _recipient(repo, repo.draft_by_message_ids(parsed.returned_message_ids))
        if ours is not None:
            return ours, "returned-message"
    if verdict.klass in SENDER_CHECKED:
        ours = _recipient(repo, _sent_before(repo, parsed.from_addr, parsed.date))
        if ours is None:
            return None, UNVERIFIED_SENDER
        return ours, "sender-we-emailed"
    if parsed.from_addr:
        live = repo.live_enrollments_for(parsed.from_addr)
        if live:
            return live[0], "sender"
        domain = parsed.from_addr.rpartition("@")[2]
        if domain and repo.live_enrollments_on_domain(domain):
            return None, "domain-hint"
    return None, ""


def _bounce_match(
    repo: Store, parsed: ParsedInbound, verdict: Verdict
) -> tuple[EnrollmentRecord | None, str]:
    returned = repo.draft_by_message_ids(parsed.returned_message_ids)
    if returned is not None and returned.kind is DraftKind.NOTE:
        return None, NOTE_MATCH
    ours = _recipient(repo, returned)
    if ours is not None:
        return ours, "returned-message"
    for address, _ in verdict.bounced:
        ours = _recipient(repo, _sent_before(repo, address.casefold(), parsed.date))
        if ours is not None:
            return ours, "bounced-recipient"
    return None, UNVERIFIED_BOUNCE


def same_party(sender: str, prospect: str) -> bool:
    """The prospect, or someone on the prospect's domain (or a subdomain of it, or a parent)."""
    sender, prospect = sender.casefold(), prospect.casefold()
    if not sender or sender == prospect:
        return sender == prospect
    a, b = sender.rpartition("@")[2], prospect.rpartition("@")[2]
    return bool(a and b) and (a == b or a.endswith("." + b) or b.endswith("." + a))
