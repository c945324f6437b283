"""`refseq consent …` (the live ledger of consent to name referrers) and `refseq flags …`
("I don't know this referrer", said by a prospect)."""

from __future__ import annotations

from typing import Any

import typer

from sequencer.adapters.cli import output
from sequencer.adapters.cli.common import NOW_HELP, handle_errors, parse_now, uow
from sequencer.adapters.cli.drafts import _actor
from sequencer.core.naming import FlagRecord, FlagState
from sequencer.services import consent as svc

JSON = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")

REFERRER = typer.Argument(..., help="The referrer's id (the id column of referrers.csv).")
PROSPECT = typer.Option(None, "--prospect", help="Only for this prospect's email.")
NOTE = typer.Option("", "--note", help="Why (kept in the audit).")

app = typer.Typer(
    help="Consent to name referrers: a live ledger every send checks; each change is audited.",
    no_args_is_help=True,
)
flags_app = typer.Typer(
    help="Referrers a prospect said they do not know: not named anywhere until cleared.",
    invoke_without_command=True,
)


def _change(referrer: str, granted: bool, prospect: str | None, note: str, now: str | None) -> None:
    result = svc.change_consent(
        uow(), referrer, granted, _actor(), parse_now(now), prospect=prospect, note=note
    )
    c = result.change
    whom = f" to {c.prospect_key}" if c.prospect_key else ""
    verb = "granted" if granted else "revoked"
    output.out.print(
        f"referrer {c.referrer_id}: consent to be named{whom} {verb} by {c.actor}", markup=False
    )
    if result.held:
        output.out.print(
            f"{result.held} enrollment(s) naming them are held; their unsent drafts wait "
            "(refseq held)"
        )
    if granted and result.waiting:
        output.out.print(
            f"{result.waiting} held enrollment(s) name them: release each with `refseq release ID`"
        )


@app.command("grant")
@handle_errors
def grant(
    referrer: str = REFERRER,
    prospect: str | None = PROSPECT,
    note: str = NOTE,
    now: str | None = typer.Option(None, "--now", help=NOW_HELP),
) -> None:
    """Record that the referrer agreed to be named (to everyone, or to one prospect)."""
    _change(referrer, True, prospect, note, now)


@app.command("revoke")
@handle_errors
def revoke(
    referrer: str = REFERRER,
    prospect: str | None = PROSPECT,
    note: str = NOTE,
    now: str | None = typer.Option(None, "--now", help=NOW_HELP),
) -> None:
    """Withdraw consent: every live enrollment naming them, in every campaign, is held now."""
    _change(referrer, False, prospect, note, now)


@app.command("list")
@handle_errors
def list_(
    referrer: str | None = typer.Option(None, "--referrer", help="Only this referrer's changes."),
    as_json: bool = JSON,
) -> None:
    """The ledger, oldest first: who changed what, when, via what; `current` marks the change
    in force for its referrer (and prospect)."""
    rows = svc.list_consent(uow(), referrer)
    data: list[dict[str, Any]] = [
        {
            "id": r.change.id,
            "referrer": r.change.referrer_id,
            "prospect": r.change.prospect_key,
            "consent": "granted" if r.change.granted else "revoked",
            "current": r.current,
            "by": r.change.actor,
            "via": r.change.via.value,
            "at": r.change.at,
            "note": r.change.note,
        }
        for r in rows
    ]
    if as_json:
        output.emit_json(data)
        return
    cols = ("id", "referrer", "prospect", "consent", "current", "by", "via", "at", "note")
    output.table(
        f"Consent changes ({len(data)})",
        cols,
        (
            [
                *(d[c] for c in cols[:4]),
                "yes" if d["current"] else "",
                d["by"],
                d["via"],
                f"{d['at']:%Y-%m-%d %H:%M}",
                d["note"],
            ]
            for d in data
        ),
    )


def _flag_json(f: FlagRecord) -> dict[str, Any]:
    return {
        "id": f.id,
        "referrer": f.referrer_id,
        "prospect": f.prospect_email,
        "state": f.state.value,
        "reason": f.reason,
        "created_at": f.created_at,
        "resolved_by": f.resolved_by,
        "resolved_at": f.resolved_at,
    }


@flags_app.callback()
@handle_errors
def flags(
    ctx: typer.Context,
    every: bool = typer.Option(False, "--all", help="Cleared flags too."),
    as_json: bool = JSON,
) -> None:
    """List the flags that keep a referrer from being named (open and confirmed)."""
    if ctx.invoked_subcommand is not None:
        return
    data = [_flag_json(f) for f in svc.list_flags(uow(), every)]
    if as_json:
        output.emit_json(data)
        return
    cols = ("id", "referrer", "prospect", "state", "created_at", "resolved_by")
    output.table(
        f"Referrer flags ({len(data)})",
        cols,
        ([d[c] if c != "created_at" else f"{d[c]:%Y-%m-%d %H:%M}" for c in cols] for d in data),
    )


def _resolve(target: str, state: FlagState, now: str | None) -> None:
    done = svc.resolve_flags(uow(), target, state, _actor(), parse_now(now))
    ids = ", ".join(f"#{f.id}" for f in done)
    output.out.print(f"flag(s) {ids}: {state.value}", markup=False)
    if state is FlagState.CLEARED:
        output.out.print(
            "held enrollments naming the referrer stay held: release each with `refseq release ID`"
        )


@flags_app.command("clear")
@handle_errors
def clear(
    target: str = typer.Argument(..., help="A flag id, or a referrer id (all their flags)."),
    now: str | None = typer.Option(None, "--now", help=NOW_HELP),
) -> None:
    """The data was checked and is right: the referrer may be named again."""
    _resolve(target, FlagState.CLEARED, now)


@flags_app.command("confirm")
@handle_errors
def confirm(
    target: str = typer.Argument(..., help="A flag id, or a referrer id (all their flags)."),
    now: str | None = typer.Option(None, "--now", help=NOW_HELP),
) -> None:
    """The prospect was right: keep the referrer unnamed (the flag stays, resolved)."""
    _resolve(target, FlagState.CONFIRMED, now)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="consent")
    main.add_typer(flags_app, name="flags")
