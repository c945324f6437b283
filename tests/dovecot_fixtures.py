"""Dovecot fixtures for every test that reads a real IMAP mailbox (see ``tests/dovecot.py``)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest

from tests.dovecot import Dovecot, DovecotUnavailable

_serial = itertools.count(1)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the whole run; tests keep apart by each using their own users."""
    try:
        server = Dovecot.start()
    except DovecotUnavailable as exc:
        problem = str(exc)
    else:
        yield server
        server.stop()
        return
    pytest.fail(problem, pytrace=False)  # outside `except`: the report is just the message


@pytest.fixture
def imap_user(dovecot: Dovecot, request: pytest.FixtureRequest) -> str:
    """A brand-new mailbox user for this test (its name says which test)."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name.removeprefix("test_it_"))
    user, _ = dovecot.user(f"u{next(_serial)}-{name}"[:60].rstrip("-"))
    return user
