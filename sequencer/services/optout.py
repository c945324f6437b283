"""Opting out, whatever the channel: one function, one outcome.

The channels: the unsubscribe page's button and the RFC 8058 one-click POST (``/u/<token>``),
a mailto unsubscribe (subject "unsubscribe"), a reply asking to be removed (English, French,
German, Spanish, Portuguese, Italian, Dutch, bare STOP/UNSUBSCRIBE/REMOVE), and an ARF
complaint. Every one of them calls :func:`opt_out`, which

* suppresses the address globally (no campaign emails it again),
* stops every live enrollment of it (active, paused or held, in every campaign) as
  ``unsubscribed``, which is what the report counts, and
* cancels those enrollments' drafts that could still go out.

It is idempotent: a second opt-out of the same address changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sequencer.core.ports import Store, UnitOfWork
from sequencer.core.states import EnrollmentState
from sequencer.errors import SequencerError
from sequencer.services.campaigns import normalize_suppression
from sequencer.services.sending import stop_enrollment

UowFactory = Callable[[], UnitOfWork]


@dataclass(frozen=True)
class OptOut:
    address: str
    newly_suppressed: bool
    stopped: tuple[int, ...]  # enrollment ids stopped as unsubscribed
    cancelled: int  # drafts cancelled


def opt_out(repo: Store, address: str, reason: str, source: str, now: datetime) -> OptOut:
    """Suppress ``address`` and stop everything going to it, in the caller's transaction."""
    key = address.strip().casefold()
    if "@" not in key or key.startswith("@"):
        raise SequencerError(f"{address!r} is not an address to opt out")
    added = repo.add_suppression(key, reason[:200], source[:200], now)
    stopped: list[int] = []
    cancelled = 0
    for enrollment in repo.live_enrollments_for(key):
        cancelled += stop_enrollment(
            repo,
            enrollment.id,
            EnrollmentState.UNSUBSCRIBED,
            f"unsubscribed, address suppressed: {reason}",
            now,
        )
        stopped.append(enrollment.id)
    return OptOut(key, added, tuple(stopped), cancelled)


def opt_out_address(
    uow_factory: UowFactory, value: str, reason: str, source: str, now: datetime
) -> OptOut:
    """:func:`opt_out` in its own transaction, for an address typed or carried by a link.

    Raises ``SequencerError`` for a value that is not a valid address."""
    key = normalize_suppression(value)
    with uow_factory() as uow:
        result = opt_out(uow.repo, key, reason, source, now)
        uow.commit()
    return result
