"""The inbox page: inbound mail nobody acted on, for a person to look at and mark handled.

A rep sees the messages of their campaigns' mailboxes (or matched to their prospects), an
admin every one (``services.inbound_review``). Everything shown is hostile inbound text:
the templates escape it, and only header-safe, bounded values are stored to begin with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from sequencer.adapters.web.auth import get_session, require_csrf
from sequencer.adapters.web.deps import ctx, current_rep, redirect, render
from sequencer.core.ports import InboundRecord
from sequencer.services import inbound_review
from sequencer.services.accounts import Rep

router = APIRouter()
TEXT_CHARS = 2000


@dataclass(frozen=True)
class InboundRow:
    id: int
    received_at: datetime
    sender: str
    subject: str
    status: str
    klass: str
    why: str
    text: str

    @classmethod
    def of(cls, r: InboundRecord) -> InboundRow:
        evidence = "; ".join(str(e) for e in r.evidence[:3])
        return cls(
            id=r.id,
            received_at=r.received_at,
            sender=r.from_addr or "(no readable sender)",
            subject=r.subject or "(no subject)",
            status=r.status,
            klass=(r.klass or "").replace("_", " "),
            why=r.error or evidence,
            text=str(r.extracted.get("reply_text") or "")[:TEXT_CHARS],
        )


@router.get("/inbox", response_class=HTMLResponse)
def inbox_page(request: Request, rep: Rep = Depends(current_rep)) -> Response:  # noqa: B008
    rows = inbound_review.needs_person(ctx(request).uow_factory, rep.scope)
    return render(request, "inbox.html", rep=rep, messages=[InboundRow.of(r) for r in rows])


@router.post("/inbox/{inbound_id:int}/handled", dependencies=[Depends(require_csrf)])
def mark_handled(
    request: Request,
    inbound_id: int,
    rep: Rep = Depends(current_rep),  # noqa: B008
) -> Response:
    c = ctx(request)
    inbound_review.mark_handled(c.uow_factory, inbound_id, rep.email, c.clock(), rep.scope)
    get_session(request).flash(f"Message {inbound_id} marked as handled.")
    return redirect("/inbox")
