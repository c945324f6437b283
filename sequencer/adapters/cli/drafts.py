"""`refseq tick|queue|show|approve|reject|edit|preview`: drafts and the rep's approval queue."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import typer

from sequencer.adapters.cli import output
from sequencer.adapters.cli.common import draft_config, handle_errors, parse_now, uow
from sequencer.core.ports import DraftView
from sequencer.core.states import DraftKind, DraftState
from sequencer.errors import SequencerError
from sequencer.services import approval

JSON = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")


def _actor() -> str:
    return os.environ.get("REFSEQ_ACTOR") or os.environ.get("USER") or "cli"


def _row(v: DraftView) -> dict[str, Any]:
    d, e = v.draft, v.enrollment
    return {
        "id": d.id,
        "revision": d.revision,
        "campaign": v.campaign,
        "rep": v.rep_email,
        "prospect": d.to_email,
        "temperature": e.temperature,
        "referrer": e.referrer.get("name", ""),
        "named": e.may_name_referrer,
        "kind": d.kind.value,  # step | note (a thank-you to the referrer: no step number)
        "step": d.step_number if d.kind is DraftKind.STEP else None,
        "template": d.template,
        "state": d.state.value,
        "subject": d.subject,
        "due_at": d.due_at.isoformat(),
    }


@handle_errors
def queue(
    rep: str | None = typer.Option(None, "--rep", help="Only this rep's drafts (email)."),
    campaign: str | None = typer.Option(None, "--campaign", help="Only this campaign."),
    state: list[str] = typer.Option(
        ["pending_approval"], "--state", help="Draft state(s) to list."
    ),
    attention: bool = typer.Option(
        False, "--attention", help="Sends whose outcome is unknown: a human must decide."
    ),
    as_json: bool = JSON,
) -> None:
    """Drafts waiting for a rep, newest first."""
    if attention:
        state = ["needs_attention"]
    try:
        states = [DraftState(s) for s in state]
    except ValueError:
        raise typer.BadParameter(
            f"states are: {', '.join(s.value for s in DraftState)}", param_hint="--state"
        ) from None
    rows = [_row(v) for v in approval.queue(uow(), rep, campaign, states)]
    if as_json:
        output.emit_json(rows)
        return
    output.table(
        f"Drafts ({len(rows)})",
        ("id", "campaign", "prospect", "temp", "referrer", "step", "subject", "due (UTC)"),
        (
            (
                r["id"],
                r["campaign"],
                r["prospect"],
                r["temperature"],
                r["referrer"] + ("" if r["named"] else " (unnamed)"),
                r["step"] or r["kind"],  # a note has no step number
                r["subject"],
                r["due_at"][:16].replace("T", " "),
            )
            for r in rows
        ),
    )


@handle_errors
def show(draft_id: int, as_json: bool = JSON) -> None:
    """The full draft as the prospect will see it, with the referral context behind it."""
    view, events = approval.show(uow(), draft_id)
    message = approval.rendered_message(uow(), view)
    e = view.enrollment
    if as_json:
        output.emit_json(
            {
                **_row(view),
                "text": view.draft.text,
                "html": view.draft.html,
                "message": message.as_string(),
                "referral": {
                    "context": e.referral.get("context"),
                    "reason": e.reason,
                    "referrer": e.referrer,
                    "others": e.other_referrals,
                },
                "events": [
                    {
                        "actor": ev.actor,
                        "action": ev.action,
                        "at": ev.at.isoformat(),
                        "before": ev.before,
                        "after": ev.after,
                    }
                    for ev in events
                ],
            }
        )
        return
    r = e.referrer
    output.table(
        f"Draft {view.draft.id} · revision {view.draft.revision} · {view.draft.state.value}",
        ("", ""),
        [
            ("campaign", view.campaign),
            (
                ("step", f"{view.draft.step_number} ({view.draft.template})")
                if view.draft.kind is DraftKind.STEP
                else ("kind", f"note to the referrer ({view.draft.template})")
            ),
            ("referral", f"{e.temperature} via {r.get('name')} — {e.reason}"),
            ("referrer ↔ us", r.get("our_context", "")),
            ("referrer ↔ prospect", e.referral.get("context", "")),
            ("referrer named", "yes" if e.may_name_referrer else "no (not consented)"),
        ],
    )
    output.out.print(message.as_string(), markup=False, highlight=False)
    for ev in events:
        output.out.print(f"  {ev.at:%Y-%m-%d %H:%M} {ev.actor}: {ev.action}", markup=False)
    if view.draft.state is DraftState.PENDING_APPROVAL:
        output.out.print(f"approve with: refseq approve {view.draft.id}@{view.draft.revision}")


def _parse_ids(tokens: list[str]) -> tuple[list[int], dict[int, int]]:
    ids, expected = [], {}
    for token in tokens:
        draft, _, rev = token.partition("@")
        try:
            ids.append(int(draft))
            if rev:
                expected[int(draft)] = int(rev)
        except ValueError:
            raise typer.BadParameter(f"{token!r}: use ID or ID@REVISION, e.g. 12@2") from None
    return ids, expected


@handle_errors
def approve(
    drafts: list[str] = typer.Argument(
        None, help="Draft IDs; ID@REVISION fails if it changed since."
    ),
    all_: bool = typer.Option(False, "--all", help="Approve every pending draft of --campaign."),
    campaign: str | None = typer.Option(None, "--campaign"),
) -> None:
    """Approve drafts so they can be sent (approving twice is harmless)."""
    now = parse_now(None)
    if all_:
        if not campaign or drafts:
            raise typer.BadParameter("use --all together with --campaign NAME and no IDs")
        results = approval.approve_campaign(uow(), campaign, _actor(), now)
    else:
        if not drafts:
            raise typer.BadParameter("give draft IDs, or --all --campaign NAME")
        ids, expected = _parse_ids(drafts)
        results = approval.approve(uow(), ids, _actor(), now, expected=expected)
    for r in results:
        (output.out.print if r.ok else output.problem)(f"draft {r.draft_id}: {r.message}")
    if not results:
        output.out.print("nothing to approve")
    if any(not r.ok for r in results):
        raise typer.Exit(1)


@handle_errors
def reject(
    draft: str, reason: str = typer.Option(..., "--reason", help="Why (kept in the audit trail).")
) -> None:
    """Reject a draft; it will never be sent."""
    (draft_id,), expected = _parse_ids([draft])
    record = approval.reject(
        uow(), draft_id, reason, _actor(), parse_now(None), expected_revision=expected.get(draft_id)
    )
    output.out.print(f"draft {record.id}: rejected")


def _editor_round(view: DraftView) -> tuple[str, str]:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w+", suffix=".txt", delete=False, encoding="utf-8") as fh:
        fh.write(f"Subject: {view.draft.subject}\n\n{view.draft.text}")
        path = Path(fh.name)
    try:
        subprocess.run([*editor.split(), str(path)], check=True)
        content = path.read_text(encoding="utf-8")
    finally:
        path.unlink(missing_ok=True)
    head, _, body = content.partition("\n\n")
    if not head.startswith("Subject:"):
        raise SequencerError("keep the first line as 'Subject: …' followed by a blank line")
    return head[len("Subject:") :].strip(), body


@handle_errors
def edit(
    draft: str,
    subject: str | None = typer.Option(None, "--subject", help="New subject."),
    body_file: Path | None = typer.Option(
        None, "--body-file", help="New text body from a file ('-' = stdin)."
    ),
) -> None:
    """Edit a draft's subject and body (opens $EDITOR without options); re-validated, audited."""
    (draft_id,), expected = _parse_ids([draft])
    body = None
    if body_file is not None:
        body = (
            typer.get_text_stream("stdin").read()
            if str(body_file) == "-"
            else body_file.read_text("utf-8")
        )
    if subject is None and body is None:
        view, _ = approval.show(uow(), draft_id)
        subject, body = _editor_round(view)
        expected.setdefault(draft_id, view.draft.revision)
    record = approval.edit(
        uow(),
        draft_id,
        _actor(),
        parse_now(None),
        subject=subject,
        text=body,
        expected_revision=expected.get(draft_id),
    )
    output.out.print(
        f"draft {record.id}: edited (revision {record.revision}); "
        f"approve with: refseq approve {record.id}@{record.revision}"
    )


