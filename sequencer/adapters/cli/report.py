"""`refseq report`: the funnel, warm versus cold, the referrer leaderboard, and a chart."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from sequencer.adapters.chart import STAGES, write_chart
from sequencer.adapters.cli import output
from sequencer.adapters.cli.common import handle_errors, uow
from sequencer.core.report import (
    BY_CHOICES,
    COUNT_COLUMNS,
    RATE_COLUMNS,
    Funnel,
    FunnelRow,
    Report,
    duration,
    pct,
)

FORMATS = ("table", "json", "csv")
SECTIONS = ("funnel", "referrers", "edges")


def _table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], text: Iterable[int] = (0,)
) -> None:
    """A rich table: the ``text`` columns left-aligned, the figures right-aligned."""
    left = set(text)
    t = Table(title=title, title_justify="left", header_style="bold")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i in left else "right", overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    output.out.print(t)


def _cell(f: Funnel, count: str, rate: str | None) -> str:
    n = getattr(f, count)
    return str(n) if rate is None else f"{n} ({pct(getattr(f, rate))})"


def _print_temperatures(report: Report, where: str) -> None:
    t = report.total
    rows: list[Sequence[Any]] = [
        (label, _cell(t.warm, count, rate), _cell(t.cold, count, rate), _cell(t.all, count, rate))
        for label, count, rate in STAGES
    ]
    rows.append(
        (
            "median time to first reply",
            duration(t.warm.median_first_reply_seconds),
            duration(t.cold.median_first_reply_seconds),
            duration(t.all.median_first_reply_seconds),
        )
    )
    _table(f"Warm vs cold: {where} (rates of sent)", ("", "warm", "cold", "all"), rows)


def _print_groups(report: Report, where: str) -> None:
    heading = {"step": "step", "template": "template", "referrer": "referrer"}.get(
        report.by, report.by
    )
    counted = "messages" if report.by in {"step", "template"} else "enrollments"
    columns = (
        heading,
        *(label for label, _, _ in STAGES),
        "reply rate",
        "reply warm",
        "reply cold",
        "median to reply",
    )
    rows = [
        (
            r.label,
            *(getattr(r.all, count) for _, count, _ in STAGES),
            pct(r.all.reply_rate),
            pct(r.warm.reply_rate),
            pct(r.cold.reply_rate),
            duration(r.all.median_first_reply_seconds),
        )
        for r in report.rows
    ]
    _table(f"Funnel by {report.by}: {where} (sent counts {counted})", columns, rows)


def _print_referrers(report: Report, top: int) -> None:
    shown = report.referrers if top <= 0 else report.referrers[:top]
    more = len(report.referrers) - len(shown)
    title = "Referrer leaderboard (intros = named and sent)"
    if more:
        title += f": top {len(shown)} of {len(report.referrers)} (--top 0 for all)"
    _table(
        title,
        ("#", "referrer", "id", "enrolled", "intros", "replies", "interested", "handoffs", "conv."),
        (
            (
                i,
                r.referrer_name,
                r.referrer_id,
                r.enrolled,
                r.intros,
                r.replies,
                r.interested,
                r.handoffs,
                pct(r.conversion_rate),
            )
            for i, r in enumerate(shown, 1)
        ),
        text=(1, 2),
    )


def _print_edges(report: Report) -> None:
    _table(
        f"Referral edges ({len(report.edges)})",
        ("referrer", "prospect", "temp.", "named", "state", "sent", "first sent", "outcome"),
        (
            (
                e.referrer_name,
                e.prospect_email,
                e.temperature,
                "yes" if e.named else "no",
                e.state,
                e.messages_sent,
                "" if e.first_sent_at is None else f"{e.first_sent_at:%Y-%m-%d %H:%M}",
                e.outcome + (f" ({e.intent})" if e.intent and e.outcome != e.intent else ""),
            )
            for e in report.edges
        ),
        text=(0, 1, 2, 3, 4, 7),
    )


def print_report(report: Report, top: int = 20, edges: bool = False) -> None:
    where = report.campaign or "all campaigns"
    _print_temperatures(report, where)
    if report.by != "temperature":
        _print_groups(report, where)
    _print_referrers(report, top)
    if edges:
        _print_edges(report)


def csv_rows(report: Report, section: str) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """One CSV table: the funnel (a line per group and temperature), referrers or edges."""
    if section == "referrers":
        return _REFERRER_COLUMNS, [
            tuple(r.as_dict()[c] for c in _REFERRER_COLUMNS) for r in report.referrers
        ]
    if section == "edges":
        return _EDGE_COLUMNS, [tuple(e.as_dict()[c] for c in _EDGE_COLUMNS) for e in report.edges]
    columns = (
        "group",  # a value of --by (the total is the group "all")
        "label",
        "temperature",
        *COUNT_COLUMNS,
        *RATE_COLUMNS,
        "median_first_reply_seconds",
    )
    out: list[tuple[Any, ...]] = []
    group: FunnelRow
    for group in (*report.rows, report.total):
        for temperature, f in (("all", group.all), ("warm", group.warm), ("cold", group.cold)):
            out.append(
                (
                    group.group,
                    group.label,
                    temperature,
                    *f.counts().values(),
                    *(round(v, 6) for v in f.rates().values()),
                    f.median_first_reply_seconds,
                )
            )
    return columns, out


_REFERRER_COLUMNS = (
    "referrer_id",
    "referrer_name",
    "enrolled",
    "intros",
    "replies",
    "interested",
    "handoffs",
    "conversion_rate",
)
_EDGE_COLUMNS = (
    "referrer_id",
    "referrer_name",
    "prospect_email",
    "campaign",
    "temperature",
    "named",
    "state",
    "messages_sent",
    "first_sent_at",
    "replied",
    "intent",
    "handed_off",
    "outcome",
)


@handle_errors
def report(
    campaign: str | None = typer.Argument(
        None, help="Campaign name (default: every campaign).", show_default=False
    ),
    by: str = typer.Option(
        "temperature", "--by", help=f"Group the funnel by: {', '.join(BY_CHOICES)}."
    ),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    section: str = typer.Option(
        "funnel", "--section", help="With --format csv: funnel, referrers or edges."
    ),
    top: int = typer.Option(20, "--top", help="Referrers shown in the table (0: all)."),
    edges: bool = typer.Option(False, "--edges", help="Table: also list every referral edge."),
    chart: Path | None = typer.Option(
        None, "--chart", help="Also write a PNG chart (funnel by temperature, top referrers)."
    ),
) -> None:
    """Enrolled → sent → replied → handed off, warm versus cold, and who referred whom."""
    from sequencer.adapters.db.report_queries import load_facts
    from sequencer.services.reporting import report as build

    if by not in BY_CHOICES:
        raise typer.BadParameter(f"choose one of: {', '.join(BY_CHOICES)}", param_hint="--by")
    if fmt not in FORMATS:
        raise typer.BadParameter(f"choose one of: {', '.join(FORMATS)}", param_hint="--format")
    if section not in SECTIONS:
        raise typer.BadParameter(f"choose one of: {', '.join(SECTIONS)}", param_hint="--section")
    if chart is not None and chart.suffix.lower() != ".png":
        raise typer.BadParameter(f"{chart}: the chart is a PNG file", param_hint="--chart")

    result = build(uow(), campaign, by, load_facts)
    if fmt == "json":
        output.emit_json(result.as_dict())
    elif fmt == "csv":
        output.emit_csv(*csv_rows(result, section))
    else:
        print_report(result, top=top, edges=edges)
    if chart is not None:
        write_chart(result, chart)
        output.problem(f"chart written to {chart}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
