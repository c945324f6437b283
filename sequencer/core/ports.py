"""Ports: the Protocols services talk to. Adapters implement them (see ``sequencer.adapters``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self

from sequencer.core.states import CampaignStatus, DraftKind, DraftState, EnrollmentState


@dataclass(frozen=True)
class CampaignRecord:
    id: int
    name: str
    status: CampaignStatus
    source: str
    spec_hash: str
    spec: dict[str, Any]  # the normalised spec as JSON (for display and for the workers)
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CampaignSummary:
    campaign: CampaignRecord
    by_state: dict[str, int]
    by_temperature: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


@dataclass(frozen=True)
class NewEnrollment:
    """What launch stores for one prospect. JSON-able dicts keep the snapshot that drafts render."""

    prospect_key: str
    prospect_email: str
    prospect: dict[str, str]
    referrer: dict[str, Any]
    referral: dict[str, Any]  # {"strength", "context", "row"}
    other_referrals: list[dict[str, Any]]
    temperature: str
    sequence: str
    may_name_referrer: bool
    reason: str
    state: EnrollmentState
    hold_reason: str | None
    next_due_at: datetime | None


@dataclass(frozen=True)
class EnrollmentRecord:
    id: int
    campaign_id: int
    prospect_key: str
    prospect_email: str
    prospect: dict[str, str]
    referrer: dict[str, Any]
    referral: dict[str, Any]
    other_referrals: list[dict[str, Any]]
    temperature: str
    sequence: str
    may_name_referrer: bool
    reason: str
    state: EnrollmentState
    hold_reason: str | None
    steps_done: int
    next_due_at: datetime | None
    paused_until: datetime | None
    created_at: datetime
    updated_at: datetime
    soft_bounces: int = 0


@dataclass(frozen=True)
class Suppression:
    value: str  # a casefolded address, or "@domain"
    reason: str
    source: str
    created_at: datetime


@dataclass
class Counter:
    added: int = 0
    updated: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Repository(Protocol):
    # suppression list (global, case-insensitive)
    def suppressed_values(self) -> set[str]: ...
    def add_suppression(self, value: str, reason: str, source: str, now: datetime) -> bool: ...
    def remove_suppression(self, value: str) -> bool: ...
    def list_suppressions(self) -> list[Suppression]: ...
    def is_address_suppressed(self, address: str) -> bool:
        """Is ``address`` or its ``@domain`` on the list? (one indexed lookup)"""
        ...

    # campaigns
    def get_campaign(self, name: str) -> CampaignRecord | None: ...
    def campaign_records(self) -> list[CampaignRecord]:
        """Every campaign by name, without the enrollment counts of ``list_campaigns`` (what
        the workers need every minute, at the cost of the campaigns table alone)."""
        ...

    def save_campaign(
        self, name: str, source: str, spec_hash: str, spec: dict[str, Any], now: datetime
    ) -> tuple[CampaignRecord, bool]:
        """Insert or update by name (keeping its status). Returns (record, created)."""
        ...

    def set_campaign_status(
        self, campaign_id: int, status: CampaignStatus, now: datetime
    ) -> None: ...
    def list_campaigns(self) -> list[CampaignSummary]: ...

    # enrollments
    def enrollment_states(self, campaign_id: int) -> dict[str, EnrollmentState]:
        """prospect_key → state for every enrollment of the campaign."""
        ...

    def live_elsewhere(self, campaign_id: int | None) -> dict[str, str]:
        """prospect_key → campaign name, for live enrollments in *other* active/paused campaigns."""
        ...

    def replied_anywhere(self) -> dict[str, str]:
        """prospect_key → campaign name, for everyone who ever replied (never re-enrolled)."""
        ...

    def add_enrollments(
        self,
        campaign_id: int,
        rows: Iterable[NewEnrollment],
        now: datetime,
        progress: Callable[[int], None] | None = None,
    ) -> int: ...
    def replace_held(self, campaign_id: int, row: NewEnrollment, now: datetime) -> bool:
        """Re-plan a HELD enrollment (consent or data changed). False if it is not held."""
        ...

    def list_enrollments(
        self, campaign_id: int, states: Iterable[EnrollmentState] | None = None
    ) -> list[EnrollmentRecord]: ...


@dataclass(frozen=True)
class NewDraft:
    enrollment_id: int
    step_index: int  # 0-based position in the enrollment's sequence
    template: str
    state: DraftState
    to_email: str
    subject: str
    text: str
    html: str | None
    headers: dict[str, str]  # From, To, In-Reply-To, References, List-Unsubscribe, …
    message_id: str  # RFC 5322 Message-ID, with angle brackets
    due_at: datetime
    message: bytes | None = None  # the bytes to send, without Date: (core.drafts.message_bytes)
    kind: DraftKind = DraftKind.STEP  # a note (to the referrer) is not a step: see DraftKind


@dataclass(frozen=True)
class DraftRecord:
    id: int
    enrollment_id: int
    campaign_id: int
    step_index: int
    template: str
    state: DraftState
    to_email: str
    subject: str
    text: str
    html: str | None
    headers: dict[str, str]
    message_id: str
    due_at: datetime
    revision: int  # +1 on every change of content or state; the optimistic-concurrency token
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    created_at: datetime
    updated_at: datetime
    # The outbox: written before and after the SMTP effect (see services.sending).
    attempts: int = 0
    next_attempt_at: datetime | None = None  # retry backoff; None = as soon as due_at
    mailbox_key: str | None = None  # the mailbox that claimed it (for caps)
    claimed_at: datetime | None = None
    data_started_at: datetime | None = None  # set before DATA: from then on, never resend
    sent_at: datetime | None = None
    smtp_reply: str | None = None
    last_error: str | None = None
    message: bytes | None = None  # built at draft time / edit, without Date:; None = not stored
    kind: DraftKind = DraftKind.STEP  # rev. 0012; a note's step_index is NOTE_INDEX (-1)

    @property
    def step_number(self) -> int:
        return self.step_index + 1


@dataclass(frozen=True)
class DraftView:
    """A draft with what a rep needs to judge it (campaign, prospect, referral)."""

    draft: DraftRecord
    campaign: str
    rep_email: str
    enrollment: EnrollmentRecord


@dataclass(frozen=True)
class DraftEvent:
    draft_id: int
    actor: str
    action: str  # created | approve | reject | edit | …
    before: dict[str, Any]
    after: dict[str, Any]
    at: datetime


class DraftRepository(Protocol):
    def due_enrollments(self, now: datetime, limit: int) -> list[EnrollmentRecord]:
        """Active enrollments of active campaigns whose next step is due (next_due_at <= now)
        and has no draft yet (no row for (enrollment, steps_done)), oldest due first."""
        ...

    def drafts_of(self, enrollment_id: int) -> list[DraftRecord]: ...
    def add_draft(
        self,
        draft: NewDraft,
        now: datetime,
        campaign_id: int | None = None,
        clear_due: bool = True,
    ) -> DraftRecord | None:
        """Insert; None when (enrollment, step) already has a draft (enforced by the DB).
        ``campaign_id``, when the caller has the enrollment at hand, saves looking it up.
        ``clear_due=False``: the caller clears the due times itself (``clear_drafted_due``)."""
        ...

    def add_drafts(self, drafts: list[tuple[NewDraft, int]], now: datetime) -> list[DraftRecord]:
        """Insert (draft, campaign id) pairs in one statement, at revision 1; returns those
        inserted (one whose (enrollment, step) already has a draft is skipped). Due times
        are not cleared: that is ``clear_drafted_due``."""
        ...

    def clear_drafted_due(self, steps: list[tuple[int, int]]) -> None:
        """For each (enrollment id, drafted step): the enrollment is no longer due if that step
        is its current one. One statement for a whole batch."""
        ...

    def get_draft(self, draft_id: int) -> DraftView | None: ...
    def list_drafts(
        self,
        states: Iterable[DraftState],
        rep_email: str | None = None,
        campaign: str | None = None,
    ) -> list[DraftView]:
        """Newest first."""
        ...

    def update_draft(
        self, draft_id: int, expected_revision: int, now: datetime, **changes: Any
    ) -> DraftRecord | None:
        """Compare-and-set on ``revision``: applies ``changes`` (state, subject, text, html,
        headers, decided_by, decided_at, reason) and bumps the revision; None if it changed."""
        ...

    def campaign_by_id(self, campaign_id: int) -> CampaignRecord | None: ...
    def update_enrollment(self, enrollment_id: int, now: datetime, **changes: Any) -> None:
        """Set state, steps_done, next_due_at, paused_until or hold_reason."""
        ...

    def add_draft_event(self, event: DraftEvent) -> None: ...
    def draft_events(self, draft_id: int) -> list[DraftEvent]: ...


@dataclass(frozen=True)
class SmtpAccount:
    """Where and as whom to send. ``password`` comes from the environment, never the DB/YAML."""

    host: str
    port: int
    security: str  # none | starttls | ssl
    username: str
    password: str | None = field(repr=False)
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_key_pem: bytes | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        """Identity of the mailbox for caps and connection reuse."""
        return f"{self.username}@{self.host}:{self.port}"


@dataclass(frozen=True)
class SendReceipt:
    reply: str  # the server's final reply to the message data, e.g. "250 2.0.0 Ok: queued as X"


class Mailer(Protocol):
    """Sends one message. Raises TransientDeliveryError, PermanentDeliveryError or
    AmbiguousDeliveryError (see ``sequencer.errors``); anything else is a bug."""

    def send(
        self,
        account: SmtpAccount,
        envelope_from: str,
        recipient: str,
        message: bytes,
        before_data: Callable[[], None],
    ) -> SendReceipt:
        """``before_data`` is called (and must have durably recorded it) right before the
        DATA command: from then on a lost connection is ambiguous, never retried blindly."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class MailboxState:
    key: str
    next_send_at: datetime | None  # min_gap: no send from this mailbox before this
    sent_last_24h: int
    oldest_in_window: datetime | None  # when the oldest of those leaves the rolling 24 h


