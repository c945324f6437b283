"""`refseq suppress …`: the global do-not-email list (addresses and @domains)."""

from __future__ import annotations

import typer

from sequencer.adapters.cli import output
from sequencer.adapters.cli.common import handle_errors, parse_now, uow
from sequencer.services import campaigns as svc

app = typer.Typer(
    help="Addresses and @domains never to be emailed, in any campaign.", no_args_is_help=True
)


@app.command("add")
@handle_errors
def add(
    value: str = typer.Argument(..., help="name@domain or @domain (case-insensitive)."),
    reason: str = typer.Option("manual", help="Why (kept with the entry)."),
) -> None:
    """Suppress an address or a whole domain."""
    added = svc.suppress(uow(), value, reason, "cli", parse_now(None))
    output.out.print(
        f"{'suppressed' if added else 'already suppressed'}: {svc.normalize_suppression(value)}"
    )


@app.command("remove")
@handle_errors
def remove(value: str = typer.Argument(..., help="name@domain or @domain.")) -> None:
    """Take an address or domain off the list."""
    removed = svc.unsuppress(uow(), value)
    key = svc.normalize_suppression(value)
    if not removed:
        output.problem(f"not on the suppression list: {key}")
        raise typer.Exit(1)
    output.out.print(f"removed: {key}")


@app.command("list")
@handle_errors
def list_(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON."),
    as_csv: bool = typer.Option(False, "--csv", help="Machine-readable CSV."),
) -> None:
    """Show the suppression list."""
    rows = [
        (s.value, s.reason, s.source, s.created_at.isoformat())
        for s in svc.list_suppressions(uow())
    ]
    cols = ("value", "reason", "source", "created_at")
    if as_json:
        output.emit_json([dict(zip(cols, r, strict=True)) for r in rows])
    elif as_csv:
        output.emit_csv(cols, rows)
    else:
        output.table(f"Suppressed ({len(rows)})", cols, rows)
