"""Pytest plugin: no test talks to a loopback port that the test session did not open.

``make test`` once failed because something else listened on 127.0.0.1:2525, the example
campaign's SMTP port, and a test sent a real message to it. So every peer a test starts takes a
free port, and this guard makes the whole class of bug fail loudly:

* every ``bind`` of an IPv4/IPv6 socket in this process records its port (``free_port()``,
  aiosmtpd, uvicorn, the TCP proxies, the port a Dovecot is told to use: all bind here first);
* a ``connect``/``connect_ex`` to a loopback (or unspecified) address on any other port is
  refused before a packet leaves (``ForeignPortError``, a ``ConnectionRefusedError``, so the
  code under test sees a closed port and nothing reaches a stranger), *and* the test fails at
  teardown naming the port and the test, however the code under test handled the refusal;
* the shared services the tests are configured with are allowed: PostgreSQL
  (``$REFSEQ_TEST_PG_URL``, else 5432) and Redis (``$REFSEQ_TEST_REDIS_URL``, else 6379).

Only this process is guarded: a child process (``refseq run`` started by a test, Chromium) is
not, but the ports it is given come from ``free_port()`` here.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest

_INET = (socket.AF_INET, socket.AF_INET6)
_lock = threading.Lock()
_opened: set[int] = set()
_violations: list[str] = []
_current = ["(outside a test)"]
_original: dict[str, Any] = {}


class ForeignPortError(ConnectionRefusedError):
    """A test tried to connect to a loopback port that no part of the test session opened."""


def service_ports() -> dict[int, str]:
    """The shared services tests may use without opening them."""
    ports = {}
    for env, default, what in (
        ("REFSEQ_TEST_PG_URL", "postgresql://127.0.0.1:5432/test", "PostgreSQL"),
        ("REFSEQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/13", "Redis"),
    ):
        port = urlsplit(os.environ.get(env) or default).port
        if port:
            ports[port] = what
    return ports


def opened_ports() -> set[int]:
    with _lock:
        return set(_opened)


def _is_local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain", ""):
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _refusal(sock: socket.socket, address: Any) -> str | None:
    """Why connecting ``sock`` to ``address`` is refused, or None if it is allowed."""
    if sock.family not in _INET or not isinstance(address, tuple) or len(address) < 2:
        return None
    host, port = address[0], address[1]
    if not _is_local(host) or not isinstance(port, int):
        return None
    with _lock:
        if port in _opened or port in service_ports():
            return None
        message = (
            f"{_current[0]} connected to {host}:{port}, a loopback port this test session did "
            "not open: something else may be listening there (the example campaign's 2525, "
            "1143 ...). Start the peer on a free port (tests/smtp_sink.free_port) and point "
            "the campaign at it; for 'nothing listens here' use tests/ports.closed_port()."
        )
        _violations.append(message)
    return message


def _bind(self: socket.socket, address: Any) -> None:
    _original["bind"](self, address)
    if self.family in _INET:
        port = self.getsockname()[1]
        with _lock:
            _opened.add(int(port))


def _connect(self: socket.socket, address: Any) -> None:
    message = _refusal(self, address)
    if message is not None:
        raise ForeignPortError(errno.ECONNREFUSED, message)
    _original["connect"](self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    if _refusal(self, address) is not None:
        return errno.ECONNREFUSED
    result: int = _original["connect_ex"](self, address)
    return result


def install() -> None:
    if _original:
        return
    for name, patched in (("bind", _bind), ("connect", _connect), ("connect_ex", _connect_ex)):
        _original[name] = getattr(socket.socket, name)
        setattr(socket.socket, name, patched)


def uninstall() -> None:
    for name, original in _original.items():
        setattr(socket.socket, name, original)
    _original.clear()


@contextmanager
def expect_refusals() -> Iterator[list[str]]:
    """For tests of the guard itself: the refusals inside the block are handed over, not failed."""
    with _lock:
        start = len(_violations)
    seen: list[str] = []
    try:
        yield seen
    finally:
        with _lock:
            seen.extend(_violations[start:])
            del _violations[start:]


def pytest_configure(config: pytest.Config) -> None:
    install()


def pytest_unconfigure(config: pytest.Config) -> None:
    uninstall()


@pytest.fixture(autouse=True)
def _no_foreign_ports(request: pytest.FixtureRequest) -> Iterator[None]:
    with _lock:
        start = len(_violations)
        _current[0] = request.node.nodeid
    yield
    with _lock:
        new = _violations[start:]
        _current[0] = "(outside a test)"
    if new:
        pytest.fail("\n".join(dict.fromkeys(new)), pytrace=False)
