"""The rep's approval queue: list, show, edit, approve, reject. Shared by the CLI and the web.

Every change is a compare-and-set on the draft's ``revision`` and leaves an audit event (who,
when, before/after). Passing the revision a rep was shown makes "it changed since I looked" an
error instead of a silent approval of text nobody read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sequencer.core.compose import HeaderInjectionError
from sequencer.core.drafts import message_bytes, recipient_of, to_message, with_date
from sequencer.core.ports import DraftEvent, DraftRecord, DraftView, Store, UnitOfWork
from sequencer.core.specjson import spec_from_json
from sequencer.core.states import DraftKind, DraftState, draft_transition
from sequencer.errors import ConflictError, InvalidTransition, NotFound, SequencerError

UowFactory = Callable[[], UnitOfWork]
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")


class EditError(SequencerError):
    """An edit would leave a placeholder, an empty part or a header injection."""


@dataclass(frozen=True)
class Decision:
    draft_id: int
    ok: bool
    message: str


def queue(
    uow_factory: UowFactory,
    rep_email: str | None = None,
    campaign: str | None = None,
    states: Iterable[DraftState] = (DraftState.PENDING_APPROVAL,),
) -> list[DraftView]:
    with uow_factory() as uow:
        return uow.repo.list_drafts(list(states), rep_email=rep_email, campaign=campaign)


def _load(repo: Store, draft_id: int, rep_email: str | None) -> DraftView:
    view = repo.get_draft(draft_id)
    # Another rep's draft looks exactly like a missing one: ids are not an authorisation.
    if view is None or (
        rep_email is not None and view.rep_email.casefold() != rep_email.casefold()
    ):
        raise NotFound(f"no draft {draft_id} (see `refseq queue`)")
    return view


def show(
    uow_factory: UowFactory, draft_id: int, rep_email: str | None = None
) -> tuple[DraftView, list[DraftEvent]]:
    with uow_factory() as uow:
        view = _load(uow.repo, draft_id, rep_email)
        return view, uow.repo.draft_events(draft_id)


def rendered_message(uow_factory: UowFactory, view: DraftView) -> Any:
    """The exact email (headers and parts) the prospect will receive: the bytes the draft
    stores (Date: is the send time; shown here as the due time)."""
    if view.draft.message is not None:
        import email
        import email.policy

        raw = with_date(view.draft.message, view.draft.due_at)
        return email.message_from_bytes(raw, policy=email.policy.SMTP)
    with uow_factory() as uow:
        campaign = uow.repo.campaign_by_id(view.draft.campaign_id)
        assert campaign is not None
    recipient = recipient_of(view.draft.kind, view.enrollment)
    return to_message(view.draft, spec_from_json(campaign.spec), recipient, view.draft.due_at)


def _snapshot(d: DraftRecord) -> dict[str, Any]:
    return {
        "state": d.state.value,
        "subject": d.subject,
        "text": d.text,
        "html": d.html,
        "revision": d.revision,
    }


def _apply(
    repo: Store,
    view: DraftView,
    event: str,
    actor: str,
    now: datetime,
    expected_revision: int | None,
    **changes: Any,
) -> DraftRecord:
    draft = view.draft
    if expected_revision is not None and expected_revision != draft.revision:
        raise ConflictError(
            f"draft {draft.id} changed since you saw it (revision {expected_revision}, now "
            f"{draft.revision}); look at it again with `refseq show {draft.id}`"
        )
    new_state = draft_transition(draft.state, event)
    updated = repo.update_draft(draft.id, draft.revision, now, state=new_state, **changes)
    if updated is None:
        raise ConflictError(f"draft {draft.id} changed while you were acting on it; try again")
    repo.add_draft_event(
        DraftEvent(draft.id, actor, event, _snapshot(draft), _snapshot(updated), now)
    )
    return updated


def approve(
    uow_factory: UowFactory,
    draft_ids: Iterable[int],
    actor: str,
    now: datetime,
    rep_email: str | None = None,
    expected: dict[int, int] | None = None,
) -> list[Decision]:
    """Approve each draft in its own transaction; approving an approved draft is a no-op."""
    results = []
    for draft_id in draft_ids:
        try:
            with uow_factory() as uow:
                view = _load(uow.repo, draft_id, rep_email)
                if view.draft.state is DraftState.APPROVED:
                    results.append(Decision(draft_id, True, "already approved"))
                    continue
                _apply(
                    uow.repo,
                    view,
                    "approve",
                    actor,
                    now,
                    (expected or {}).get(draft_id),
                    decided_by=actor,
                    decided_at=now,
                )
                uow.commit()
                results.append(Decision(draft_id, True, "approved"))
        except (NotFound, ConflictError, InvalidTransition) as exc:
            results.append(Decision(draft_id, False, str(exc)))
    return results


def approve_campaign(
    uow_factory: UowFactory, campaign: str, actor: str, now: datetime, rep_email: str | None = None
) -> list[Decision]:
    ids = [v.draft.id for v in queue(uow_factory, rep_email=rep_email, campaign=campaign)]
    return approve(uow_factory, ids, actor, now, rep_email)


def reject(
    uow_factory: UowFactory,
    draft_id: int,
    reason: str,
    actor: str,
    now: datetime,
    rep_email: str | None = None,
    expected_revision: int | None = None,
) -> DraftRecord:
    if not reason.strip():
        raise SequencerError("give a reason for the rejection (--reason)")
    with uow_factory() as uow:
        view = _load(uow.repo, draft_id, rep_email)
        updated = _apply(
            uow.repo,
            view,
            "reject",
            actor,
            now,
            expected_revision,
            decided_by=actor,
            decided_at=now,
            reason=reason.strip(),
        )
        uow.commit()
        return updated


def check_edit(subject: str, text: str, html: str | None) -> None:
    """An edited draft must be finished text: no template syntax left, nothing empty."""
    problems = []
    if not subject.strip():
        problems.append("the subject is empty")
    if "\n" in subject or "\r" in subject:
        problems.append("the subject contains a line break")
    if not text.strip():
        problems.append("the body is empty")
    for part, value in (("subject", subject), ("body", text), ("html", html or "")):
        m = PLACEHOLDER.search(value)
        if m:
            line = value.count("\n", 0, m.start()) + 1
            problems.append(f"{part} line {line}: a template placeholder {m.group()!r} is left in")
    if problems:
        raise EditError("; ".join(problems))


def edit(
    uow_factory: UowFactory,
    draft_id: int,
    actor: str,
    now: datetime,
    subject: str | None = None,
    text: str | None = None,
    html: str | None = None,
    rep_email: str | None = None,
    expected_revision: int | None = None,
) -> DraftRecord:
    with uow_factory() as uow:
        view = _load(uow.repo, draft_id, rep_email)
        d = view.draft
        new_subject = d.subject if subject is None else subject.strip()
        new_text = d.text if text is None else text
        if html is not None:
            new_html: str | None = html or None
        elif text is not None and text != d.text:
            new_html = None  # the template's HTML says what the old text said: drop it
        else:
            new_html = d.html
        check_edit(new_subject, new_text, new_html)
        campaign = uow.repo.campaign_by_id(d.campaign_id)
        assert campaign is not None
        candidate = _Edited(d, new_subject, new_text, new_html)
        recipient = recipient_of(d.kind, view.enrollment)
        try:
            built = to_message(candidate, spec_from_json(campaign.spec), recipient, now)
        except HeaderInjectionError as exc:
            raise EditError(str(exc)) from None
        updated = _apply(
            uow.repo,
            view,
            "edit",
            actor,
            now,
            expected_revision,
            subject=new_subject,
            text=new_text,
            html=new_html,
            message=message_bytes(built),  # the edited message is the one that will be sent
        )
        uow.commit()
        return updated


@dataclass(frozen=True)
class _Edited:
    base: DraftRecord
    subject: str
    text: str
    html: str | None

    @property
    def template(self) -> str:
        return self.base.template

    @property
    def to_email(self) -> str:
        return self.base.to_email

    @property
    def message_id(self) -> str:
        return self.base.message_id

    @property
    def headers(self) -> dict[str, str]:
        return self.base.headers

    @property
    def kind(self) -> DraftKind:
        return self.base.kind
