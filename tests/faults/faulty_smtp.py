"""A fault-injecting SMTP server (real aiosmtpd on loopback) for the fault suite.

Every stage of a transaction can be scripted, one fault per command (or for every command)::

    greeting   the 220 banner (a fault here answers instead of it, then closes)
    hello      EHLO and HELO
    mail       MAIL FROM
    rcpt       RCPT TO (also: ``refuse`` answers for one recipient, whatever the script says)
    data       the DATA command, before the 354
    content    the final reply after the message data ("after-data")

A :class:`Fault` answers ``reply`` instead of the normal reply, waits ``delay`` seconds first (the
server's loop keeps serving other connections), waits until the test sets ``hold`` (to stop a
transaction at an exact point while the test does something else), or ``drop``s the connection
instead of answering (after pushing ``reply`` when both are given, e.g. a 354 then a cut during
the message data). A ``421`` reply always closes the connection, as real servers do.

The handler records every command (:attr:`FaultyHandler.commands`) and every message that reached
the end of DATA (:attr:`FaultyHandler.arrivals`, with the verdict the client was given: accepted,
refused, or dropped with no reply). :meth:`FaultyHandler.wait_for` blocks until a stage has been
reached ``n`` times (races use it). Use ``faulty_server()`` (a context manager), or the
``faulty_smtp`` fixture (``from tests.faults.faulty_smtp import faulty_smtp`` in a conftest, or
``pytest_plugins``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

Stage = Literal["greeting", "hello", "mail", "rcpt", "data", "content"]
STAGES: tuple[Stage, ...] = ("greeting", "hello", "mail", "rcpt", "data", "content")
HOLD_LIMIT = 30.0  # a held command goes on by itself after this long (a test that forgot)
Verdict = Literal["accepted", "refused", "dropped"]


@dataclass(frozen=True)
class Fault:
    reply: str | None = None
    delay: float = 0.0
    drop: bool = False
    hold: threading.Event | None = None

    def __str__(self) -> str:
        parts = [f"reply {self.reply!r}"] if self.reply else []
        if self.delay:
            parts.append(f"after {self.delay:g}s")
        if self.hold is not None:
            parts.append("held")
        if self.drop:
            parts.append("then drop" if self.reply else "drop")
        return " ".join(parts) or "no fault"


@dataclass(frozen=True)
class Arrival:
    """A message that reached the end of DATA, and what the client was told."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    verdict: Verdict
    at: float

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"] or "")

    @property
    def delivered(self) -> bool:
        """The server has it (accepted, or kept while the reply was lost)."""
        return self.verdict != "refused"


@dataclass
class _Scripted:
    fault: Fault
    left: int | None  # None = every time


