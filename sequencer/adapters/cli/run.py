"""`refseq tick|run|status`: the workers' job in this process (the embedded runner)."""

from __future__ import annotations

import re
import signal
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

import typer

from sequencer.adapters.cli import output, runloop
from sequencer.adapters.cli.common import DEV, NOW_HELP, handle_errors, parse_now, settings
from sequencer.memlimit import limit_address_space
from sequencer.services.runner import STAGES, PassReport, replay, run_pass
from sequencer.services.status import status as status_service

JSON = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")
_STEP = re.compile(r"^(\d+)\s*(s|m|h|d)$")


def _deps(dev: bool) -> Any:
    from sequencer import bootstrap

    return bootstrap.runner_deps(settings(), dev=dev)


def parse_step(value: str) -> timedelta:
    m = _STEP.match(value.strip())
    if not m or int(m.group(1)) == 0:
        raise typer.BadParameter(
            f"{value!r}: use a duration such as 30s, 5m, 1h or 1d", param_hint="--step"
        )
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})


def _report_json(r: PassReport) -> dict[str, Any]:
    out: dict[str, Any] = {"now": r.now.isoformat()}
    if r.drafting:
        out["drafts_created"] = r.drafting.created
        out["auto_approved"] = r.drafting.auto_approved
        out["errors"] = [{"prospect": p, "problem": m} for p, m in r.drafting.errors]
    if r.sending:
        s = r.sending
        out["send"] = {
            "sent": s.sent,
            "retried": s.retried,
            "failed": s.failed,
            "needs_attention": s.attention,
            "cancelled": s.cancelled,
            "deferred": s.deferred,
            "lost_claims": s.lost,
            "waiting": s.waiting,
            "errors": s.errors,
        }
    if r.sweeping:
        out["sweep"] = {"released": r.sweeping.released, "needs_attention": r.sweeping.attention}
    return out


@handle_errors
def tick(
    now: str | None = typer.Option(None, "--now", help=NOW_HELP),
    only: str | None = typer.Option(None, "--only", help=f"Run one stage: {', '.join(STAGES)}."),
    as_json: bool = JSON,
    dev: bool = DEV,
) -> None:
    """Do the workers' job once: draft due steps, send what is due, sweep stuck sends."""
    if only is not None and only not in STAGES:
        raise typer.BadParameter(f"choose one of: {', '.join(STAGES)}", param_hint="--only")
    deps = _deps(dev)
    try:
        report = run_pass(deps, parse_now(now), [only] if only else STAGES)
    finally:
        deps.close()
    if as_json:
        output.emit_json(_report_json(report))
    else:
        output.out.print(f"{report.now:%Y-%m-%d %H:%M} UTC: {report.summary()}")
    errors = report.drafting.errors if report.drafting else []
    for prospect, problem in errors:
        output.problem(f"{prospect}: {problem}")
    if errors:
        raise typer.Exit(1)


class _Stop:
    """SIGTERM/SIGINT ask the loop to stop after the message in flight."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        output.problem("stopping after the message in flight (Ctrl-C again to abort)")

    def __call__(self) -> bool:
        return self.requested


@handle_errors
def run(
    from_: str | None = typer.Option(None, "--from", help="Replay from this moment (ISO 8601)."),
    until: str | None = typer.Option(None, "--until", help="Replay until this moment (ISO 8601)."),
    step: str = typer.Option("5m", "--step", help="Replay step, e.g. 5m, 1h."),
    interval: float = typer.Option(60.0, "--interval", help="Seconds between live passes."),
    max_backoff: float = typer.Option(
        runloop.MAX_BACKOFF,
        "--max-backoff",
        help="Longest wait (s) before retrying a pass the database failed (1 s, 2 s, 4 s …).",
    ),
    as_json: bool = JSON,
    dev: bool = DEV,
) -> None:
    """The embedded runner: draft, send and sweep on a schedule until stopped (no Redis).

    With --from/--until it replays that stretch of time pass by pass instead (what-if runs,
    backfills, tests, the demo) against the real database and SMTP server.
    """
    if from_ is None and until is None:  # the long-running worker: it renders templates
        limit_address_space()  # a backstop under the render caps (see sequencer.memlimit)
    stop = _Stop()
    live = not (from_ or until)
    deps = runloop.retrying(lambda: _deps(dev), stop, max_backoff) if live else _deps(dev)
    if deps is None:  # stopped while the database was still unreachable
        return
    passes: list[dict[str, Any]] = []

    def show(r: PassReport) -> None:
        if as_json:
            passes.append(_report_json(r))
        else:
            output.out.print(f"{r.now:%Y-%m-%d %H:%M} UTC: {r.summary()}", markup=False)

    try:
        if not live:
            if not (from_ and until):
                raise typer.BadParameter("give both --from and --until")
            replay(deps, parse_now(from_), parse_now(until), parse_step(step), show, stop)
        else:
            output.problem(f"refseq run: a pass every {interval:g}s; Ctrl-C or SIGTERM to stop")
            runloop.live(deps, interval, stop, show, max_backoff=max_backoff)
    finally:
        deps.close()
    if as_json:
        output.emit_json(passes)


@handle_errors
def status(
    now: str | None = typer.Option(None, "--now", help=NOW_HELP), as_json: bool = JSON
) -> None:
    """Per campaign and mailbox: due, awaiting approval, sent vs cap, attention, next send."""
    from sequencer import bootstrap
    from sequencer.services.inbound_review import needs_person

    factory = bootstrap.uow_factory(settings())
    campaigns, mailboxes = status_service(factory, parse_now(now))
    inbound = len(needs_person(factory))
    if as_json:
        output.emit_json(
            {
                "campaigns": [c.__dict__ for c in campaigns],
                "mailboxes": [m.__dict__ for m in mailboxes],
                "inbound_needs_person": inbound,
            }
        )
        return

    def when(d: datetime | None) -> str:
        return "" if d is None else d.strftime("%Y-%m-%d %H:%M UTC")

    output.table(
        "Campaigns",
        (
            "campaign",
            "status",
            "active",
            "awaiting approval",
            "due now",
            "approved later",
            "sent",
            "attention",
            "failed",
            "next step due",
        ),
        (
            (
                c.campaign,
                c.status,
                c.active_enrollments,
                c.pending_approval,
                c.approved_due,
                c.approved_later,
                c.sent,
                c.needs_attention,
                c.failed,
                when(c.next_step_due),
            )
            for c in campaigns
        ),
    )
    output.table(
        "Mailboxes",
        ("mailbox", "sent (24 h)", "cap", "next send", "blocked"),
        (
            (m.mailbox, m.sent_last_24h, m.daily_cap, when(m.next_send_at), m.blocked)
            for m in mailboxes
        ),
    )
    attention = sum(c.needs_attention for c in campaigns)
    if attention:
        output.problem(f"{attention} send(s) need attention: see `refseq queue --attention`")
    if inbound:
        output.problem(
            f"{inbound} inbound message(s) need a person: see `refseq inbox --unhandled`"
        )


def register(app: typer.Typer) -> None:
    app.command("tick")(tick)
    app.command("run")(run)
    app.command("status")(status)
