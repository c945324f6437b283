"""drafting: due enrollments → rendered, serialized drafts stored.

refseq's side is one drafting pass, ``services.drafting.draft_due`` (what the beat's
``refseq.draft_due`` task and ``refseq tick --only draft`` run): find the due enrollments, render
each one's next step in the sandbox (subject, text, HTML), build the message (headers, footers,
threading) and store the draft and its audit event, in batches of 200 per transaction. The
enrollments were launched for real beforehand (untimed); each repetition drafts a fresh copy
of that database.

The raw baseline, same enrollments, same run: a tight loop that renders the same template files
with a plain ``jinja2.Environment`` (same options and filters, no sandbox) on the same context
(built beforehand, untimed) and builds the same message bytes with the stdlib: an
``email.message.EmailMessage`` with the same headers, text part and HTML alternative,
``as_bytes()``. Nothing is stored.

Target: ratio ≥ 0.6.
"""

from __future__ import annotations

import email.policy
import email.utils
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from benchmarks.data import NOW, copy_of, draft_config, fresh_database, launch
from benchmarks.harness import Context, Result, alternate, peak_rss_mb

STAGE = "drafting"
# Every first step is due by then, whatever the prospect's time zone.
LATER = NOW + timedelta(days=3)


def _note(msg: str) -> None:
    print(f"drafting: {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Job:
    """What the baseline needs for one draft, prepared untimed."""

    template: str
    has_html: bool
    context: dict[str, Any]
    from_name: str
    from_email: str
    to_name: str
    to_email: str
    message_id: str
    list_unsubscribe: str
    footer_text: str
    footer_html: str


def _jobs(url: str) -> tuple[list[Job], list[Path]]:
    from sequencer.adapters.db.session import make_uow_factory
    from sequencer.core.compose import footer_html, footer_text, make_message_id
    from sequencer.core.drafts import step_context, step_of, unsubscribe_mailto, unsubscribe_url
    from sequencer.core.render import template_dirs
    from sequencer.core.specjson import spec_from_json
    from sequencer.core.states import EnrollmentState

    cfg = draft_config()
    uow_factory = make_uow_factory(url)
    jobs = []
    try:
        with uow_factory() as uow:
            campaign = uow.repo.campaign_by_id(1)
            assert campaign is not None
            spec = spec_from_json(campaign.spec)
            for e in uow.repo.list_enrollments(campaign.id, [EnrollmentState.ACTIVE]):
                step = step_of(spec, e, 0)
                assert step is not None
                link = unsubscribe_url(cfg, e.prospect_email, spec.name)
                p = e.prospect
                jobs.append(
                    Job(
                        template=step.template,
                        has_html=any(
                            (d / step.template / "body.html").is_file()
                            for d in template_dirs(cfg.shipped_templates, spec.templates_dir)
                        ),
                        context=step_context(spec, e, 0, cfg),
                        from_name=spec.rep.name,
                        from_email=spec.rep.email,
                        to_name=" ".join(
                            x for x in (p.get("first_name", ""), p.get("last_name", "")) if x
                        ),
                        to_email=e.prospect_email,
                        message_id=make_message_id(spec.rep.email.rsplit("@", 1)[-1]),
                        list_unsubscribe=f"<{link}>, <{unsubscribe_mailto(spec)}>",
                        footer_text=footer_text(link, spec.postal_address),
                        footer_html=footer_html(link, spec.postal_address),
                    )
                )
        dirs = list(template_dirs(cfg.shipped_templates, spec.templates_dir))
    finally:
        uow_factory.dispose()
    return jobs, dirs


def plain_environment(dirs: list[Path]) -> Any:
    """A plain Jinja2 environment with the same options and filters as refseq's sandbox."""
    import jinja2

    from sequencer.core import render

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in dirs]),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm"), default_for_string=False, default=False
        ),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(
        fallback=render.fallback,
        first_name=render.first_name,
        possessive=render.possessive,
        join_names=render.join_names,
        capfirst=render.capfirst,
    )
    return env


