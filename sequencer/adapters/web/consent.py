"""The consent page (admins only): each referrer's consent to be named, as the ledger has it,
and grant/revoke for the whole referrer or one prospect.

A change calls ``services.consent.change_consent``, the function `refseq consent` calls, with
the signed-in admin as the actor and ``via`` web: a revocation holds every live enrollment
naming the referrer, in every campaign, in the same transaction. A rep gets a 404 here, as for
anything that is not theirs. Referrer names and ids come from CSV files: the template escapes
them.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from sequencer.adapters.web.auth import get_session, require_csrf
from sequencer.adapters.web.deps import ctx, current_rep, redirect, render
from sequencer.core.naming import Via
from sequencer.errors import NotFound, SequencerError
from sequencer.services import consent as svc
from sequencer.services.accounts import Rep
from sequencer.services.consent_board import REFERRER_LIMIT, consent_board

router = APIRouter()
NOTE_CHARS = 1000  # a note longer than this is refused (it is kept in the ledger)
SEARCH_CHARS = 200


def current_admin(rep: Rep = Depends(current_rep)) -> Rep:  # noqa: B008
    """The signed-in admin; a rep gets the same 404 as for a page that does not exist."""
    if not rep.is_admin:
        raise NotFound("the consent page is for admins")
    return rep


Admin = Annotated[Rep, Depends(current_admin)]


def _back(search: str) -> str:
    query = f"?{urlencode({'q': search})}" if search else ""
    return f"/consent{query}"


@router.get("/consent", response_class=HTMLResponse)
def consent_page(request: Request, admin: Admin, q: str = "") -> Response:
    search = q.strip()[:SEARCH_CHARS]
    board = consent_board(ctx(request).uow_factory, search)
    return render(
        request,
        "consent.html",
        rep=admin,
        board=board,
        search=search,
        limit=REFERRER_LIMIT,
        note_chars=NOTE_CHARS,
    )


def _change(
    request: Request,
    admin: Rep,
    granted: bool,
    referrer: str,
    prospect: str,
    note: str,
    search: str,
) -> Response:
    session = get_session(request)
    back = _back(search.strip()[:SEARCH_CHARS])
    verb = "granted" if granted else "revoked"
    if len(note) > NOTE_CHARS:
        session.flash(f"Not {verb}: the note is longer than {NOTE_CHARS} characters.", "error")
        return redirect(back)
    c = ctx(request)
    try:
        result = svc.change_consent(
            c.uow_factory,
            referrer,
            granted,
            admin.email,
            c.clock(),
            prospect=prospect.strip() or None,
            via=Via.WEB,
            note=note.strip(),
        )
    except SequencerError as exc:
        message = (
            str(exc)
            .replace("--prospect", "the prospect")
            .replace("`refseq consent list`", "the list below")
        )
        session.flash(f"Not {verb}: {message}", "error")
        return redirect(back)
    change = result.change
    whom = f" to {change.prospect_key}" if change.prospect_key else ""
    text = f"Referrer {change.referrer_id}: consent to be named{whom} {verb}."
    if result.held:
        text += (
            f" {result.held} enrollment(s) naming them are held; their unsent drafts wait "
            "(refseq held)."
        )
    if granted and result.waiting:
        text += (
            f" {result.waiting} held enrollment(s) name them: release each with "
            "`refseq release ID`."
        )
    session.flash(text)
    return redirect(back)


@router.post("/consent/grant", dependencies=[Depends(require_csrf)])
def grant(
    request: Request,
    admin: Admin,
    referrer: Annotated[str, Form(max_length=200)],
    prospect: Annotated[str, Form(max_length=320)] = "",
    note: Annotated[str, Form()] = "",
    q: Annotated[str, Form()] = "",
) -> Response:
    return _change(request, admin, True, referrer, prospect, note, q)


@router.post("/consent/revoke", dependencies=[Depends(require_csrf)])
def revoke(
    request: Request,
    admin: Admin,
    referrer: Annotated[str, Form(max_length=200)],
    prospect: Annotated[str, Form(max_length=320)] = "",
    note: Annotated[str, Form()] = "",
    q: Annotated[str, Form()] = "",
) -> Response:
    return _change(request, admin, False, referrer, prospect, note, q)
