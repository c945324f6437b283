"""The report page: the same figures as `refseq report`, for the campaigns a rep may see.

``GET /report?campaign=&by=`` shows the warm-vs-cold funnel, the funnel grouped ``by`` step,
referrer or template, the referrer leaderboard and the chart, which is
``GET /report/chart.png?campaign=&by=`` (drawn on matplotlib's Agg canvas). Both only read.

Scoping, like the queue: a rep sees the campaigns whose ``rep.email`` is theirs (another rep's
campaign is a 404, exactly like a missing one); an admin sees all. With no campaign chosen an
admin sees every campaign and a rep their own campaigns combined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from sequencer.adapters.chart import STAGES, chart_png
from sequencer.adapters.db.report_queries import load_facts
from sequencer.adapters.web.deps import UowFactory, ctx, current_rep, render
from sequencer.core.ports import UnitOfWork
from sequencer.core.report import Facts, Funnel, Report, duration, pct
from sequencer.errors import NotFound
from sequencer.services import campaigns as campaign_service
from sequencer.services import reporting
from sequencer.services.accounts import Rep

router = APIRouter()
Signed = Annotated[Rep, Depends(current_rep)]
# The groupings the page offers (the CLI's "campaign" is left out: the page shows one scope).
WEB_BY: tuple[str, ...] = ("temperature", "step", "referrer", "template")
TOP_REFERRERS = 100  # leaderboard rows on the page; the chart shows the top 10


def visible_campaigns(uow_factory: UowFactory, rep: Rep) -> list[str]:
    """The names of the campaigns ``rep`` may report on, sorted (all of them for an admin)."""
    mine = rep.scope
    names = []
    for summary in campaign_service.list_campaigns(uow_factory):
        spec_rep = summary.campaign.spec.get("rep") or {}
        email = str(spec_rep.get("email") or "") if isinstance(spec_rep, dict) else ""
        if mine is None or email.strip().casefold() == mine.casefold():
            names.append(summary.campaign.name)
    return sorted(names)


def _combined(names: Sequence[str]) -> reporting.FactsLoader:
    """Loads the facts of ``names`` only, merged (the report service reads one or all)."""

    def load(uow: UnitOfWork, _campaign: str | None) -> Facts:
        parts = [load_facts(uow, name) for name in names]
        return Facts(
            enrollments=[e for p in parts for e in p.enrollments],
            sends=[s for p in parts for s in p.sends],
            inbound=[m for p in parts for m in p.inbound],
            handoffs=[h for p in parts for h in p.handoffs],
        )

    return load


@dataclass(frozen=True)
class Scoped:
    report: Report
    campaigns: list[str]
    campaign: str  # "" = every campaign the rep may see
    where: str  # what the figures cover, for headings


def scoped_report(request: Request, rep: Rep, campaign: str, by: str) -> Scoped:
    if by not in WEB_BY:
        choices = ", ".join(WEB_BY)
        raise HTTPException(400, f"The report cannot be grouped by {by!r}: choose {choices}.")
    uow_factory = ctx(request).uow_factory
    names = visible_campaigns(uow_factory, rep)
    if campaign:
        if campaign not in names:  # another rep's campaign: the same answer as a missing one
            raise NotFound(f"no campaign named {campaign!r}")
        result = reporting.report(uow_factory, campaign, by, load_facts)
        where = campaign
    elif rep.is_admin:
        result = reporting.report(uow_factory, None, by, load_facts)
        where = "all campaigns"
    else:
        result = reporting.report(uow_factory, None, by, _combined(names))
        where = "all your campaigns"
    return Scoped(result, names, campaign, where)


def _cell(f: Funnel, count: str, rate: str | None) -> tuple[int, str | None]:
    return getattr(f, count), None if rate is None else pct(getattr(f, rate))


@router.get("/report", response_class=HTMLResponse)
def report_page(
    request: Request, rep: Signed, campaign: str = "", by: str = "temperature"
) -> Response:
    scoped = scoped_report(request, rep, campaign, by)
    r = scoped.report
    t = r.total
    temperatures = [
        {
            "stage": count,
            "label": label,
            "cells": [_cell(f, count, rate) for f in (t.warm, t.cold, t.all)],
        }
        for label, count, rate in STAGES
    ]
    groups = [
        {
            "label": row.label,
            "counts": [getattr(row.all, count) for _, count, _ in STAGES],
            "reply": [pct(f.reply_rate) for f in (row.all, row.warm, row.cold)],
            "median": duration(row.all.median_first_reply_seconds),
        }
        for row in r.rows
    ]
    query = urlencode({"campaign": scoped.campaign, "by": by})
    return render(
        request,
        "report.html",
        rep=rep,
        report=r,
        campaigns=scoped.campaigns,
        campaign=scoped.campaign,
        by=by,
        by_choices=WEB_BY,
        where=scoped.where,
        stages=[label for label, _, _ in STAGES],
        temperatures=temperatures,
        medians=[duration(f.median_first_reply_seconds) for f in (t.warm, t.cold, t.all)],
        groups=groups,
        referrers=r.referrers[:TOP_REFERRERS],
        pct=pct,
        chart_url=f"/report/chart.png?{query}",
    )


@router.get("/report/chart.png")
def report_chart(
    request: Request, rep: Signed, campaign: str = "", by: str = "temperature"
) -> Response:
    scoped = scoped_report(request, rep, campaign, by)
    png = chart_png(scoped.report, where=scoped.where)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})
