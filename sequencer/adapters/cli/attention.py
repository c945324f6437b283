"""`refseq attention …`: sends whose outcome is unknown, and settling them."""

from __future__ import annotations

import os
from typing import Any

import typer

from sequencer.adapters.cli import output
from sequencer.adapters.cli.common import NOW_HELP, handle_errors, parse_now, uow
from sequencer.core.states import DraftKind

app = typer.Typer(
    help="Sends whose outcome is unknown (the connection was lost after the data): "
    "find them in the Sent folder, or say whether they arrived.",
    no_args_is_help=True,
)
JSON = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")
NOW = typer.Option(None, "--now", help=NOW_HELP)
BY = typer.Option("cli", "--by", help="Who decided (kept in the draft's audit trail).")


@app.command("list")
@handle_errors
def list_(as_json: bool = JSON) -> None:
    """Every needs_attention send: its prospect's sequence waits until it is settled."""
    from sequencer.services.attention import attention_drafts

    data: list[dict[str, Any]] = [
        {
            "id": v.draft.id,
            "campaign": v.campaign,
            "to": v.draft.to_email,
            "kind": v.draft.kind.value,
            "step": v.draft.step_number if v.draft.kind is DraftKind.STEP else None,
            "subject": v.draft.subject,
            "message_id": v.draft.message_id,
            "data_started_at": v.draft.data_started_at.isoformat()
            if v.draft.data_started_at
            else None,
            "error": v.draft.last_error,
        }
        for v in attention_drafts(uow())
    ]
    if as_json:
        output.emit_json(data)
        return
    output.table(
        f"Needs attention ({len(data)})",
        ("id", "campaign", "to", "step", "data sent (UTC)", "why"),
        (
            (
                d["id"],
                d["campaign"],
                d["to"],
                d["step"] or d["kind"],
                (d["data_started_at"] or "")[:16].replace("T", " "),
                d["error"] or "",
            )
            for d in data
        ),
    )


@app.command("check")
@handle_errors
def check(
    folder: str | None = typer.Option(
        None,
        "--folder",
        help=(
            "The sent-mail folder (default: the campaign's imap.sent_folder, else the folder "
            "the server marks \\Sent: RFC 6154 SPECIAL-USE)."
        ),
    ),
    now: str | None = NOW,
    as_json: bool = JSON,
) -> None:
    """Look for each one in its mailbox's Sent folder (IMAP); found ones are recorded as sent.

    Not found changes nothing: many servers keep no copy of what is sent over SMTP.
    """
    from sequencer.adapters.imap import ImapMailboxReader
    from sequencer.services.attention import check_sent_folders

    reader = ImapMailboxReader()
    try:
        report = check_sent_folders(uow(), reader, dict(os.environ), parse_now(now), folder)
    finally:
        reader.close()
    if as_json:
        output.emit_json(
            {"found": report.found, "not_found": report.not_found, "errors": report.errors}
        )
    else:
        output.out.print(
            f"found in the Sent folder and recorded as sent: {len(report.found)}; "
            f"not found (still waiting for a person): {len(report.not_found)}",
            markup=False,
        )
        for error in report.errors:
            output.problem(error)
    if report.errors:
        raise typer.Exit(1)


@app.command("sent")
@handle_errors
def sent(draft_id: int, by: str = BY, now: str | None = NOW) -> None:
    """It arrived: record it as sent; the prospect's sequence moves on."""
    from sequencer.services.attention import mark_sent

    d = mark_sent(uow(), draft_id, by, parse_now(now))
    output.out.print(f"draft {d.id}: {d.state.value}", markup=False)


@app.command("resend")
@handle_errors
def resend(draft_id: int, by: str = BY, now: str | None = NOW) -> None:
    """It never arrived: send the same message again at the next send."""
    from sequencer.services.attention import resend as resend_draft

    d = resend_draft(uow(), draft_id, by, parse_now(now))
    output.out.print(f"draft {d.id}: {d.state.value} (goes out at the next send)", markup=False)