@dataclass(frozen=True)
class SendRecheck:
    """What may have changed for a claimed draft since its claim, read in one query."""

    enrollment: EnrollmentRecord
    campaign_status: CampaignStatus | None  # None: the campaign is gone
    suppressed: bool  # the address or its @domain is on the suppression list
    unread: bool  # mail from the address arrived after the enrollment and is not handled yet


class OutboxRepository(Protocol):
    def lock_mailbox(self, key: str, now: datetime) -> MailboxState:
        """Lock the mailbox for this transaction (serialises claims) and read its budget."""
        ...

    def set_mailbox_next(self, key: str, next_send_at: datetime, now: datetime) -> None: ...
    def mailbox_states(self, now: datetime) -> list[MailboxState]: ...
    def claimable(self, campaign_ids: list[int], now: datetime, limit: int) -> list[DraftView]:
        """Approved, due drafts of these campaigns, oldest first; skips rows locked by others."""
        ...

    def claim_drafts(
        self, drafts: list[tuple[int, int]], key: str, now: datetime
    ) -> list[DraftRecord]:
        """Compare-and-set (id, expected revision) pairs to SENDING for mailbox ``key`` in one
        statement (attempts + 1, claimed_at = now); returns the claimed records."""
        ...

    def add_draft_events(self, events: list[DraftEvent]) -> None: ...
    def recheck_before_send(
        self, enrollment_id: int, campaign_id: int, address: str
    ) -> SendRecheck | None:
        """One query for the last check before DATA; None if the enrollment is gone."""
        ...

    def latest_pending_inbound(self, addresses: list[str]) -> dict[str, datetime]:
        """Per casefolded address that has unread ("new") mail, when the latest arrived."""
        ...

    def stuck_sending(self, stale_after: timedelta) -> list[DraftRecord]:
        """SENDING drafts claimed longer than ``stale_after`` ago, by the database's clock."""
        ...

    def open_drafts_of(self, enrollment_id: int) -> list[DraftRecord]: ...
    def outbox_counts(self, now: datetime) -> dict[int, dict[str, int]]: ...
    def campaigns_with_due_drafts(self, now: datetime) -> set[int]:
        """Campaign ids with at least one approved draft due at ``now`` (reads only those)."""
        ...

    def next_due_by_campaign(self) -> dict[int, datetime]: ...


