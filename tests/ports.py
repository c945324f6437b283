"""Ports for tests: a free one to listen on, a closed one that is ours (see tests/portguard.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port bound by this process but not listening, held until the block ends: a
    connection to it is refused at once, and no other program can start listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])
