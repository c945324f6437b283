"""Load and check everything a campaign needs: all problems, before anything is stored."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sequencer.core import csvlimits
from sequencer.core.audience import AudienceResult, load_audience
from sequencer.core.drafts import DraftConfig
from sequencer.core.model import Audience, CampaignSpec
from sequencer.core.plan import Exclusion, ExclusionReason
from sequencer.core.spec import load_campaign
from sequencer.errors import Problem
from sequencer.services.rendering import render_check

Progress = Callable[[int], None]


@dataclass
class CampaignCheck:
    """The result of reading a campaign file, its CSVs and its templates.

    ``spec_errors`` make the campaign unusable (nothing can launch); ``row_problems`` are rows
    that are reported and left out while the good rows still launch.
    """

    path: Path
    spec: CampaignSpec | None
    spec_errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    row_problems: list[Problem] = field(default_factory=list)
    render_errors: list[Problem] = field(default_factory=list)
    audience: Audience | None = None
    row_exclusions: list[Exclusion] = field(default_factory=list)
    data_digests: list[str] = field(default_factory=list)

    @property
    def launchable(self) -> bool:
        return self.spec is not None and not self.spec_errors and not self.render_errors

    @property
    def clean(self) -> bool:
        return self.launchable and not self.row_problems

    @property
    def problems(self) -> list[Problem]:
        return [*self.spec_errors, *self.row_problems, *self.render_errors]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _exclusions(result: AudienceResult) -> list[Exclusion]:
    """Rows the CSV loader dropped, with the loader's own message as the detail."""
    messages = {(p.source, p.row): p.message for p in result.problems}
    out = []
    for value, row, source, reason in result.excluded:
        code = ExclusionReason.DUPLICATE if reason == "duplicate" else ExclusionReason.INVALID
        detail = messages.get((source, row), reason)
        out.append(Exclusion(value, source, row, code, detail))
    return out


def check_campaign(
    path: Path,
    cfg: DraftConfig | None = None,
    progress: Progress | None = None,
    csv_limits: csvlimits.CsvLimits | None = None,
) -> CampaignCheck:
    """Read and check everything; with ``cfg``, also render every step for every prospect.
    The CSVs are read under ``csv_limits`` (by default from the environment)."""
    spec, errors, warnings = load_campaign(path)
    check = CampaignCheck(path=path, spec=spec, spec_errors=errors, warnings=warnings)
    if spec is None:
        return check
    d = spec.data
    with csvlimits.using(csv_limits or csvlimits.CsvLimits.from_env()):
        result = load_audience(
            d.prospects, d.referrers, d.referrals, label_base=path.parent, progress=progress
        )
    check.audience = result.audience
    # A file that cannot be read at all (encoding, header) is not a bad row: nothing launches.
    unreadable = set(result.unreadable)
    check.spec_errors += [p for p in result.problems if p.source in unreadable]
    check.row_problems = [p for p in result.problems if p.source not in unreadable]
    check.row_exclusions = _exclusions(result)
    if not unreadable:  # (a file refused for its size is not read, not even to hash it)
        check.data_digests = [_digest(p) for p in (d.prospects, d.referrers, d.referrals)]
    if cfg is not None:
        check.render_errors = render_check(spec, result.audience, cfg)
    return check
