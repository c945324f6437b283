"""`refseq demo`: the whole product end to end on a compressed clock (SQLite, no Redis)."""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from sequencer.adapters.cli import output
from sequencer.adapters.cli.common import handle_errors, parse_now
from sequencer.core.states import DraftKind, DraftState


@handle_errors
def demo(
    directory: Path | None = typer.Option(
        None, "--dir", help="Folder to run in (default: a new temporary one)."
    ),
    start: str | None = typer.Option(
        None, "--start", help="Simulated start (ISO); default: next Monday."
    ),
    days: int = typer.Option(14, "--days", help="Simulated days to run."),
) -> None:
    """The real main job end to end: launch, approve, send (SMTP), replies, handoff, report."""
    from sequencer.adapters.demo import next_monday, run_demo
    from sequencer.bootstrap import shipped_templates_dir
    from sequencer.resources import example_dir

    folder = directory or Path(tempfile.mkdtemp(prefix="refseq-demo-"))
    if folder.exists() and any(folder.iterdir()):
        raise typer.BadParameter(f"{folder} is not empty; choose a new folder", param_hint="--dir")
    begin = parse_now(start) if start else next_monday(datetime.now(UTC))
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.fields[clock]}", markup=False),
        TimeElapsedColumn(),
        console=output.err,
    ) as bar:
        task = bar.add_task("starting", total=days * 12 + 45, clock="")

        def on_step(text: str) -> None:
            bar.update(task, description=text)

        def on_pass(report: object) -> None:
            now = getattr(report, "now", None)
            bar.update(task, advance=1, clock=f"{now:%a %d %b %H:%M} UTC" if now else "")

        result = run_demo(
            folder, example_dir(), shipped_templates_dir(), begin, on_step, on_pass, days
        )
        bar.update(task, completed=days * 12 + 45, description="done")
    _summary(result.db_url)
    _report(result.db_url, folder / "report.png")
    output.out.print(
        f"\nRan {result.passes} passes in {time.monotonic() - started:.1f}s "
        f"(simulated {days} days from {begin:%Y-%m-%d %H:%M} UTC)."
    )
    output.out.print(
        f"Every message sent is in {result.mbox} (open it with `mutt -f` or any mbox reader)."
    )
    output.out.print(f"The rep's mailbox the poller read: {result.maildir}")
    output.out.print(
        f"Look around: cd {folder} && refseq report && refseq handoffs && refseq inbox "
        "(refseq is in .venv/bin; the database is refseq.db in that folder)"
    )


def _summary(db_url: str) -> None:
    from sequencer.adapters.db.session import make_uow_factory

    factory = make_uow_factory(db_url)
    try:
        with factory() as uow:
            (summary,) = uow.repo.list_campaigns()
            enrollments = uow.repo.list_enrollments(summary.campaign.id)
            drafts = uow.repo.list_drafts(list(DraftState))
            handoffs = uow.repo.list_handoffs(states=("open", "handled"))
            inbound = uow.repo.list_inbound()
    finally:
        factory.dispose()
    sent: dict[int, int] = {}
    for v in drafts:
        if v.draft.state is DraftState.SENT and v.draft.kind is DraftKind.STEP:
            sent[v.enrollment.id] = sent.get(v.enrollment.id, 0) + 1
    answered = {
        i.enrollment_id: f"{i.klass}" + (f" ({i.intent})" if i.klass == "human_reply" else "")
        for i in inbound
        if i.enrollment_id
    }
    handed = {h.enrollment_id for h in handoffs}
    output.table(
        "Outcome",
        ("prospect", "temp", "referrer", "sent", "their answer", "now", "handed to rep"),
        (
            (
                e.prospect_email,
                e.temperature,
                e.referrer.get("name"),
                sent.get(e.id, 0),
                answered.get(e.id, "—"),
                e.state.value,
                "yes" if e.id in handed else "",
            )
            for e in enrollments
        ),
    )
    pending = [v for v in drafts if v.draft.state is DraftState.PENDING_APPROVAL]
    for v in pending:
        output.out.print(
            f"waiting for the rep's approval: draft {v.draft.id} to {v.draft.to_email} "
            f"({v.draft.template})"
        )


def _report(db_url: str, chart: Path) -> None:
    """The sales-ops view of the same run: `refseq report`, plus its chart."""
    import os

    from sequencer.adapters.cli.report import report

    previous = os.environ.get("REFSEQ_DATABASE_URL")
    os.environ["REFSEQ_DATABASE_URL"] = db_url
    try:
        report(
            campaign="q4-fintech-intros",
            by="temperature",
            fmt="table",
            section="funnel",
            top=10,
            edges=False,
            chart=chart,
        )
    finally:
        if previous is None:
            os.environ.pop("REFSEQ_DATABASE_URL", None)
        else:
            os.environ["REFSEQ_DATABASE_URL"] = previous
        from sequencer.bootstrap import dispose_all

        dispose_all()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
