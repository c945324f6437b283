"""A real SMTP server (aiosmtpd) on loopback whose answers a test can script."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class SinkHandler:
    """``rcpt_replies``/``data_replies`` are consumed one per command (None = accept);
    ``drop_after_data`` closes the connection after the data, without a reply."""

    received: list[Received] = field(default_factory=list)
    rcpt_replies: list[str | None] = field(default_factory=list)
    data_replies: list[str | None] = field(default_factory=list)
    drop_after_data: int = 0
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        with self.lock:
            reply = self.rcpt_replies.pop(0) if self.rcpt_replies else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            time.sleep(self.delay)  # a slow server (blocks its loop on purpose)
        with self.lock:
            if self.drop_after_data:
                self.drop_after_data -= 1
                self.received.append(
                    Received(
                        envelope.mail_from, list(envelope.rcpt_tos), envelope.content, time.time()
                    )
                )
                server.transport.close()
                return "250 never seen by the client"
            reply = self.data_replies.pop(0) if self.data_replies else None
            if reply:
                return reply
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, time.time())
            )
        return "250 2.0.0 Ok: queued"

    def message_ids(self) -> list[str]:
        return [r.message["Message-ID"] for r in self.received]


@dataclass
class Sink:
    host: str
    port: int
    handler: SinkHandler


@pytest.fixture
def smtp_sink() -> Iterator[Sink]:
    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Sink("127.0.0.1", port, handler)
    finally:
        controller.stop()
