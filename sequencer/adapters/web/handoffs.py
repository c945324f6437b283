"""The handoffs page: engaged prospects routed back to their rep.

The data comes from ``sequencer.services.routing``, imported lazily:

* ``list_handoffs(uow_factory, rep_email) -> Sequence[item]`` (``rep_email`` None = all), and
* optionally ``mark_handled(uow_factory, handoff_id, actor, now, rep_email=...)``, raising
  ``NotFound`` for another rep's handoff.

An item may be a dataclass or a mapping; the page reads ``id``, ``campaign``,
``prospect_email``, ``prospect_name``, ``referrer_name``, ``reply_text``, ``received_at``,
``handled_at`` and ``thread`` (items with ``sender``/``subject``/``at``/``text``), whichever
exist. Until the routing service exists the page says "No handoffs yet".
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
    reply_text: str
    received_at: Any
    handled_at: Any
    thread: list[dict[str, Any]]

    @classmethod
    def of(cls, item: Any) -> HandoffRow:
        thread = [
            {k: _get(m, k, "") for k in ("sender", "subject", "at", "text")}
            for m in (_get(item, "thread") or [])
        ]
        return cls(
            id=_get(item, "id"),
            campaign=str(_get(item, "campaign", "") or ""),
            prospect_email=str(_get(item, "prospect_email", "") or ""),
            prospect_name=str(_get(item, "prospect_name", "") or ""),
            referrer_name=str(_get(item, "referrer_name", "") or ""),
            reply_text=str(_get(item, "reply_text", "") or ""),
            received_at=_get(item, "received_at"),
            handled_at=_get(item, "handled_at"),
            thread=thread,
        )


def list_handoffs(uow_factory: UowFactory, rep_email: str | None) -> list[HandoffRow]:
    routing = _routing()
    fn = getattr(routing, "list_handoffs", None) if routing else None
    if fn is None:
        return []
    return [HandoffRow.of(item) for item in fn(uow_factory, rep_email)]


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
