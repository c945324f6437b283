"""The handoffs page: engaged prospects routed back to their rep.

The data comes from ``sequencer.services.routing``, imported lazily:

* ``list_handoffs(uow_factory, rep_email) -> Sequence[item]`` (``rep_email`` None = all), and
* optionally ``mark_handled(uow_factory, handoff_id, actor, now, rep_email=...)``, raising
  ``NotFound`` for another rep's handoff.

An item may be a record or a mapping. The page shows ``reply_text``, ``intent``,
``redirect_to``, ``created_at`` and ``handled_at``; the campaign, prospect, referrer and the
thread (the emails we sent) are looked up from ``campaign_id`` / ``enrollment_id`` unless the
item carries them (``campaign``, ``prospect_email``, ``prospect_name``, ``referrer_name``,
``thread``). Until the routing service exists the page says "No handoffs yet".
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from sequencer.adapters.web.auth import get_session, require_csrf
from sequencer.adapters.web.deps import UowFactory, ctx, current_rep, redirect, render
from sequencer.core.states import DraftState
from sequencer.errors import NotFound
from sequencer.services.accounts import Rep

ROUTING = "sequencer.services.routing"
router = APIRouter()


def _routing() -> ModuleType | None:
    try:
        return importlib.import_module(ROUTING)
    except ModuleNotFoundError as exc:
        if exc.name != ROUTING:
            raise
        return None


def _get(item: Any, name: str, default: Any = None) -> Any:
    if isinstance(item, Mapping):
        return item.get(name, default)
    return getattr(item, name, default)


@dataclass(frozen=True)
class HandoffRow:
    id: Any
    campaign: str
    prospect_email: str
    prospect_name: str
    referrer_name: str
    intent: str
    reply_text: str
    redirect_to: str
    received_at: Any
    handled_at: Any
    thread: list[dict[str, Any]]

    @classmethod
    def of(cls, item: Any, found: Mapping[str, Any]) -> HandoffRow:
        def value(name: str) -> str:
            return str(_get(item, name) or found.get(name) or "")

        thread = _get(item, "thread") or found.get("thread") or []
        return cls(
            id=_get(item, "id"),
            campaign=value("campaign"),
            prospect_email=value("prospect_email"),
            prospect_name=value("prospect_name"),
            referrer_name=value("referrer_name"),
            intent=value("intent"),
            reply_text=value("reply_text"),
            redirect_to=value("redirect_to"),
            received_at=_get(item, "received_at") or _get(item, "created_at"),
            handled_at=_get(item, "handled_at"),
            thread=[
                {k: _get(m, k, "") for k in ("sender", "subject", "at", "text")} for m in thread
            ],
        )


def _context(repo: Any, item: Any, cache: dict[int, Any]) -> dict[str, Any]:
    """Campaign name, prospect, referrer and our sent emails for one handoff (read only)."""
    campaign_id, enrollment_id = _get(item, "campaign_id"), _get(item, "enrollment_id")
    if not isinstance(campaign_id, int) or not isinstance(enrollment_id, int):
        return {}
    if campaign_id not in cache:
        cache[campaign_id] = repo.campaign_by_id(campaign_id)
    campaign = cache[campaign_id]
    getter = getattr(repo, "get_enrollment", None)
    if getter is not None:
        enrollment = getter(enrollment_id)
    else:
        found = [e for e in repo.list_enrollments(campaign_id) if e.id == enrollment_id]
        enrollment = found[0] if found else None
    if enrollment is None:
        return {"campaign": campaign.name if campaign else ""}
    p = enrollment.prospect
    rep = (campaign.spec.get("rep") or {}).get("email", "") if campaign else ""
    sent = [d for d in repo.drafts_of(enrollment_id) if d.state is DraftState.SENT]
    return {
        "campaign": campaign.name if campaign else "",
        "prospect_email": enrollment.prospect_email,
        "prospect_name": " ".join(x for x in (p.get("first_name"), p.get("last_name")) if x),
        "referrer_name": enrollment.referrer.get("name", ""),
        "thread": [
            {"sender": rep, "subject": d.subject, "at": d.sent_at or d.due_at, "text": d.text}
            for d in sent
        ],
    }


def list_handoffs(uow_factory: UowFactory, rep_email: str | None) -> list[HandoffRow]:
    routing = _routing()
    fn = getattr(routing, "list_handoffs", None) if routing else None
    if fn is None:
        return []
    items = list(fn(uow_factory, rep_email))
    if not items:
        return []
    cache: dict[int, Any] = {}
    with uow_factory() as uow:
        return [HandoffRow.of(item, _context(uow.repo, item, cache)) for item in items]


@router.get("/handoffs", response_class=HTMLResponse)
def handoffs_page(request: Request, rep: Rep = Depends(current_rep)) -> Response:  # noqa: B008
    rows = list_handoffs(ctx(request).uow_factory, rep.scope)
    routing = _routing()
    return render(
        request,
        "handoffs.html",
        rep=rep,
        handoffs=rows,
        can_mark=routing is not None and hasattr(routing, "mark_handled"),
    )


@router.post("/handoffs/{handoff_id:int}/handled", dependencies=[Depends(require_csrf)])
def mark_handled(
    request: Request,
    handoff_id: int,
    rep: Rep = Depends(current_rep),  # noqa: B008
) -> Response:
    c = ctx(request)
    routing = _routing()
    fn = getattr(routing, "mark_handled", None) if routing else None
    if fn is None:
        raise NotFound(f"no handoff {handoff_id}")
    fn(c.uow_factory, handoff_id, rep.email, c.clock(), rep_email=rep.scope)
    get_session(request).flash("Marked as handled.")
    return redirect("/handoffs")