@dataclass(frozen=True)
class ImapAccount:
    """Where replies arrive. ``password`` comes from the environment, never the DB/YAML."""

    host: str
    port: int
    security: str  # none | starttls | ssl
    username: str
    password: str | None
    folder: str = "INBOX"

    @property
    def key(self) -> str:
        """Identity of the polled folder (checkpoints are per key); never contains the password."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"


@dataclass(frozen=True)
class Checkpoint:
    """How far a folder has been read: UIDs only mean something under their UIDVALIDITY."""

    uidvalidity: int
    last_uid: int


@dataclass(frozen=True)
class FetchedMail:
    uid: int
    raw: bytes  # the whole RFC 5322 message, as stored on the server
    internal_date: datetime  # aware, UTC: when the server received it


@dataclass(frozen=True)
class FetchBatch:
    """Messages in ascending UID order, all under ``uidvalidity``.

    ``rescanned`` is True when there was no usable checkpoint (first poll, or the folder's
    UIDVALIDITY changed): the batch is then "everything since ``rescan_since``" and may repeat
    mail the caller already has (dedupe by Message-ID/hash). After storing the batch, advance
    the checkpoint to ``Checkpoint(uidvalidity, <highest UID stored>)``; an empty rescanned batch
    gives no UID to advance to, so keep the old checkpoint (the next poll rescans again).
    """

    uidvalidity: int
    messages: list[FetchedMail]
    rescanned: bool

    @property
    def last_uid(self) -> int | None:
        return self.messages[-1].uid if self.messages else None


class MailboxReader(Protocol):
    """Reads the rep's mailbox without changing it (no flags, no moves, no deletes).

    Raises ``MailboxError`` (a ``SequencerError``, defined by the adapter) when the server
    cannot be reached, refuses the login or the folder; the next poll simply tries again.
    """

    def fetch_new(
        self,
        account: ImapAccount,
        checkpoint: Checkpoint | None,
        rescan_since: datetime,
        limit: int = 500,
    ) -> FetchBatch:
        """Up to ``limit`` messages of ``account.folder`` after ``checkpoint`` (oldest UID
        first); without a valid checkpoint, those received since ``rescan_since``."""
        ...

    def find_message_id(self, account: ImapAccount, folder: str | None, message_id: str) -> bool:
        """Is a message with this Message-ID in ``folder`` of that mailbox? ``None``: the folder
        the server marks ``\\Sent`` (RFC 6154); raises ``NoSentFolder`` when it marks none."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class InboundRecord:
    """A stored inbound message (its raw bytes are read separately, and only by the parser)."""

    id: int
    dedupe_key: str
    mailbox_key: str
    uid: int | None
    received_at: datetime
    fetched_at: datetime
    status: str  # new | handled | unmatched | unhandled
    klass: str | None
    intent: str | None
    evidence: list[Any]
    extracted: dict[str, Any]
    from_addr: str | None
    subject: str | None
    message_id: str | None
    enrollment_id: int | None
    matched_by: str | None
    error: str | None
    handled_at: datetime | None
    reviewed_at: datetime | None = None  # a person marked it handled (unhandled/unmatched)
    reviewed_by: str | None = None