@dataclass
class FaultyHandler:
    script: dict[str, list[_Scripted]] = field(default_factory=dict)
    refuse: dict[str, str] = field(default_factory=dict)  # casefolded recipient → reply
    commands: list[tuple[Stage, str]] = field(default_factory=list)
    arrivals: list[Arrival] = field(default_factory=list)
    holds: list[threading.Event] = field(default_factory=list)  # released at teardown
    sessions: list[SMTP] = field(default_factory=list)  # closed at teardown
    _cond: threading.Condition = field(default_factory=threading.Condition)

    # -- scripting (test side) -------------------------------------------------------------

    def inject(self, stage: Stage, fault: Fault, times: int | None = 1) -> None:
        """Apply ``fault`` to the next ``times`` commands of ``stage`` (None: to all of them)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        with self._cond:
            self.script.setdefault(stage, []).append(_Scripted(fault, times))
            if fault.hold is not None:
                self.holds.append(fault.hold)

    def clear(self) -> None:
        with self._cond:
            self.script.clear()
            self.refuse.clear()

    def seen(self, stage: Stage) -> int:
        with self._cond:
            return sum(1 for s, _ in self.commands if s == stage)

    def wait_for(self, stage: Stage, n: int = 1, timeout: float = 10.0) -> None:
        """Block until ``stage`` has been reached ``n`` times in total."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.seen(stage) >= n, timeout):
                raise AssertionError(f"the server never reached {stage} #{n}: {self.commands}")

    def delivered(self) -> Counter[str]:
        """Message-ID → how many copies the server has (accepted or dropped after data)."""
        with self._cond:
            return Counter(a.message_id for a in self.arrivals if a.delivered)

    # -- server side -----------------------------------------------------------------------

    def take(self, stage: Stage, argument: str) -> Fault | None:
        with self._cond:
            self.commands.append((stage, argument))
            self._cond.notify_all()
            queue = self.script.get(stage, [])
            if not queue:
                return None
            head = queue[0]
            if head.left is not None:
                head.left -= 1
                if head.left <= 0:
                    queue.pop(0)
            return head.fault

    def arrived(self, envelope: Any, verdict: Verdict) -> None:
        with self._cond:
            self.arrivals.append(
                Arrival(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or envelope.content or b""),
                    verdict,
                    time.time(),
                )
            )
            self._cond.notify_all()

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self.refuse.get(address.casefold())
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        fault = self.take("content", envelope.mail_from or "")
        if fault is None:
            self.arrived(envelope, "accepted")
            return "250 2.0.0 Ok: queued"
        # The server has the data now, whatever the client hears (or not) about it.
        refused = fault.reply is not None and not fault.reply.startswith("2") and not fault.drop
        self.arrived(envelope, "refused" if refused else "dropped" if fault.drop else "accepted")
        await _wait(fault)
        if fault.drop:
            assert server.transport is not None
            server.transport.abort()  # the reply below is never written
            return "250 never seen by the client"
        return fault.reply or "250 2.0.0 Ok: queued"


async def _wait(fault: Fault) -> None:
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.hold is not None:
        deadline = time.monotonic() + HOLD_LIMIT
        while not fault.hold.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)


class FaultySMTP(SMTP):
    """aiosmtpd's server with a hook before the reply to each scripted command."""

    @property
    def faults(self) -> FaultyHandler:
        handler: FaultyHandler = self.event_handler
        return handler

    async def _inject(self, stage: Stage, argument: str) -> bool:
        """Apply the scripted fault; True when it answered (or dropped) instead of the server."""
        fault = self.faults.take(stage, argument)
        if fault is None:
            return False
        await _wait(fault)
        if fault.reply is not None:
            await self.push(fault.reply)
        if (fault.drop or (fault.reply or "").startswith("421")) and self.transport is not None:
            self.transport.close()
            return True
        return fault.reply is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.faults.sessions.append(self)

    async def _handle_client(self) -> None:
        if await self._inject("greeting", ""):
            if self.transport is not None:
                self.transport.close()  # a refused banner ends the connection
            return
        await super()._handle_client()

    async def smtp_EHLO(self, hostname: str) -> None:
        if not await self._inject("hello", f"EHLO {hostname}"):
            await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        if not await self._inject("hello", f"HELO {hostname}"):
            await super().smtp_HELO(hostname)

    async def smtp_MAIL(self, arg: str | None) -> None:
        if not await self._inject("mail", arg or ""):
            await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if not await self._inject("rcpt", arg or ""):
            await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        if not await self._inject("data", arg or ""):
            await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return FaultySMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class FaultyServer:
    host: str
    port: int
    handler: FaultyHandler


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def faulty_server() -> Iterator[FaultyServer]:
    handler = FaultyHandler()
    port = _free_port()
    controller = _Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    handler.commands.clear()  # the controller's own start-up probe
    try:
        yield FaultyServer("127.0.0.1", port, handler)
    finally:
        for hold in handler.holds:  # release anything still held
            hold.set()

        async def close_sessions() -> None:
            for session in handler.sessions:
                if session.transport is not None:
                    session.transport.close()
            await asyncio.sleep(0.05)  # let connection_lost() run

        asyncio.run_coroutine_threadsafe(close_sessions(), controller.loop).result(timeout=5)
        controller.stop()


@pytest.fixture
def faulty_smtp() -> Iterator[FaultyServer]:
    """A fault-injecting SMTP server for one test (see the module docstring)."""
    with faulty_server() as server:
        yield server
