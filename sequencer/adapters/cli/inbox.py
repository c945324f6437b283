"""`refseq poll|inbox|classify|handoffs|handoff`: replies, and engaged prospects for the rep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from sequencer.adapters.cli import output
from sequencer.adapters.cli.common import (
    DEV,
    NOW_HELP,
    handle_errors,
    parse_now,
    settings,
    uow,
)

JSON = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")


@handle_errors
def poll_cmd(
    now: str | None = typer.Option(None, "--now", help=NOW_HELP),
    as_json: bool = JSON,
    dev: bool = DEV,
) -> None:
    """Fetch new mail from every campaign mailbox (IMAP) and act on it."""
    from sequencer import bootstrap
    from sequencer.services.runner import run_pass

    deps = bootstrap.runner_deps(settings(), dev=dev)
    try:
        report = run_pass(deps, parse_now(now), ["poll"])
    finally:
        deps.close()
    if as_json:
        i = report.inbox
        output.emit_json(
            {
                "fetched": i.fetched if i else 0,
                "stored": i.stored if i else 0,
                "handled": i.handled if i else {},
                "unmatched": i.unmatched if i else 0,
                "unhandled": i.unhandled if i else 0,
                "handoffs": i.handoffs if i else 0,
                "errors": (i.errors if i else []) + [e for r in report.routing for e in r.errors],
            }
        )
    else:
        output.out.print(report.summary() or "nothing new", markup=False)


@handle_errors
def inbox(
    unhandled: bool = typer.Option(
        False,
        "--unhandled",
        help="Only messages waiting for a person: neither acted on nor matched, and not yet "
        "marked handled (`refseq inbound done ID`).",
    ),
    unmatched: bool = typer.Option(False, "--unmatched", help="Only messages matched to no one."),
    as_json: bool = JSON,
) -> None:
    """Inbound messages: class, the evidence that decided it, and what was done."""
    from sequencer.services.inbound_review import needs_person

    if unhandled:
        rows = needs_person(uow())
    else:
        with uow()() as u:
            rows = u.repo.list_inbound(["unmatched"] if unmatched else None)
    data: list[dict[str, Any]] = [
        {
            "id": r.id,
            "received_at": r.received_at.isoformat(),
            "from": r.from_addr,
            "subject": r.subject,
            "status": r.status,
            "class": r.klass,
            "intent": r.intent,
            "enrollment": r.enrollment_id,
            "matched_by": r.matched_by,
            "evidence": r.evidence,
            "error": r.error,
            "reviewed_at": r.reviewed_at.isoformat() if r.reviewed_at else None,
            "reviewed_by": r.reviewed_by,
        }
        for r in rows
    ]
    if as_json:
        output.emit_json(data)
        return
    output.table(
        f"Inbound ({len(data)})",
        ("id", "received (UTC)", "from", "subject", "status", "class", "intent", "why"),
        (
            (
                d["id"],
                d["received_at"][:16].replace("T", " "),
                d["from"],
                (d["subject"] or "")[:50],
                d["status"],
                d["class"],
                d["intent"],
                d["error"] or "; ".join(d["evidence"][:2]),
            )
            for d in data
        ),
    )


@handle_errors
def classify_cmd(
    files: list[Path] = typer.Argument(..., help=".eml files"), as_json: bool = JSON
) -> None:
    """Classify messages offline with the poller's own code, showing the evidence."""
    from sequencer.core.inbound import classify, parse_inbound

    results: list[dict[str, Any]] = []
    for path in files:
        raw = path.read_bytes()
        parsed = parse_inbound(raw)
        v = classify(parsed, raw)
        results.append(
            {
                "file": str(path),
                "class": v.klass.value,
                "intent": v.intent.value,
                "evidence": list(v.evidence),
                "bounced": [list(b) for b in v.bounced],
                "return_date": v.return_date.isoformat() if v.return_date else None,
                "reply_text": v.reply_text,
                "redirect_to": v.redirect_to,
                "confidence": v.confidence,
                "from": parsed.from_addr,
                "subject": parsed.subject,
            }
        )
    if as_json:
        output.emit_json(results)
        return
    output.table(
        f"Classified ({len(results)})",
        ("file", "class", "intent", "evidence", "extracted"),
        (
            (
                r["file"],
                r["class"],
                r["intent"],
                "; ".join(r["evidence"]),
                "; ".join(
                    x
                    for x in (
                        ", ".join(f"{a} {s}" for a, s in r["bounced"]),
                        f"back {r['return_date']}" if r["return_date"] else "",
                        f"redirect to {r['redirect_to']}" if r["redirect_to"] else "",
                        (r["reply_text"][:60] + "…")
                        if r["class"] == "human_reply" and r["reply_text"]
                        else "",
                    )
                    if x
                ),
            )
            for r in results
        ),
    )


