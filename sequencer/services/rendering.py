"""Render every step of every enrollment's sequence against its real data, before launch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sequencer.core.drafts import DraftConfig, render_for
from sequencer.core.model import Audience, CampaignSpec
from sequencer.core.plan import PlannedEnrollment, build_plan, to_new_enrollment
from sequencer.core.ports import NewEnrollment
from sequencer.core.render import RenderedEmail, available_templates, template_dirs
from sequencer.errors import Problem, RenderError

# A template broken for everyone would otherwise print one line per prospect.
EXAMPLES_PER_PROBLEM = 3
_EPOCH = datetime(2026, 1, 5, 12, tzinfo=UTC)  # any instant: timing plays no part in rendering


def planned(
    spec: CampaignSpec, audience: Audience
) -> Iterator[tuple[PlannedEnrollment, NewEnrollment]]:
    """Every prospect that has a referral path, as launch would enroll them (ignoring the DB)."""
    plan = build_plan(spec, audience, now=_EPOCH, suppressed=set(), live_elsewhere={}, already={})
    policy = spec.temperature.name_referrer
    for p in plan.enroll:
        if not p.held:
            yield p, to_new_enrollment(p, policy)


def _template_file(spec: CampaignSpec, cfg: DraftConfig, template: str) -> str:
    """``warm_intro/body.txt`` → the file's path as a person would open it."""
    name = template.split("/", 1)[0]
    for folder in template_dirs(cfg.shipped_templates, spec.templates_dir):
        if (folder / name).is_dir():
            return str(folder / template)
    return template


@dataclass
class _Collector:
    spec: CampaignSpec
    cfg: DraftConfig

    def __post_init__(self) -> None:
        self.seen: dict[tuple[str, int | None, str], list[str]] = defaultdict(list)

    def add(self, exc: RenderError, email: str) -> None:
        self.seen[(exc.template, exc.line, exc.message)].append(email)

    def problems(self) -> list[Problem]:
        out = []
        for (template, line, message), emails in self.seen.items():
            source = _template_file(self.spec, self.cfg, template)
            for email in emails[:EXAMPLES_PER_PROBLEM]:
                out.append(Problem(source, f"{message}, for prospect {email}", line=line))
            if len(emails) > EXAMPLES_PER_PROBLEM:
                more = len(emails) - EXAMPLES_PER_PROBLEM
                out.append(
                    Problem(source, f"{message}, and for {more} more prospect(s)", line=line)
                )
        return out


def render_check(
    spec: CampaignSpec,
    audience: Audience,
    cfg: DraftConfig,
    progress: Callable[[int], None] | None = None,
) -> list[Problem]:
    """Render each step each enrollment would get; every failure with its template file:line."""
    dirs = template_dirs(cfg.shipped_templates, spec.templates_dir)
    known = available_templates(dirs)
    problems: list[Problem] = []
    for key, steps in spec.sequences.items():
        for i, step in enumerate(steps):
            if step.template not in known:
                problems.append(
                    Problem(
                        str(spec.source),
                        f"no template named {step.template!r}",
                        field=f"sequences.{key}[{i}].template",
                        hint=f"add {step.template}/subject.txt and body.txt to the campaign's "
                        f"templates folder, or use one of: {', '.join(sorted(known))}",
                    )
                )
    if problems:
        return problems
    collector = _Collector(spec, cfg)
    for n, (_, enrollment) in enumerate(planned(spec, audience), 1):
        for index in range(len(spec.sequences[enrollment.sequence])):
            try:
                render_for(spec, enrollment, index, cfg)
            except RenderError as exc:
                collector.add(exc, enrollment.prospect_email)
        if progress is not None and n % 500 == 0:
            progress(n)
    return collector.problems()


def preview(
    spec: CampaignSpec, audience: Audience, cfg: DraftConfig, email: str | None, step: int | None
) -> list[tuple[NewEnrollment, int, RenderedEmail]]:
    """Render without storing anything: one prospect (or the first) and one step (or all)."""
    out = []
    for p, enrollment in planned(spec, audience):
        if email is not None and p.prospect.key != email.casefold():
            continue
        count = len(spec.sequences[enrollment.sequence])
        indexes = [step - 1] if step is not None else list(range(count))
        for index in indexes:
            if not 0 <= index < count:
                raise RenderError(
                    enrollment.sequence,
                    None,
                    f"the {enrollment.sequence} sequence has "
                    f"{count} step(s); there is no step {index + 1}",
                )
            out.append((enrollment, index, render_for(spec, enrollment, index, cfg)))
        if email is None or out:
            break
    return out


def draft_config(secret_key: str, base_url: str, shipped: Path) -> DraftConfig:
    return DraftConfig(secret_key=secret_key, base_url=base_url, shipped_templates=shipped)
