"""`refseq init|validate|plan|launch|campaigns|campaign`: campaigns as code."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import typer

from sequencer.adapters.cli import output
from sequencer.adapters.cli.common import NOW_HELP, draft_config, handle_errors, parse_now, uow
from sequencer.adapters.cli.drafts import _actor
from sequencer.core.plan import Plan, PlannedEnrollment
from sequencer.errors import ConflictError
from sequencer.services import campaigns as svc
from sequencer.services.checking import CampaignCheck, check_campaign
from sequencer.services.launch import launch_campaign, plan_campaign

FILE = typer.Argument(..., help="The campaign YAML file.", show_default=False)
JSON = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")
campaign_app = typer.Typer(
    help="Show, pause, resume or stop a launched campaign.", no_args_is_help=True
)


def _count_rows(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def load(path: Path, quiet: bool = False) -> CampaignCheck:
    from sequencer.core.spec import load_campaign

    spec, _, _ = load_campaign(path)
    total = _count_rows(spec.data.prospects) if spec and spec.data.prospects.is_file() else None
    with output.progress_bar("reading CSVs", total, enabled=not quiet) as update:
        return check_campaign(path, draft_config(), progress=update)


def _print_problems(check: CampaignCheck) -> None:
    for p in check.warnings:
        output.problem("warning: " + p.render())
    for p in check.problems:
        output.problem(p.render())


@handle_errors
def validate(path: Path = FILE, as_json: bool = JSON) -> None:
    """Check the campaign file, its CSVs and templates; report every problem at once."""
    check = load(path, quiet=as_json)
    if as_json:
        output.emit_json(
            {
                "file": str(path),
                "clean": check.clean,
                "problems": [p.as_dict() for p in check.problems],
                "warnings": [p.as_dict() for p in check.warnings],
            }
        )
    else:
        _print_problems(check)
        if check.clean:
            a = check.audience
            assert a is not None
            output.out.print(
                f"{path}: OK ({len(a.prospects)} prospects, {len(a.referrers)} referrers, "
                f"{len(a.referrals)} referrals)"
            )
        else:
            output.problem(f"{path}: {len(check.problems)} problem(s)")
    if not check.clean:
        raise typer.Exit(1)


def _plan_row(p: PlannedEnrollment) -> dict[str, Any]:
    return {
        "email": p.prospect.email,
        "temperature": p.temperature.value,
        "sequence": p.sequence,
        "referrer": p.path.referrer.name,
        "referrer_id": p.path.referrer.id,
        "may_name_referrer": p.may_name_referrer,
        "why": p.reason,
        "other_referrers": [o.referrer.id for o in p.others],
        "first_step_at": None if p.held else p.first_due.isoformat(),
        "first_step_local": None if p.held else p.first_due_local.isoformat(),
        "held": p.hold_reason,
    }


def _plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "enroll": [_plan_row(p) for p in plan.active],
        "held": [_plan_row(p) for p in plan.held],
        "excluded": [
            {
                "email": e.email,
                "source": e.source,
                "row": e.row,
                "reason": e.reason.value,
                "detail": e.detail,
            }
            for e in plan.excluded
        ],
        "already_enrolled": plan.unchanged,
    }


def _print_plan(plan: Plan) -> None:
    output.table(
        f"Would enroll ({len(plan.active)})",
        ("prospect", "temp", "sequence", "via referrer", "first step (local)", "why"),
        (
            (
                p.prospect.email,
                p.temperature.value,
                p.sequence,
                p.path.referrer.name + ("" if p.may_name_referrer else " (not named)"),
                p.first_due_local.strftime("%a %b %d %H:%M %Z"),
                p.reason,
            )
            for p in plan.active
        ),
    )
    if plan.excluded:
        output.table(
            f"Excluded ({len(plan.excluded)})",
            ("prospect", "where", "reason", "detail"),
            (
                (
                    e.email,
                    f"{e.source} row {e.row}" if e.row else e.source,
                    e.reason.value,
                    e.detail,
                )
                for e in plan.excluded
            ),
        )
    if plan.unchanged:
        output.out.print(
            f"{plan.unchanged} prospect(s) already enrolled in this campaign: unchanged."
        )


@handle_errors
def plan(
    path: Path = FILE,
    now: str | None = typer.Option(None, "--now", help=NOW_HELP),
    as_json: bool = JSON,
) -> None:
    """Show who would be enrolled, warm or cold, via whom and when, without writing anything."""
    check = load(path, quiet=as_json)
    if not as_json:
        _print_problems(check)
    result = plan_campaign(uow(), check, parse_now(now))
    if as_json:
        output.emit_json(_plan_json(result))
    else:
        _print_plan(result)


@handle_errors
def launch(
    path: Path = FILE,
    now: str | None = typer.Option(None, "--now", help=NOW_HELP),
    as_json: bool = JSON,
) -> None:
    """Store the campaign and enroll its prospects in one transaction (safe to run again)."""
    check = load(path, quiet=as_json)
    if not as_json:
        _print_problems(check)
    with output.progress_bar(
        "enrolling", len(check.audience.prospects) if check.audience else None, enabled=not as_json
    ) as update:
        from sqlalchemy.exc import IntegrityError

        try:
            report = launch_campaign(uow(), check, parse_now(now), progress=update, actor=_actor())
        except IntegrityError as exc:  # a concurrent launch committed the same rows first
            raise ConflictError(
                f"campaign {check.spec.name if check.spec else path}: another `refseq launch` "
                "stored it at the same moment; this one changed nothing (run it again to see "
                "the result)"
            ) from exc
    if as_json:
        output.emit_json(
            {
                "campaign": report.campaign,
                "created": report.created,
                "spec_changed": report.spec_changed,
                "enrolled": report.enrolled,
                "released": report.released,
                "consent_changes": report.consent_changes,
                "held_by_revocation": report.held_by_revocation,
                "row_problems": [p.as_dict() for p in check.row_problems],
                **_plan_json(report.plan),
            }
        )
        return
    _print_plan(report.plan)
    verb = "launched" if report.created else ("updated" if report.spec_changed else "unchanged")
    held = len(report.plan.held)
    output.out.print(
        f"campaign {report.campaign}: {verb}; {report.enrolled} new enrollment(s) "
        f"({held} held), {report.released} re-planned, {report.plan.unchanged} already enrolled, "
        f"{len(check.row_problems)} bad row(s) skipped"
    )
    if report.held_by_revocation:
        output.out.print(
            f"referrers.csv revoked consent: {report.held_by_revocation} live enrollment(s) "
            "naming them held (refseq held)"
        )


@handle_errors
def campaigns(as_json: bool = JSON) -> None:
    """List launched campaigns with their enrollment counts."""
    rows = svc.list_campaigns(uow())
    if as_json:
        output.emit_json(
            [
                {
                    "name": s.campaign.name,
                    "status": s.campaign.status.value,
                    "enrollments": s.total,
                    "by_state": s.by_state,
                    "by_temperature": s.by_temperature,
                }
                for s in rows
            ]
        )
        return
    output.table(
        f"Campaigns ({len(rows)})",
        ("name", "status", "enrolled", "warm", "cold", "active", "held", "updated"),
        (
            (
                s.campaign.name,
                s.campaign.status.value,
                s.total,
                s.by_temperature.get("warm", 0),
                s.by_temperature.get("cold", 0),
                s.by_state.get("active", 0),
                s.by_state.get("held", 0),
                s.campaign.updated_at.strftime("%Y-%m-%d %H:%M UTC"),
            )
            for s in rows
        ),
    )


@campaign_app.command("show")
@handle_errors
def show(name: str, as_json: bool = JSON) -> None:
    """A campaign's settings and enrollment counts."""
    s = svc.get_campaign(uow(), name)
    c = s.campaign
    if as_json:
        output.emit_json(
            {
                "name": c.name,
                "status": c.status.value,
                "source": c.source,
                "by_state": s.by_state,
                "by_temperature": s.by_temperature,
                "spec": c.spec,
            }
        )
        return
    spec = c.spec
    output.table(
        f"Campaign {c.name}",
        ("field", "value"),
        [
            ("status", c.status.value),
            ("source", c.source),
            ("rep", f"{spec['rep']['name']} <{spec['rep']['email']}>"),
            ("sequences", ", ".join(f"{k}: {len(v)} steps" for k, v in spec["sequences"].items())),
            ("enrollments", s.total),
            *((f"  {k}", v) for k, v in sorted(s.by_state.items())),
            *((f"  {k}", v) for k, v in sorted(s.by_temperature.items())),
            ("updated", c.updated_at.isoformat()),
        ],
    )