@handle_errors
def handoffs(
    rep: str | None = typer.Option(None, "--rep", help="Only this rep's handoffs (email)."),
    all_: bool = typer.Option(False, "--all", help="Handled ones too."),
    as_json: bool = JSON,
) -> None:
    """Engaged prospects routed back to their rep, with what they wrote."""
    from sequencer.services.routing import list_handoffs

    states = ("open", "handled") if all_ else ("open",)
    rows = list_handoffs(uow(), rep, states)
    with uow()() as u:
        enrollments = {h.id: u.repo.get_enrollment(h.enrollment_id) for h in rows}
    data: list[dict[str, Any]] = []
    for h in rows:
        e = enrollments[h.id]
        data.append(
            {
                "id": h.id,
                "state": h.state,
                "rep": h.rep_email,
                "intent": h.intent,
                "prospect": e.prospect_email if e else None,
                "referrer": e.referrer.get("name") if e else None,
                "referral": e.referral.get("context") if e else None,
                "reply_text": h.reply_text,
                "redirect_to": h.redirect_to,
                "created_at": h.created_at.isoformat(),
                "notified": h.notified_at is not None,
            }
        )
    if as_json:
        output.emit_json(data)
        return
    output.table(
        f"Handoffs ({len(data)})",
        ("id", "prospect", "intent", "referrer", "their words", "rep", "notified"),
        (
            (
                d["id"],
                d["prospect"],
                d["intent"],
                d["referrer"],
                (d["reply_text"] or "")[:70],
                d["rep"],
                "yes" if d["notified"] else "not yet",
            )
            for d in data
        ),
    )


@handle_errors
def handoff_done(handoff_id: int) -> None:
    """Mark a handoff handled."""
    import os

    from sequencer.services.routing import mark_handled

    mark_handled(uow(), handoff_id, os.environ.get("REFSEQ_ACTOR") or "cli", parse_now(None))
    output.out.print(f"handoff {handoff_id}: handled")


@handle_errors
def inbound_done(
    ids: list[int] = typer.Argument(..., help="Inbound message ids (`refseq inbox --unhandled`)."),
) -> None:
    """Mark inbound messages handled by a person: they leave `refseq inbox --unhandled` and the
    web inbox. A held sequence stays held until `refseq release`."""
    import os

    from sequencer.services.inbound_review import mark_handled

    actor = os.environ.get("REFSEQ_ACTOR") or "cli"
    for inbound_id in ids:
        done = mark_handled(uow(), inbound_id, actor, parse_now(None))
        output.out.print(f"inbound {inbound_id}: {'handled' if done else 'already handled'}")


def register(app: typer.Typer) -> None:
    app.command("poll")(poll_cmd)
    app.command("inbox")(inbox)
    app.command("classify")(classify_cmd)
    app.command("handoffs")(handoffs)
    handoff_app = typer.Typer(help="Act on one handoff.", no_args_is_help=True)
    handoff_app.command("done")(handoff_done)
    app.add_typer(handoff_app, name="handoff")
    inbound_app = typer.Typer(help="Act on inbound messages.", no_args_is_help=True)
    inbound_app.command("done")(inbound_done)
    app.add_typer(inbound_app, name="inbound")
