"""Ports for tests: a free one to listen on, a closed one that is ours (see tests/portguard.py)."""

from __future__ import annotations

import random
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


_HELD: list[socket.socket] = []


def no_imap_port() -> int:
    """One closed loopback port held for the whole test run: where the example campaign's IMAP
    points (``init_example``) unless a test gives it a real server, so a poll is refused at
    once instead of reaching whatever listens on the example's 127.0.0.1:1143. It has four
    digits like 1143, so every line and column of the example file stays where it was (the
    bad-input catalogue checks columns)."""
    if not _HELD:
        for port in random.Random().sample(range(1024, 10000), 200):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            _HELD.append(s)
            break
        else:
            raise RuntimeError("no free 4-digit loopback port for the example's IMAP")
    return int(_HELD[0].getsockname()[1])