@handle_errors
def preview(
    path: Path = typer.Argument(..., help="The campaign YAML file."),
    prospect: str | None = typer.Option(
        None, "--prospect", help="Prospect email (default: the first)."
    ),
    step: int | None = typer.Option(None, "--step", help="Step number (default: all steps)."),
    as_json: bool = JSON,
) -> None:
    """Render a campaign's emails without storing anything."""
    from sequencer.services.checking import check_campaign
    from sequencer.services.rendering import preview as render_preview

    check = check_campaign(path)
    if check.spec is None or check.audience is None:
        from sequencer.errors import SpecError

        raise SpecError(check.spec_errors)
    rendered = render_preview(check.spec, check.audience, draft_config(), prospect, step)
    if not rendered:
        raise SequencerError(f"no enrollable prospect {prospect!r} in {path} (see `refseq plan`)")
    if as_json:
        output.emit_json(
            [
                {
                    "prospect": e.prospect_email,
                    "sequence": e.sequence,
                    "step": i + 1,
                    "template": r.template,
                    "subject": r.subject,
                    "text": r.text,
                    "html": r.html,
                }
                for e, i, r in rendered
            ]
        )
        return
    for e, i, r in rendered:
        output.out.rule(f"{e.prospect_email} · {e.sequence} step {i + 1} · {r.template}")
        output.out.print(f"Subject: {r.subject}\n\n{r.text}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    for name, fn in (
        ("queue", queue),
        ("show", show),
        ("approve", approve),
        ("reject", reject),
        ("edit", edit),
        ("preview", preview),
    ):
        app.command(name)(fn)