@dataclass(frozen=True)
class HandoffRecord:
    id: int
    inbound_id: int
    enrollment_id: int
    campaign_id: int
    rep_email: str
    intent: str
    reply_text: str
    redirect_to: str | None
    state: str  # open | handled
    notified_at: datetime | None
    created_at: datetime
    handled_at: datetime | None
    handled_by: str | None


@dataclass(frozen=True)
class WebhookRecord:
    id: int
    handoff_id: int
    url_env: str
    payload: dict[str, Any]
    status: str  # pending | delivered | failed
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    secret_env: str | None = None  # routing.webhook_secret_env (None: a row from before 0013)


class InboxRepository(Protocol):
    def checkpoint(self, key: str) -> Checkpoint | None: ...
    def save_checkpoint(self, key: str, checkpoint: Checkpoint, now: datetime) -> None: ...
    def last_polled(self, key: str) -> datetime | None: ...
    def add_inbound(
        self,
        dedupe_key: str,
        mailbox_key: str,
        uid: int | None,
        raw: bytes,
        received_at: datetime,
        now: datetime,
        from_addr: str | None = None,
    ) -> int | None:
        """Store raw bytes first; None when ``dedupe_key`` is already stored."""
        ...

    def inbound_to_process(self, limit: int) -> list[tuple[InboundRecord, bytes]]: ...
    def update_inbound(self, inbound_id: int, **changes: Any) -> None: ...
    def list_inbound(self, statuses: Iterable[str] | None = None) -> list[InboundRecord]: ...
    def get_inbound(self, inbound_id: int) -> tuple[InboundRecord, bytes] | None: ...
    def draft_by_message_ids(self, message_ids: Iterable[str]) -> DraftRecord | None: ...
    def last_sent_to(self, address: str, not_after: datetime) -> DraftRecord | None:
        """Our latest message to the prospect ``address`` (casefolded), handed to SMTP by
        ``not_after``."""
        ...

    def inbound_for_review(self) -> list[InboundRecord]:
        """Unhandled and unmatched messages no person has marked handled yet, newest first."""
        ...

    def mark_inbound_reviewed(self, inbound_id: int, by: str, now: datetime) -> bool: ...
    def get_enrollment(self, enrollment_id: int) -> EnrollmentRecord | None: ...
    def live_enrollments_for(self, prospect_key: str) -> list[EnrollmentRecord]: ...
    def live_enrollments_on_domain(self, domain: str) -> list[EnrollmentRecord]: ...
    def active_naming_referrer(self, campaign_id: int, referrer_id: str) -> list[EnrollmentRecord]:
        """Active enrollments of the campaign that may name this referrer (id as in the CSV)."""
        ...

    def inbound_since(self, prospect_key: str, since: datetime, pending: bool = False) -> int:
        """How many stored messages from this address arrived after ``since`` (with
        ``pending``, only those not yet processed)."""
        ...

    def paused_due(self, now: datetime) -> list[EnrollmentRecord]: ...
    def add_handoff(self, handoff: HandoffRecord) -> HandoffRecord | None: ...
    def list_handoffs(
        self, rep_email: str | None = None, states: Iterable[str] = ("open",)
    ) -> list[HandoffRecord]: ...
    def update_handoff(self, handoff_id: int, **changes: Any) -> None: ...
    def claim_handoff_notice(self, handoff_id: int, now: datetime, stale_before: datetime) -> bool:
        """Take the job of emailing this handoff's notice: False if it was sent, or another
        worker claimed it after ``stale_before``."""
        ...

    def add_webhook(
        self,
        handoff_id: int,
        url_env: str,
        payload: dict[str, Any],
        now: datetime,
        secret_env: str | None = None,
    ) -> None: ...
    def pending_webhooks(self, now: datetime) -> list[WebhookRecord]: ...
    def update_webhook(self, webhook_id: int, **changes: Any) -> None: ...
    def add_referrer_flag(
        self,
        campaign_id: int,
        referrer_id: str,
        prospect_email: str,
        inbound_id: int,
        reason: str,
        now: datetime,
    ) -> None: ...