def build(job: Job, env: Any, date: str) -> EmailMessage:
    """Render the job's template files and build its message (not yet serialized)."""
    ctx = job.context
    subject = env.get_template(f"{job.template}/subject.txt").render(ctx).strip()
    text = env.get_template(f"{job.template}/body.txt").render(ctx)
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = Address(job.from_name, addr_spec=job.from_email)
    msg["To"] = Address(job.to_name, addr_spec=job.to_email)
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = job.message_id
    msg["List-Unsubscribe"] = job.list_unsubscribe
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text.rstrip("\n") + "\n\n" + job.footer_text)
    if job.has_html:
        html = env.get_template(f"{job.template}/body.html").render(ctx)
        msg.add_alternative(html + job.footer_html, subtype="html")
    return msg


def baseline_loop(jobs: list[Job], env: Any) -> int:
    """Render + build the message bytes for every job (kept only as a total length)."""
    date = email.utils.format_datetime(LATER)
    return sum(len(build(job, env, date).as_bytes()) for job in jobs)


def _same_subjects(url: str, jobs: list[Job], env: Any) -> None:
    """Untimed sanity check: the baseline renders what refseq stored (same subjects)."""
    from sqlalchemy import text

    from sequencer.adapters.db.session import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            stored = dict(conn.execute(text("SELECT to_email, subject FROM drafts")).all())
    finally:
        engine.dispose()
    date = email.utils.format_datetime(LATER)
    for job in jobs[:50]:
        msg = build(job, env, date)
        assert " ".join(str(msg["Subject"]).split()) == stored[job.to_email], (
            job.to_email,
            msg["Subject"],
            stored[job.to_email],
        )


def run(ctx: Context) -> list[Result]:
    from sequencer.adapters.db.session import make_uow_factory
    from sequencer.services.drafting import draft_due

    n = ctx.pick(150, 3_000, 10_000)
    cfg = draft_config()
    results = []
    for kind in ctx.dbs:
        with fresh_database(kind, ctx.workdir, ctx.pg_admin_url) as url:
            _note(f"{kind}: launching {n:,} prospects (untimed)")
            launch(url, Path(ctx.workdir) / f"campaign-{kind}", n)
            jobs, dirs = _jobs(url)
            env = plain_environment(dirs)
            created: list[int] = []

            def ours(
                url: str = url,
                kind: str = kind,
                created: list[int] = created,
                jobs: list[Job] = jobs,
                env: Any = env,
            ) -> float:
                _note(f"{kind}: refseq draft_due over {len(jobs):,} due enrollments")
                with copy_of(url, ctx.workdir, ctx.pg_admin_url) as copy:  # no drafts yet
                    uow_factory = make_uow_factory(copy)
                    try:
                        started = time.perf_counter()
                        report = draft_due(uow_factory, cfg, LATER)
                        seconds = time.perf_counter() - started
                    finally:
                        uow_factory.dispose()
                    if not created:
                        _same_subjects(copy, jobs, env)
                assert not report.errors, report.errors[:3]
                created.append(report.created)
                return seconds

            def raw(kind: str = kind, env: Any = env, jobs: list[Job] = jobs) -> float:
                _note(f"{kind}: raw Jinja2 + EmailMessage.as_bytes() loop")
                started = time.perf_counter()
                baseline_loop(jobs, env)
                return time.perf_counter() - started

            seconds, baseline = alternate(ours, raw, ctx.reps)
            assert set(created) == {len(jobs)}, (created, len(jobs))
            ratio = baseline / seconds
            results.append(
                Result(
                    stage=STAGE,
                    db=kind,
                    items=len(jobs),
                    unit="drafts",
                    seconds=seconds,
                    baseline_seconds=baseline,
                    baseline="plain Jinja2 render + EmailMessage.as_bytes()",
                    target=">= 0.6",
                    met=ratio >= 0.6,
                    peak_rss_mb=peak_rss_mb(),
                    extra={"prospects": n},
                )
            )
    return results
