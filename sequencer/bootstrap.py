"""Composition root: Settings → the adapters the services need. Used by the CLI, web and workers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sequencer.config import Settings, require_public_links
from sequencer.core.drafts import DraftConfig
from sequencer.core.ports import MailboxReader, Mailer, UnitOfWork
from sequencer.resources import email_templates_dir

if TYPE_CHECKING:
    from sequencer.services.runner import Deps


def shipped_templates_dir() -> Path:
    """The shipped email templates (see sequencer/resources.py), or $REFSEQ_TEMPLATES_DIR."""
    import os

    override = os.environ.get("REFSEQ_TEMPLATES_DIR")
    if override:
        return Path(override)
    return email_templates_dir()


def draft_config(settings: Settings) -> DraftConfig:
    return DraftConfig(
        secret_key=settings.secret_key,
        base_url=settings.base_url,
        shipped_templates=shipped_templates_dir(),
    )


def runner_deps(settings: Settings, dev: bool = False) -> Deps:
    """Everything one pass of the workers' job needs (SMTP is connected lazily).

    Refuses (ConfigError) while REFSEQ_BASE_URL is loopback, unless ``dev``: the drafts and
    notices it makes carry unsubscribe links nobody else could open."""
    import os

    from sequencer.services.runner import Deps
    from sequencer.services.sending import SendConfig

    def mailer() -> Mailer:
        from sequencer.adapters.smtp import SmtpMailer

        mailer: Mailer = SmtpMailer()
        return mailer

    def reader() -> MailboxReader:
        from sequencer.adapters.imap import ImapMailboxReader

        mailbox: MailboxReader = ImapMailboxReader()
        return mailbox

    from sequencer.adapters.webhook import UrllibPoster
    from sequencer.services.inbox import InboxConfig

    require_public_links(settings, dev)

    env = dict(os.environ)
    drafts = draft_config(settings)
    return Deps(
        uow_factory=uow_factory(settings),
        draft_cfg=drafts,
        send_cfg=SendConfig(env=env),
        mailer_factory=mailer,
        reader_factory=reader,
        poster=UrllibPoster(),
        inbox_cfg=InboxConfig(env=env, draft_cfg=drafts),
        send_concurrency=settings.send_concurrency,
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


_factories: dict[str, object] = {}


@lru_cache(maxsize=8)
def _uow_factory(url: str) -> Callable[[], UnitOfWork]:
    from sequencer.adapters.db.migrate import ensure_schema
    from sequencer.adapters.db.session import make_uow_factory

    ensure_schema(url)
    factory = make_uow_factory(url)
    _factories[url] = factory
    return factory


def dispose_all() -> None:
    """Close every pooled connection (tests, and processes that fork)."""
    for factory in _factories.values():
        factory.dispose()  # type: ignore[attr-defined]
    _factories.clear()
    _uow_factory.cache_clear()


def uow_factory(settings: Settings) -> Callable[[], UnitOfWork]:
    """A unit-of-work factory on an up-to-date schema (an empty SQLite file is upgraded)."""
    return _uow_factory(settings.database_url)
