"""The rep's queue and draft pages: thin handlers over ``services.approval``.

A rep acts only on their own campaigns' drafts (``rep_email`` scoping in the service: another
rep's draft is a 404, exactly like a missing one); an admin acts on all. Every action is a
POST with the CSRF token and the draft revision the rep was shown, answered by a 303 redirect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from sequencer.adapters.web.auth import get_session, require_csrf
from sequencer.adapters.web.deps import ctx, current_rep, redirect, render, safe_next
from sequencer.core.ports import DraftView
from sequencer.core.states import DraftKind, DraftState
from sequencer.errors import ConflictError, InvalidTransition
from sequencer.services import approval
from sequencer.services.accounts import Rep

router = APIRouter()
Signed = Annotated[Rep, Depends(current_rep)]
CSRF = [Depends(require_csrf)]
SHOWN_HEADERS = ("From", "To", "Reply-To", "Subject", "In-Reply-To", "List-Unsubscribe")
_CLI_HINT = re.compile(r"\s*\(see `refseq [^`]*`\)|; look at it again with `refseq [^`]*`")


def web_message(text: str) -> str:
    """A service message without the hints meant for the command line."""
    return _CLI_HINT.sub("", text)


def local_time(moment: datetime, zone: str | None) -> str | None:
    if not zone:
        return None
    try:
        return moment.astimezone(ZoneInfo(zone)).strftime("%a %H:%M") + f" {zone}"
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True)
class Row:
    """One draft as the queue shows it."""

    id: int
    revision: int
    campaign: str
    prospect: str
    email: str
    company: str
    temperature: str
    referrer: str
    named: bool
    step: int | str  # "note" for a thank-you to the referrer
    template: str
    subject: str
    due_at: datetime
    due_local: str | None
    state: str

    @classmethod
    def of(cls, v: DraftView) -> Row:
        d, e = v.draft, v.enrollment
        p = e.prospect
        name = " ".join(x for x in (p.get("first_name", ""), p.get("last_name", "")) if x)
        return cls(
            id=d.id,
            revision=d.revision,
            campaign=v.campaign,
            prospect=name or d.to_email,
            email=d.to_email,
            company=p.get("company", ""),
            temperature=e.temperature,
            referrer=str(e.referrer.get("name", "")),
            named=e.may_name_referrer,
            step=d.step_number if d.kind is DraftKind.STEP else "note",
            template=d.template,
            subject=d.subject,
            due_at=d.due_at,
            due_local=local_time(d.due_at, p.get("timezone")),
            state=d.state.value,
        )


def _pending(request: Request, rep: Rep) -> list[DraftView]:
    return approval.queue(ctx(request).uow_factory, rep_email=rep.scope)


@router.get("/", response_class=HTMLResponse)
def queue_page(
    request: Request, rep: Signed, campaign: str = "", temperature: str = ""
) -> Response:
    views = _pending(request, rep)
    campaigns = sorted({v.campaign for v in views})
    rows = [
        Row.of(v)
        for v in views
        if (not campaign or v.campaign == campaign)
        and (not temperature or v.enrollment.temperature == temperature)
    ]
    groups: dict[str, list[Row]] = {}
    for row in rows:  # newest first within each campaign; campaigns by their newest draft
        groups.setdefault(row.campaign, []).append(row)
    return render(
        request,
        "queue.html",
        rep=rep,
        groups=groups,
        total=len(views),
        shown=len(rows),
        campaigns=campaigns,
        campaign=campaign,
        temperature=temperature,
        here=str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
    )


def _parts(message: EmailMessage) -> tuple[str, str | None]:
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    text = plain.get_content() if isinstance(plain, EmailMessage) else ""
    return text, (html.get_content() if isinstance(html, EmailMessage) else None)


def _draft_page(
    request: Request,
    rep: Rep,
    draft_id: int,
    status_code: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    c = ctx(request)
    view, events = approval.show(c.uow_factory, draft_id, rep.scope)
    message = approval.rendered_message(c.uow_factory, view)
    text, html = _parts(message)
    order = [v.draft.id for v in _pending(request, rep)]
    position = order.index(draft_id) if draft_id in order else None
    previous = order[position - 1] if position else None
    following = order[position + 1 :] if position is not None else order
    e = view.enrollment
    return render(
        request,
        "draft.html",
        status_code=status_code,
        rep=rep,
        row=Row.of(view),
        draft=view.draft,
        pending=view.draft.state is DraftState.PENDING_APPROVAL,
        email_headers=[(h, str(message[h])) for h in SHOWN_HEADERS if message[h] is not None],
        text=text,
        html=html,
        referral={
            "temperature": e.temperature,
            "reason": e.reason,
            "referrer": e.referrer,
            "context": e.referral.get("context", ""),
            "named": e.may_name_referrer,
            "others": e.other_referrals,
        },
        events=events,
        previous=previous,
        next=following[0] if following else None,
        error=error,
        form=form or {"subject": view.draft.subject, "body": view.draft.text},
    )


@router.get("/drafts/{draft_id:int}", response_class=HTMLResponse)
def draft_page(request: Request, rep: Signed, draft_id: int) -> Response:
    return _draft_page(request, rep, draft_id)


def _after(next_id: str, draft_id: int) -> str:
    return f"/drafts/{int(next_id)}" if next_id.isdigit() and int(next_id) != draft_id else "/"


@router.post("/drafts/{draft_id:int}/approve", dependencies=CSRF)
def approve(
    request: Request,
    rep: Signed,
    draft_id: int,
    revision: Annotated[int, Form()],
    next: Annotated[str, Form()] = "",
) -> Response:
    c = ctx(request)
    session = get_session(request)
    view, _ = approval.show(c.uow_factory, draft_id, rep.scope)  # another rep's: 404
    here = f"/drafts/{draft_id}"
    if view.draft.state is DraftState.PENDING_APPROVAL and view.draft.revision != revision:
        session.flash(
            f"Not approved: this draft changed since you opened it (you saw revision "
            f"{revision}, it is now revision {view.draft.revision}). Read it again, then approve.",
            "error",
        )
        return redirect(here)
    (result,) = approval.approve(
        c.uow_factory, [draft_id], rep.email, c.clock(), rep.scope, {draft_id: revision}
    )
    if not result.ok:
        session.flash(f"Not approved: {web_message(result.message)}", "error")
        return redirect(here)
    if result.message == "already approved":
        session.flash(f"Draft {draft_id} was already approved.", "info")
        return redirect(here)
    session.flash(f"Approved the email to {view.draft.to_email}.")
    return redirect(_after(next, draft_id))


@router.post("/drafts/{draft_id:int}/reject", dependencies=CSRF)
def reject(
    request: Request,
    rep: Signed,
    draft_id: int,
    revision: Annotated[int, Form()],
    reason: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    c = ctx(request)
    session = get_session(request)
    view, _ = approval.show(c.uow_factory, draft_id, rep.scope)
    here = f"/drafts/{draft_id}"
    if view.draft.state is DraftState.REJECTED:
        session.flash(f"Draft {draft_id} was already rejected.", "info")
        return redirect(here)
    if not reason.strip():
        session.flash("Not rejected: give a reason (it is kept in the audit trail).", "error")
        return redirect(here)
    try:
        approval.reject(c.uow_factory, draft_id, reason, rep.email, c.clock(), rep.scope, revision)
    except (ConflictError, InvalidTransition) as exc:
        session.flash(f"Not rejected: {web_message(str(exc))}", "error")
        return redirect(here)
    session.flash(f"Rejected the email to {view.draft.to_email}.")
    return redirect(_after(next, draft_id))


@router.post("/drafts/{draft_id:int}/edit", dependencies=CSRF)
def edit(
    request: Request,
    rep: Signed,
    draft_id: int,
    revision: Annotated[int, Form()],
    subject: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
) -> Response:
    c = ctx(request)
    view, _ = approval.show(c.uow_factory, draft_id, rep.scope)
    body = body.replace("\r\n", "\n")  # browsers send textarea lines as CRLF
    text_changed = body != view.draft.text
    try:
        record = approval.edit(
            c.uow_factory,
            draft_id,
            rep.email,
            c.clock(),
            subject=subject,
            text=body,
            # The HTML part was rendered from the template: once the rep rewrites the text,
            # it no longer says the same thing, so the edited draft goes out as text only.
            html="" if text_changed and view.draft.html else None,
            rep_email=rep.scope,
            expected_revision=revision,
        )
    except approval.EditError as exc:
        form = {"subject": subject, "body": body}
        return _draft_page(request, rep, draft_id, 422, f"Not saved: {exc}.", form)
    except (ConflictError, InvalidTransition) as exc:
        form = {"subject": subject, "body": body}
        return _draft_page(request, rep, draft_id, 409, f"Not saved: {web_message(str(exc))}", form)
    note = " It will go out as plain text." if text_changed and view.draft.html else ""
    get_session(request).flash(f"Saved (revision {record.revision}).{note}")
    return redirect(f"/drafts/{draft_id}")


def _parse_selection(values: list[str]) -> tuple[list[int], dict[int, int]]:
    ids, expected = [], {}
    for value in values:
        draft, _, rev = value.partition("@")
        if draft.isdigit() and (not rev or rev.isdigit()):
            ids.append(int(draft))
            if rev:
                expected[int(draft)] = int(rev)
    return ids, expected


@router.post("/drafts/approve", dependencies=CSRF)
def approve_selected(
    request: Request,
    rep: Signed,
    ids: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
    back: Annotated[str, Form()] = "/",
) -> Response:
    c = ctx(request)
    session = get_session(request)
    chosen, expected = _parse_selection(ids)
    if not chosen:
        session.flash("Nothing selected: tick the drafts to approve first.", "info")
        return redirect(safe_next(back))
    results = approval.approve(c.uow_factory, chosen, rep.email, c.clock(), rep.scope, expected)
    done = sum(1 for r in results if r.ok)
    if done:
        session.flash(f"Approved {done} draft{'s' if done != 1 else ''}.")
    for r in [r for r in results if not r.ok][:3]:
        session.flash(f"Draft {r.draft_id} not approved: {web_message(r.message)}", "error")
    return redirect(safe_next(back))
