"""SmtpMailer against a real aiosmtpd server on a free loopback port.

The handler is scripted per test: replies to the greeting, to RCPT (per recipient), to the end
of the data (or ``DROP``: take the data and close the connection without a reply), and a
dropped connection at QUIT. Nothing sleeps for real: tenacity waits with ``sleeps.append``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from sequencer.adapters.dkim import sign_message
from sequencer.adapters.smtp import (
    OUTCOMES,
    Outcome,
    Phase,
    SmtpMailer,
    classify,
    classify_exception,
)
from sequencer.core.ports import SmtpAccount
from sequencer.errors import (
    AmbiguousDeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

DROP = "<close the connection without a reply>"
USER, PASSWORD = "rep@example.test", "s3cret"
SENDER, RECIPIENT = "bounce+42@acme.example", "pat@prospect.example"
MESSAGE = (
    b"From: Dana Whitfield <dana@acme.example>\r\n"
    b"To: Pat <pat@prospect.example>\r\n"
    b"Subject: Sam suggested we talk\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <d42.s1@acme.example>\r\n"
    b"List-Unsubscribe: <https://acme.example/u/42>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"\r\n"
    b"Hi Pat,\r\n"
    b".a line that starts with a dot, and one that is only a dot:\r\n"
    b".\r\n"
    b"Dana\r\n"
)


# -- the scripted server ----------------------------------------------------------------------


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]
    smtp_utf8: bool


@dataclass
class ScriptedHandler:
    banner: Iterator[str] = field(default_factory=lambda: iter(()))
    rcpt: dict[str, Iterator[str]] = field(default_factory=dict)
    data: Iterator[str] = field(default_factory=lambda: iter(()))
    drop_at_quit: bool = False
    delivered: list[Delivered] = field(default_factory=list)
    connections: list[SMTP] = field(default_factory=list)  # one per client that said EHLO
    data_commands: int = 0
    quits: int = 0

    async def handle_EHLO(
        self, server: SMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # the 5-argument hook must do this itself
        if not any(known is server for known in self.connections):
            self.connections.append(server)
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = next(self.rcpt.get(address, iter(())), None)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.data_commands += 1
        reply = next(self.data, None)
        if reply is not None and reply != DROP:
            return reply
        self.delivered.append(
            Delivered(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                list(envelope.mail_options),
                envelope.smtp_utf8,
            )
        )
        if reply == DROP:
            server.transport.abort()  # the reply below is never written
        return "250 2.0.0 Ok: queued as Q1"

    async def handle_QUIT(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.quits += 1
        if self.drop_at_quit:
            server.transport.abort()
        return "221 2.0.0 Bye"


class ScriptedSMTP(SMTP):
    async def _handle_client(self) -> None:
        banner = next(self.event_handler.banner, None)
        if banner is None:
            await super()._handle_client()
            return
        await self.push(banner)  # e.g. "421 busy": refuse this connection
        self.transport.close()


class ScriptedController(Controller):
    def factory(self) -> SMTP:
        return ScriptedSMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class Server:
    handler: ScriptedHandler
    port: int
    controller: ScriptedController

    def drop_idle_connections(self) -> None:
        """Close every server-side connection, as an idle timeout would."""

        async def drop() -> None:
            for smtp in self.handler.connections:
                if smtp.transport is not None:
                    smtp.transport.close()
            await asyncio.sleep(0)  # let connection_lost() run

        asyncio.run_coroutine_threadsafe(drop(), self.controller.loop).result(timeout=5)


class Authenticator:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(
        self, server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.calls += 1
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        return AuthResult(success=ok, handled=False)  # handled=False, or the client hangs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- fixtures ---------------------------------------------------------------------------------


@dataclass
class Tls:
    cert: Path
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return Tls(cert, server, ssl.create_default_context(cafile=str(cert)))


@dataclass
class DkimKey:
    private_pem: bytes
    dns_record: bytes


@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> DkimKey:
    key = tmp_path_factory.mktemp("dkim") / "key.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return DkimKey(key.read_bytes(), b"v=DKIM1; k=rsa; p=" + base64.b64encode(der))


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    controllers: list[ScriptedController] = []

    def start(**smtp_kwargs: Any) -> Server:
        handler, port = ScriptedHandler(), free_port()
        controller = ScriptedController(
            handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True, **smtp_kwargs
        )
        controller.start()
        controllers.append(controller)
        return Server(handler, port, controller)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    return start_server()


@pytest.fixture
def authenticator() -> Authenticator:
    return Authenticator()


@pytest.fixture
def tls_server(
    start_server: Callable[..., Server], tls: Tls, authenticator: Authenticator
) -> Server:
    return start_server(
        tls_context=tls.server,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_mailer(
    start_server: Callable[..., Server], sleeps: list[float]
) -> Iterator[Callable[..., SmtpMailer]]:
    """Depends on start_server so that mailers are closed before the servers stop."""
    mailers: list[SmtpMailer] = []

    def make(**kwargs: Any) -> SmtpMailer:
        kwargs = {"timeout": 5, "sleep": sleeps.append, "local_hostname": "client.test", **kwargs}
        mailer = SmtpMailer(**kwargs)
        mailers.append(mailer)
        return mailer

    yield make
    for mailer in mailers:
        mailer.close()


@pytest.fixture
def mailer(make_mailer: Callable[..., SmtpMailer]) -> SmtpMailer:
    return make_mailer()


class BeforeData:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.fixture
def before_data() -> BeforeData:
    return BeforeData()


def account(
    port: int, security: str = "none", password: str | None = None, **extra: Any
) -> SmtpAccount:
    return SmtpAccount("127.0.0.1", port, security, USER, password, **extra)


# -- plain delivery, reuse, reconnect ---------------------------------------------------------


def test_it_delivers_once_with_the_content_intact(
    server: Server, mailer: SmtpMailer, before_data: BeforeData
) -> None:
    receipt = mailer.send(account(server.port), SENDER, RECIPIENT, MESSAGE, before_data)

    assert receipt.reply == "250 2.0.0 Ok: queued as Q1"
    assert before_data.calls == 1
    [delivered] = server.handler.delivered
    assert (delivered.mail_from, delivered.rcpt_tos) == (SENDER, [RECIPIENT])
    assert delivered.content == MESSAGE  # dot-stuffing undone by the server, CRLF kept


def test_it_sends_bare_lf_messages_as_crlf(server: Server, mailer: SmtpMailer) -> None:
    mailer.send(
        account(server.port), SENDER, RECIPIENT, MESSAGE.replace(b"\r\n", b"\n"), lambda: None
    )

    assert server.handler.delivered[0].content == MESSAGE


def test_it_reuses_the_connection_across_sends(server: Server, mailer: SmtpMailer) -> None:
    mailbox = account(server.port)
    mailer.send(mailbox, SENDER, RECIPIENT, MESSAGE, lambda: None)
    mailer.send(mailbox, SENDER, "sam@prospect.example", MESSAGE, lambda: None)

    assert len(server.handler.connections) == 1
    assert [d.rcpt_tos for d in server.handler.delivered] == [[RECIPIENT], ["sam@prospect.example"]]


def test_it_reconnects_when_the_server_dropped_the_idle_connection(
    server: Server, mailer: SmtpMailer, sleeps: list[float]
) -> None:
    mailbox = account(server.port)
    mailer.send(mailbox, SENDER, RECIPIENT, MESSAGE, lambda: None)
    server.drop_idle_connections()
    mailer.send(mailbox, SENDER, RECIPIENT, MESSAGE, lambda: None)

    assert len(server.handler.connections) == 2
    assert len(server.handler.delivered) == 2
    assert sleeps == []  # NOOP found the dead connection: no failed attempt, no retry


def test_it_quits_on_close_and_ignores_an_error_at_quit(server: Server, mailer: SmtpMailer) -> None:
    server.handler.drop_at_quit = True
    receipt = mailer.send(account(server.port), SENDER, RECIPIENT, MESSAGE, lambda: None)

    mailer.close()

    assert receipt.reply.startswith("250 ")
    assert server.handler.quits == 1
    assert len(server.handler.delivered) == 1


def test_it_uses_smtputf8_for_a_non_ascii_recipient(server: Server, mailer: SmtpMailer) -> None:
    mailer.send(account(server.port), SENDER, "jürgen@münchen.example", MESSAGE, lambda: None)

    [delivered] = server.handler.delivered
    assert delivered.rcpt_tos == ["jürgen@münchen.example"]
    assert delivered.smtp_utf8


def test_it_logs_mailbox_recipient_and_reply(
    server: Server, mailer: SmtpMailer, caplog: pytest.LogCaptureFixture
) -> None:
    mailbox = account(server.port)
    with caplog.at_level(logging.INFO, logger="sequencer.adapters.smtp"):
        mailer.send(mailbox, SENDER, RECIPIENT, MESSAGE, lambda: None)

    assert mailbox.key in caplog.text
    assert RECIPIENT in caplog.text
    assert "250 2.0.0 Ok: queued as Q1" in caplog.text


# -- retries ----------------------------------------------------------------------------------


def test_it_retries_after_421_at_connect(
    server: Server, mailer: SmtpMailer, before_data: BeforeData, sleeps: list[float]
) -> None:
    server.handler.banner = iter(["421 4.3.2 Too busy, try later"])

    mailer.send(account(server.port), SENDER, RECIPIENT, MESSAGE, before_data)

    assert len(server.handler.delivered) == 1
    assert before_data.calls == 1
    assert sleeps == [1.0]


def test_it_retries_after_451_at_rcpt(
    server: Server, mailer: SmtpMailer, before_data: BeforeData, sleeps: list[float]
) -> None:
    server.handler.rcpt[RECIPIENT] = iter(["451 4.7.1 Greylisted", "451 4.7.1 Greylisted"])

    mailer.send(account(server.port), SENDER, RECIPIENT, MESSAGE, before_data)

    assert len(server.handler.delivered) == 1
    assert before_data.calls == 1
    assert sleeps == [1.0, 2.0]
    assert len(server.handler.connections) == 1  # RSET, then the same connection again


def test_it_gives_up_after_n_attempts_of_451(
    server: Server,
    make_mailer: Callable[..., SmtpMailer],
    before_data: BeforeData,
    sleeps: list[float],
) -> None:
    server.handler.rcpt[RECIPIENT] = itertools.repeat("451 4.3.0 Try again later")
    mailer = make_mailer(retry_attempts=4, retry_wait_max=3)

    with pytest.raises(TransientDeliveryError) as caught:
        mailer.send(account(server.port), SENDER, RECIPIENT, MESSAGE, before_data)

    assert caught.value.code == 451
    assert caught.value.reply == "451 4.3.0 Try again later"
    assert sleeps == [1.0, 2.0, 3.0]  # exponential, capped at retry_wait_max
    assert before_data.calls == 0
    assert server.handler.delivered == []


def test_it_retries_a_refused_connection(mailer: SmtpMailer, sleeps: list[float]) -> None:
    with pytest.raises(TransientDeliveryError) as caught:
        mailer.send(account(free_port()), SENDER, RECIPIENT, MESSAGE, lambda: None)

    assert caught.value.code is None
    assert "ConnectionRefusedError" in str(caught.value)
    assert sleeps == [1.0, 2.0]


# -- permanent and ambiguous ------------------------------------------------------------------


def test_it_reports_an_unknown_recipient_as_permanent(
    server: Server, mailer: SmtpMailer, before_data: BeforeData, sleeps: list[float]
) -> None:
    server.handler.rcpt[RECIPIENT] = iter(["550 5.1.1 <pat@prospect.example>: No such user"])

    with pytest.raises(PermanentDeliveryError) as caught:
        mailer.send(account(server.port), SENDER, RECIPIENT, MESSAGE, before_data)

    assert caught.value.recipient_unknown
    assert caught.value.code == 550
    assert "No such user" in caught.value.reply
    assert (before_data.calls, sleeps, server.handler.delivered) == (0, [], [])
    # the refused transaction was reset: the same connection sends the next message
    mailer.send(account(server.port), SENDER, "sam@prospect.example", MESSAGE, lambda: None)
    assert len(server.handler.connections) == 1


def test_it_reports_552_at_end_of_data_as_permanent(
    server: Server, mailer: SmtpMailer, before_data: BeforeData, sleeps: list[float]
) -> None:
    server.handler.data = iter(["552 5.3.4 Message size exceeds fixed limit"])

    with pytest.raises(PermanentDeliveryError) as caught:
        mailer.send(account(server.port), SENDER, RECIPIENT, MESSAGE, before_data)

    assert caught.value.code == 552
    assert not caught.value.recipient_unknown
    assert (before_data.calls, sleeps, server.handler.delivered) == (1, [], [])


def test_it_does_not_retry_451_at_end_of_data(
    server: Server, mailer: SmtpMailer, before_data: BeforeData, sleeps: list[float]
) -> None:
    server.handler.data = iter(["451 4.3.0 Local error in processing"])

    with pytest.raises(TransientDeliveryError) as caught:
        mailer.send(account(server.port), SENDER, RECIPIENT, MESSAGE, before_data)

    assert caught.value.code == 451
    assert (before_data.calls, sleeps, server.handler.data_commands) == (1, [], 1)


def test_it_reports_a_lost_connection_after_the_data_as_ambiguous(
    server: Server, mailer: SmtpMailer, before_data: BeforeData, sleeps: list[float]
) -> None:
    server.handler.data = iter([DROP])

    with pytest.raises(AmbiguousDeliveryError):
        mailer.send(account(server.port), SENDER, RECIPIENT, MESSAGE, before_data)

    assert before_data.calls == 1
    assert sleeps == []
    assert server.handler.data_commands == 1  # never retried
    assert len(server.handler.delivered) == 1  # ...and the server did have the message
    # the next send opens a fresh connection
    mailer.send(account(server.port), SENDER, RECIPIENT, MESSAGE, lambda: None)
    assert len(server.handler.connections) == 2


def test_it_lets_a_before_data_failure_through_and_sends_nothing(
    server: Server, mailer: SmtpMailer
) -> None:
    def fail() -> None:
        raise RuntimeError("database is locked")

    with pytest.raises(RuntimeError, match="database is locked"):
        mailer.send(account(server.port), SENDER, RECIPIENT, MESSAGE, fail)

    assert server.handler.data_commands == 0
    mailer.send(account(server.port), SENDER, RECIPIENT, MESSAGE, lambda: None)
    assert len(server.handler.delivered) == 1
    assert len(server.handler.connections) == 1


def test_it_never_reuses_a_transaction_interrupted_by_a_foreign_exception(
    server: Server, mailer: SmtpMailer, monkeypatch: pytest.MonkeyPatch
) -> None:
    class SoftTimeLimitExceeded(Exception):
        pass

    real_rcpt = smtplib.SMTP.rcpt

    def rcpt_then_time_out(self: smtplib.SMTP, recip: str, options: Any = ()) -> Any:
        real_rcpt(self, recip, options)  # the server now holds an open transaction
        raise SoftTimeLimitExceeded

    monkeypatch.setattr(smtplib.SMTP, "rcpt", rcpt_then_time_out)
    with pytest.raises(SoftTimeLimitExceeded):
        mailer.send(account(server.port), SENDER, RECIPIENT, MESSAGE, lambda: None)
    monkeypatch.undo()

    mailer.send(
        account(server.port), SENDER, RECIPIENT, MESSAGE, lambda: None
    )  # no "503 nested MAIL"
    assert len(server.handler.delivered) == 1
    assert len(server.handler.connections) == 2


# -- TLS and AUTH -----------------------------------------------------------------------------


def test_it_sends_with_starttls_and_auth(
    tls_server: Server,
    tls: Tls,
    authenticator: Authenticator,
    make_mailer: Callable[..., SmtpMailer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    mailer = make_mailer(ssl_context=tls.client)
    mailbox = account(tls_server.port, "starttls", PASSWORD)

    with caplog.at_level(logging.DEBUG):
        mailer.send(mailbox, SENDER, RECIPIENT, MESSAGE, lambda: None)
        mailer.send(mailbox, SENDER, RECIPIENT, MESSAGE, lambda: None)

    assert len(tls_server.handler.delivered) == 2
    assert authenticator.calls == 1  # one connection, authenticated once
    assert PASSWORD not in caplog.text


def test_it_reports_a_wrong_password_as_transient_535_retried_once(
    tls_server: Server,
    tls: Tls,
    make_mailer: Callable[..., SmtpMailer],
    before_data: BeforeData,
    sleeps: list[float],
) -> None:
    mailer = make_mailer(ssl_context=tls.client, retry_attempts=5)

    with pytest.raises(TransientDeliveryError) as caught:
        mailer.send(
            account(tls_server.port, "starttls", "wrong"), SENDER, RECIPIENT, MESSAGE, before_data
        )

    assert caught.value.code == 535
    assert "535 5.7.8" in caught.value.reply
    assert sleeps == [1.0]  # two attempts in all
    assert len(tls_server.handler.connections) == 2
    assert (before_data.calls, tls_server.handler.delivered) == (0, [])


def test_it_refuses_to_send_in_clear_when_starttls_is_missing(
    server: Server, mailer: SmtpMailer, before_data: BeforeData
) -> None:
    with pytest.raises(TransientDeliveryError, match="STARTTLS"):
        mailer.send(
            account(server.port, "starttls", PASSWORD), SENDER, RECIPIENT, MESSAGE, before_data
        )

    assert (before_data.calls, server.handler.delivered) == (0, [])


def test_it_rejects_an_untrusted_certificate(tls_server: Server, mailer: SmtpMailer) -> None:
    with pytest.raises(TransientDeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        mailer.send(
            account(tls_server.port, "starttls", PASSWORD), SENDER, RECIPIENT, MESSAGE, lambda: None
        )

    assert tls_server.handler.delivered == []


def test_it_sends_over_implicit_tls(
    start_server: Callable[..., Server], tls: Tls, make_mailer: Callable[..., SmtpMailer]
) -> None:
    server = start_server(ssl_context=tls.server)
    mailer = make_mailer(ssl_context=tls.client)

    receipt = mailer.send(account(server.port, "ssl"), SENDER, RECIPIENT, MESSAGE, lambda: None)

    assert receipt.reply.startswith("250 ")
    assert server.handler.delivered[0].content == MESSAGE


# -- DKIM -------------------------------------------------------------------------------------


def test_it_dkim_signs_so_that_the_signature_verifies(
    server: Server, mailer: SmtpMailer, dkim_key: DkimKey
) -> None:
    mailbox = account(
        server.port,
        dkim_selector="refseq",
        dkim_domain="acme.example",
        dkim_key_pem=dkim_key.private_pem,
    )
    records = {b"refseq._domainkey.acme.example.": dkim_key.dns_record}

    mailer.send(mailbox, SENDER, RECIPIENT, MESSAGE, lambda: None)

    content = server.handler.delivered[0].content
    assert content.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert content.endswith(MESSAGE)
    assert dkim.verify(content, dnsfunc=lambda name, timeout=5: records.get(name))
    assert not dkim.verify(
        content.replace(b"Hi Pat", b"Hi Bob"), dnsfunc=lambda name, timeout=5: records.get(name)
    )


def test_it_signs_the_headers_that_matter(dkim_key: DkimKey) -> None:
    signed = sign_message(MESSAGE, "refseq", "acme.example", dkim_key.private_pem)

    h_tag = signed.split(b"h=", 1)[1].split(b";", 1)[0]
    signed_headers = [name.strip() for name in h_tag.replace(b"\r\n", b"").split(b":")]
    assert signed_headers == [
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"in-reply-to",
        b"references",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
    ]


def test_it_reports_a_bad_dkim_key_as_transient(server: Server, mailer: SmtpMailer) -> None:
    mailbox = account(
        server.port, dkim_selector="s", dkim_domain="acme.example", dkim_key_pem=b"junk"
    )

    with pytest.raises(TransientDeliveryError, match="DKIM"):
        mailer.send(mailbox, SENDER, RECIPIENT, MESSAGE, lambda: None)

    assert server.handler.delivered == []


# -- the classification table -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "code", "text", "kind", "unknown"),
    [
        (Phase.CONNECT, 421, "4.3.2 busy", TransientDeliveryError, False),
        (Phase.CONNECT, 554, "no SMTP service here", TransientDeliveryError, False),
        (
            Phase.AUTH,
            535,
            "5.7.8 Authentication credentials invalid",
            TransientDeliveryError,
            False,
        ),
        (Phase.MAIL, 451, "4.3.0 try later", TransientDeliveryError, False),
        (
            Phase.MAIL,
            553,
            "5.1.8 Sender address domain does not exist",
            PermanentDeliveryError,
            False,
        ),
        (Phase.RCPT, 450, "4.2.1 mailbox busy", TransientDeliveryError, False),
        (Phase.RCPT, 550, "5.1.1 No such user", PermanentDeliveryError, True),
        (Phase.RCPT, 550, "5.1.10 Recipient address has null MX", PermanentDeliveryError, True),
        (Phase.RCPT, 554, "5.1.2 Bad destination system address", PermanentDeliveryError, True),
        (
            Phase.RCPT,
            550,
            "Requested action not taken: mailbox unavailable",
            PermanentDeliveryError,
            True,
        ),
        (Phase.RCPT, 551, "User not local; please try <x@y>", PermanentDeliveryError, False),
        (Phase.RCPT, 553, "sorry, user unknown", PermanentDeliveryError, True),
        (Phase.RCPT, 550, "5.7.1 Relaying denied", PermanentDeliveryError, False),
        (
            Phase.RCPT,
            550,
            "5.2.1 Mailbox disabled, not accepting messages",
            PermanentDeliveryError,
            False,
        ),
        (Phase.DATA, 554, "5.5.1 No valid recipients", PermanentDeliveryError, False),
        (Phase.CONTENT, 452, "4.3.1 Insufficient system storage", TransientDeliveryError, False),
        (Phase.CONTENT, 552, "5.3.4 Message too big", PermanentDeliveryError, False),
        (Phase.CONTENT, 550, "5.1.1 User unknown", PermanentDeliveryError, True),
        (
            Phase.CONTENT,
            550,
            "user unknown",
            PermanentDeliveryError,
            False,
        ),  # text heuristic: RCPT only
        (Phase.CONTENT, 354, "go ahead", AmbiguousDeliveryError, False),
        (Phase.CONTENT, None, "", AmbiguousDeliveryError, False),
        (Phase.DATA, None, "", TransientDeliveryError, False),
    ],
)
def test_it_classifies_replies(
    phase: Phase, code: int | None, text: str, kind: type, unknown: bool
) -> None:
    error = classify(phase, code, text)

    assert type(error) is kind
    assert error.code == code
    assert getattr(error, "recipient_unknown", False) is unknown
    if code is not None:
        assert error.reply == f"{code} {text}"


@pytest.mark.parametrize(
    ("phase", "error", "kind"),
    [
        (Phase.CONNECT, ConnectionRefusedError(111, "Connection refused"), TransientDeliveryError),
        (Phase.CONNECT, TimeoutError("timed out"), TransientDeliveryError),
        (Phase.CONNECT, smtplib.SMTPConnectError(421, b"busy"), TransientDeliveryError),
        (Phase.HELLO, ssl.SSLError("handshake failure"), TransientDeliveryError),
        (Phase.AUTH, smtplib.SMTPAuthenticationError(535, b"5.7.8 nope"), TransientDeliveryError),
        (
            Phase.RCPT,
            smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
            TransientDeliveryError,
        ),
        (Phase.DATA, ConnectionResetError(104, "reset"), TransientDeliveryError),
        (
            Phase.CONTENT,
            smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
            AmbiguousDeliveryError,
        ),
        (Phase.CONTENT, TimeoutError("timed out"), AmbiguousDeliveryError),
        (Phase.CONTENT, ssl.SSLEOFError("EOF"), AmbiguousDeliveryError),
        (
            Phase.CONTENT,
            smtplib.SMTPResponseException(500, b"Line too long."),
            AmbiguousDeliveryError,
        ),
    ],
)
def test_it_classifies_exceptions(phase: Phase, error: Exception, kind: type) -> None:
    assert type(classify_exception(phase, error)) is kind


def test_it_never_calls_anything_after_the_data_permanent_on_a_lost_connection() -> None:
    assert {OUTCOMES[phase]["lost"] for phase in Phase} == {Outcome.TRANSIENT, Outcome.AMBIGUOUS}
    assert [phase for phase in Phase if OUTCOMES[phase]["lost"] is Outcome.AMBIGUOUS] == [
        Phase.CONTENT
    ]