class NoteRepository(Protocol):
    """Notes to referrers (``DraftKind.NOTE``) and the prospects each one thanks them for."""

    def note_for(self, enrollment_id: int) -> int | None:
        """The note that thanks the referrer for this enrollment's prospect, if any."""
        ...

    def note_mentions(self, draft_id: int) -> list[int]: ...
    def add_note_mention(
        self, draft_id: int, enrollment_id: int, referrer_key: str, now: datetime
    ) -> bool:
        """False when the enrollment is already in a note (each prospect is thanked once)."""
        ...

    def open_note_to(self, campaign_id: int, referrer_key: str) -> DraftRecord | None:
        """The campaign's note to this referrer (casefolded address) not yet claimed."""
        ...

    def last_note_to(self, referrer_key: str, exclude_draft: int | None = None) -> datetime | None:
        """When a note to this referrer last went out or started to (any campaign)."""
        ...


from sequencer.core.consent_ports import ConsentRepository  # noqa: E402  (it imports this module)


class Store(
    Repository,
    DraftRepository,
    OutboxRepository,
    InboxRepository,
    NoteRepository,
    ConsentRepository,
    Protocol,
):
    """Everything the services read and write, in one transaction."""


class UnitOfWork(Protocol):
    repo: Store

    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


class WebhookPoster(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST and return the HTTP status; raise OSError when there is no answer."""
        ...