def _status_command(event: str, done: str) -> Any:
    @handle_errors
    def command(name: str) -> None:
        record = svc.change_status(uow(), name, event, parse_now(None))
        output.out.print(f"campaign {record.name}: {done} (status {record.status.value})")

    command.__doc__ = f"{event.capitalize()} a campaign."
    return command


for _event, _done in (("pause", "paused"), ("resume", "resumed"), ("stop", "stopped")):
    campaign_app.command(_event)(_status_command(_event, _done))


@handle_errors
def init(
    directory: Path = typer.Argument(..., help="Folder to create (must be empty or new)."),
) -> None:
    """Write a working example campaign (YAML, CSVs with warm and cold cases)."""
    from sequencer.resources import example_dir

    if directory.exists() and any(directory.iterdir()):
        output.problem(f"error: {directory} is not empty; choose a new folder")
        raise typer.Exit(1)
    shutil.copytree(
        example_dir(),
        directory,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    yaml = directory / "campaign.yaml"
    output.out.print(
        f"wrote {directory}/: campaign.yaml, prospects.csv, referrers.csv, referrals.csv"
    )
    output.out.print(f"next: refseq validate {yaml} && refseq plan {yaml} && refseq launch {yaml}")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("validate")(validate)
    app.command("plan")(plan)
    app.command("launch")(launch)
    app.command("campaigns")(campaigns)
    app.add_typer(campaign_app, name="campaign")
    register_held(app)


@handle_errors
def held(campaign: str | None = typer.Option(None, "--campaign"), as_json: bool = JSON) -> None:
    """Enrollments held for a person's decision (no consent, a redirected lead, …)."""
    rows = svc.held_enrollments(uow(), campaign)
    data = [
        {
            "id": e.id,
            "campaign": name,
            "prospect": e.prospect_email,
            "referrer": e.referrer.get("name"),
            "reason": e.hold_reason,
        }
        for name, e in rows
    ]
    if as_json:
        output.emit_json(data)
        return
    output.table(
        f"Held ({len(data)})",
        ("id", "campaign", "prospect", "referrer", "why"),
        ((d["id"], d["campaign"], d["prospect"], d["referrer"], d["reason"]) for d in data),
    )


@handle_errors
def release(
    enrollment_id: int, now: str | None = typer.Option(None, "--now", help=NOW_HELP)
) -> None:
    """Release a held enrollment: its next step goes out from the next send-window slot."""
    due = svc.release(uow(), enrollment_id, parse_now(now))
    output.out.print(f"enrollment {enrollment_id}: active; first step due {due:%Y-%m-%d %H:%M} UTC")


def register_held(app: typer.Typer) -> None:
    app.command("held")(held)
    app.command("release")(release)
