"""The campaign report: read the facts in one unit of work, compute the figures (pure core)."""

from __future__ import annotations

from collections.abc import Callable

from sequencer.core.ports import UnitOfWork
from sequencer.core.report import BY_CHOICES, Facts, Report, build_report
from sequencer.errors import NotFound, SequencerError

UowFactory = Callable[[], UnitOfWork]
# Reads the rows of one campaign (all campaigns when None) inside the given unit of work. The
# adapter passes ``sequencer.adapters.db.report_queries.load_facts``; services stay SQL-free.
FactsLoader = Callable[[UnitOfWork, str | None], Facts]


def report(
    uow_factory: UowFactory,
    campaign: str | None,
    by: str,
    load_facts: FactsLoader,
) -> Report:
    """The funnel grouped ``by`` (temperature, step, referrer, template or campaign), warm versus
    cold, the referrer leaderboard and every referral edge, for one campaign or all of them."""
    if by not in BY_CHOICES:
        raise SequencerError(f"cannot group by {by!r}: choose one of {', '.join(BY_CHOICES)}")
    with uow_factory() as uow:
        if campaign is not None and uow.repo.get_campaign(campaign) is None:
            raise NotFound(f"no campaign named {campaign!r} (see `refseq campaigns`)")
        facts = load_facts(uow, campaign)
    return build_report(facts, by, campaign)
