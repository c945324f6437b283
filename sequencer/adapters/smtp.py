"""SMTP sending with smtplib: the ``Mailer`` port.

One connection is kept open per mailbox (``SmtpAccount.key``) and checked with NOOP before it
is reused. Each send drives the transaction itself, so every failure is known by its phase::

    CONNECT   TCP (+ TLS for "ssl"), the 220 greeting
    HELLO     EHLO (or HELO); for "starttls": STARTTLS, then EHLO again (never a downgrade)
    AUTH      AUTH (``login``) when the account has a password
    MAIL      MAIL FROM:<…> [BODY=8BITMIME] [SMTPUTF8]
    RCPT      RCPT TO:<…>
              before_data()   the caller durably records "sending"; no retry from here on
    DATA      DATA → 354
    CONTENT   the message, ".", and the final reply (2xx = the server took it)

``OUTCOMES`` turns (phase, what happened) into one of three errors; nothing above this module
sees smtplib. Transient errors raised before ``before_data`` are retried in-process with
tenacity (exponential backoff, capped); a rejected password (535) only once more.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType, TracebackType
from typing import Final, Self

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from sequencer.adapters.dkim import DkimSigningError, sign_message
from sequencer.core.ports import SendReceipt, SmtpAccount
from sequencer.errors import (
    AmbiguousDeliveryError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

log = logging.getLogger(__name__)

SECURITY_MODES: Final = ("none", "starttls", "ssl")


class Phase(StrEnum):
    CONNECT = "connect"
    HELLO = "hello"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    CONTENT = "content"


class Outcome(StrEnum):
    TRANSIENT = "transient"  # nothing delivered; try again later
    PERMANENT = "permanent"  # refused for good
    AMBIGUOUS = "ambiguous"  # the data went out but no verdict came back: never resend blindly


# What happened: the first digit of the server's reply, LOST (connection refused, reset or
# closed, timeout) or OTHER (a TLS failure, a missing extension, an unexpected or garbled reply).
LOST: Final = "lost"
OTHER: Final = "other"

_T, _P, _A = Outcome.TRANSIENT, Outcome.PERMANENT, Outcome.AMBIGUOUS

# Session problems (connect, hello, auth) say nothing about the message: the mailbox or the
# server needs fixing, so they are all transient. A 5xx to the envelope or the data is a
# verdict. Once the message data has gone out, a lost connection leaves the outcome unknown.
OUTCOMES: Final[Mapping[Phase, Mapping[str, Outcome]]] = MappingProxyType(
    {
        Phase.CONNECT: {"4": _T, "5": _T, LOST: _T, OTHER: _T},
        Phase.HELLO: {"4": _T, "5": _T, LOST: _T, OTHER: _T},
        Phase.AUTH: {"4": _T, "5": _T, LOST: _T, OTHER: _T},
        Phase.MAIL: {"4": _T, "5": _P, LOST: _T, OTHER: _T},
        Phase.RCPT: {"4": _T, "5": _P, LOST: _T, OTHER: _T},
        Phase.DATA: {"4": _T, "5": _P, LOST: _T, OTHER: _T},
        Phase.CONTENT: {"4": _T, "5": _P, LOST: _A, OTHER: _A},
    }
)

_ERRORS: Final[Mapping[Outcome, type[DeliveryError]]] = {
    _T: TransientDeliveryError,
    _P: PermanentDeliveryError,
    _A: AmbiguousDeliveryError,
}

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
# Without an enhanced code, a 550/551/553 to RCPT with words like these means "no such mailbox".
_UNKNOWN_USER = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient)|unknown recipient"
    r"|mailbox (?:unavailable|not found|does not exist)|recipient (?:not found|unknown)"
    r"|does not exist|invalid (?:mailbox|recipient)|address rejected|not a valid mailbox",
    re.IGNORECASE,
)
_SENDER_DETAILS: Final = frozenset({7, 8})  # X.1.7 / X.1.8 are about the sender's address


def recipient_unknown(phase: Phase, code: int | None, text: str) -> bool:
    """True when a permanent reply says the recipient's address does not exist."""
    if code is None or not 500 <= code < 600 or phase is Phase.MAIL:
        return False
    enhanced = _ENHANCED.match(text)
    if enhanced:
        klass, subject, detail = (int(part) for part in enhanced.groups())
        return klass == 5 and subject == 1 and detail not in _SENDER_DETAILS
    return phase is Phase.RCPT and code in (550, 551, 553) and bool(_UNKNOWN_USER.search(text))


def classify(phase: Phase, code: int | None, text: str = "", detail: str = "") -> DeliveryError:
    """The error for a reply (``code`` and its ``text``) or, with ``code=None``, a lost
    connection described by ``detail``. A code outside 4xx/5xx counts as OTHER."""
    if code is None:
        what = LOST
    elif 400 <= code < 600:
        what = str(code)[0]
    else:
        what = OTHER
    outcome = OUTCOMES[phase][what]
    reply = f"{code} {text}".strip() if code is not None else ""
    message = f"SMTP {phase.value}: {reply or detail or 'connection lost'} ({outcome.value})"
    if outcome is Outcome.PERMANENT:
        return PermanentDeliveryError(
            message, code, reply, recipient_unknown=recipient_unknown(phase, code, text)
        )
    return _ERRORS[outcome](message, code, reply)


def classify_exception(phase: Phase, error: Exception) -> DeliveryError:
    """Map an smtplib, socket or TLS exception raised in ``phase``."""
    if isinstance(error, smtplib.SMTPResponseException) and phase is not Phase.CONTENT:
        # SMTPConnectError, SMTPHeloError, SMTPAuthenticationError carry the server's reply.
        # (CONTENT reads its reply directly: an exception there is a garbled reply.)
        return classify(phase, error.smtp_code, _text(error.smtp_error))
    detail = f"{type(error).__name__}: {error}"
    if isinstance(error, smtplib.SMTPServerDisconnected) or (
        isinstance(error, OSError) and not isinstance(error, smtplib.SMTPException | ssl.SSLError)
    ):
        return classify(phase, None, detail=detail)
    return _other(phase, detail)


def _other(phase: Phase, detail: str) -> DeliveryError:
    """A failure that is neither a reply nor a lost connection (TLS, a missing extension)."""
    outcome = OUTCOMES[phase][OTHER]
    return _ERRORS[outcome](f"SMTP {phase.value}: {detail} ({outcome.value})", None, "")


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", errors="replace")
    return " ".join(reply.split("\n")).strip()


def _crlf(message: bytes) -> bytes:
    """Normalise bare LF / CR to CRLF (SMTP requires CRLF; smtplib sends bytes as they are)."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", message)


def _ascii_address(address: str) -> str | None:
    """``address`` without SMTPUTF8: the domain IDNA-encoded; None if the local part needs it."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address if address.isascii() else None
    if not local.isascii():
        return None
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return None


@dataclass
class _SendState:
    data_started: bool = False  # before_data() was called: nothing is retried after this
    auth_rejections: int = 0

    def retryable(self, error: BaseException) -> bool:
        if not isinstance(error, TransientDeliveryError) or self.data_started:
            return False
        return self.auth_rejections < 2  # a rejected password is retried once, not more


@dataclass
class _Connection:
    account: SmtpAccount
    smtp: smtplib.SMTP
    used_at: float = 0.0  # time.monotonic() of the last complete reply on it


# A connection used more recently than this is checked without a round trip (a server that
# closed it has sent a FIN or a 421, which makes the socket readable); an older one with NOOP.
NOOP_AFTER_IDLE = 10.0


class SmtpMailer:
    """``Mailer`` over SMTP. Not thread-safe: use one instance per worker thread/process.

    ``sleep`` is what tenacity waits with between attempts (inject a fake in tests);
    ``ssl_context`` replaces ``ssl.create_default_context()`` (e.g. to trust a test CA);
    ``local_hostname`` is the EHLO name (default: the machine's FQDN).
    """

    def __init__(
        self,
        timeout: float = 30,
        retry_attempts: int = 3,
        retry_wait_max: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if retry_attempts < 1:
            raise ValueError("retry_attempts must be at least 1")
        self.timeout = timeout
        self.retry_attempts = retry_attempts
        self.retry_wait_max = retry_wait_max
        self._sleep = sleep
        self._tls = ssl_context  # made on first use: loading the CA store costs ~30 ms
        self._local_hostname = local_hostname
        self._connections: dict[str, _Connection] = {}

    def _ssl_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    # -- the port -------------------------------------------------------------------------

    def send(
        self,
        account: SmtpAccount,
        envelope_from: str,
        recipient: str,
        message: bytes,
        before_data: Callable[[], None],
    ) -> SendReceipt:
        if account.security not in SECURITY_MODES:
            raise ValueError(f"unknown SMTP security {account.security!r} for {account.key}")
        if any(c in address for address in (envelope_from, recipient) for c in "\r\n"):
            raise ValueError("line break in an envelope address")
        state = _SendState()
        retrying = Retrying(
            stop=stop_after_attempt(self.retry_attempts),
            wait=wait_exponential(multiplier=1, max=self.retry_wait_max),
            retry=retry_if_exception(state.retryable),
            sleep=self._sleep,
            before_sleep=lambda retry_state: self._log_retry(account, recipient, retry_state),
            reraise=True,
        )
        try:
            payload = self._prepare(account, message)
            receipt = retrying(
                self._attempt, account, envelope_from, recipient, payload, before_data, state
            )
        except DeliveryError as error:
            log.warning("smtp send failed: mailbox=%s to=%s: %s", account.key, recipient, error)
            raise
        log.info("smtp sent: mailbox=%s to=%s reply=%r", account.key, recipient, receipt.reply)
        return receipt

    def close(self) -> None:
        """QUIT every open connection; errors at QUIT are ignored."""
        for key in list(self._connections):
            self._drop(key, quit_first=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- one attempt ----------------------------------------------------------------------

    def _prepare(self, account: SmtpAccount, message: bytes) -> bytes:
        payload = _crlf(message)
        selector, domain, key_pem = account.dkim_selector, account.dkim_domain, account.dkim_key_pem
        if selector and domain and key_pem:
            try:
                payload = sign_message(payload, selector, domain, key_pem)
            except DkimSigningError as error:
                # An ops problem like a wrong password: fix the key, the message can wait.
                raise TransientDeliveryError(f"{account.key}: {error}") from error
        elif selector or domain or key_pem:
            log.warning("mailbox=%s: DKIM is half configured; sending unsigned", account.key)
        return payload

    def _attempt(
        self,
        account: SmtpAccount,
        envelope_from: str,
        recipient: str,
        payload: bytes,
        before_data: Callable[[], None],
        state: _SendState,
    ) -> SendReceipt:
        key = account.key
        smtp, reused = self._connection(account, state)
        sender, rcpt, options = self._envelope(smtp, envelope_from, recipient, payload)
        try:
            self._step(key, smtp, Phase.MAIL, lambda: smtp.mail(sender, options))
        except TransientDeliveryError as error:
            if not reused or error.code is not None:
                raise
            # A kept connection the server closed since: open a new one at once (nothing was
            # sent, so this is no retry and waits for nothing).
            smtp, _ = self._connection(account, state)
            sender, rcpt, options = self._envelope(smtp, envelope_from, recipient, payload)
            self._step(key, smtp, Phase.MAIL, lambda: smtp.mail(sender, options))
        self._step(key, smtp, Phase.RCPT, lambda: smtp.rcpt(rcpt))
        try:
            before_data()
        except BaseException:
            self._reset(key, smtp)
            raise
        state.data_started = True
        self._step(key, smtp, Phase.DATA, lambda: _command(smtp, "data"), ok=354)
        code, text = self._step(key, smtp, Phase.CONTENT, lambda: _content(smtp, payload))
        kept = self._connections.get(key)
        if kept is not None:
            kept.used_at = time.monotonic()
        return SendReceipt(reply=f"{code} {_text(text)}")

    def _step(
        self,
        key: str,
        smtp: smtplib.SMTP,
        phase: Phase,
        command: Callable[[], tuple[int, bytes]],
        ok: int | None = None,
    ) -> tuple[int, bytes]:
        """Run one command; a refusal or failure becomes a DeliveryError for ``phase``."""
        try:
            code, text = command()
        except (smtplib.SMTPException, OSError) as error:
            self._drop(key)
            raise classify_exception(phase, error) from error
        except BaseException:  # e.g. a worker's time limit: never reuse a half-done transaction
            self._drop(key)
            raise
        if code == ok or (ok is None and 200 <= code < 300):
            return code, text
        if 400 <= code < 600 and code != 421:  # a clean refusal: the session goes on
            if phase is not Phase.CONTENT:
                self._reset(key, smtp)
        else:  # 421 (closing), garbage or an unexpected code: start afresh next time
            self._drop(key)
        raise classify(phase, code, _text(text))

    @staticmethod
    def _envelope(
        smtp: smtplib.SMTP, envelope_from: str, recipient: str, payload: bytes
    ) -> tuple[str, str, list[str]]:
        options: list[str] = []
        if not payload.isascii() and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        smtp.command_encoding = "ascii"  # smtplib leaves it at utf-8 after an SMTPUTF8 MAIL
        if envelope_from.isascii() and recipient.isascii():
            return envelope_from, recipient, options
        if smtp.has_extn("smtputf8"):
            return envelope_from, recipient, [*options, "SMTPUTF8"]
        sender, rcpt = _ascii_address(envelope_from), _ascii_address(recipient)
        if sender is None or rcpt is None:
            raise PermanentDeliveryError(
                "SMTP mail: the server does not offer SMTPUTF8, needed for a non-ASCII address"
            )
        return sender, rcpt, options

    # -- connections ----------------------------------------------------------------------

    def _connection(self, account: SmtpAccount, state: _SendState) -> tuple[smtplib.SMTP, bool]:
        """The kept connection if it is still good (and True), else a new one (and False)."""
        kept = self._connections.get(account.key)
        if kept is not None:
            if kept.account == account and self._alive(kept):
                return kept.smtp, True
            self._drop(account.key)
        smtp = self._open(account, state)
        self._connections[account.key] = _Connection(account, smtp, time.monotonic())
        return smtp, False

    @classmethod
    def _alive(cls, kept: _Connection) -> bool:
        if _closed_by_peer(kept.smtp):
            return False
        if time.monotonic() - kept.used_at < NOOP_AFTER_IDLE:
            return True  # busy: skip the NOOP round trip (half of a loopback send's latency)
        if cls._noop(kept.smtp):
            kept.used_at = time.monotonic()
            return True
        return False

    @staticmethod
    def _noop(smtp: smtplib.SMTP) -> bool:
        try:
            code, _ = smtp.noop()
        except (smtplib.SMTPException, OSError):
            return False
        return code == 250

    def _open(self, account: SmtpAccount, state: _SendState) -> smtplib.SMTP:
        phase = Phase.CONNECT
        smtp: smtplib.SMTP | None = None
        try:
            if account.security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    account.host,
                    account.port,
                    local_hostname=self._local_hostname,
                    timeout=self.timeout,
                    context=self._ssl_context(),
                )
            else:
                smtp = smtplib.SMTP(
                    account.host,
                    account.port,
                    local_hostname=self._local_hostname,
                    timeout=self.timeout,
                )
            phase = Phase.HELLO
            smtp.ehlo_or_helo_if_needed()
            if account.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise _other(phase, "the server does not offer STARTTLS (security: starttls)")
                code, text = smtp.starttls(context=self._ssl_context())
                if code != 220:
                    raise classify(phase, code, _text(text))
                smtp.ehlo_or_helo_if_needed()  # starttls() forgot the clear-text EHLO
            if account.password is not None:
                phase = Phase.AUTH
                smtp.login(account.username, account.password)
        except DeliveryError:
            _close_quietly(smtp)
            raise
        except (smtplib.SMTPException, OSError) as error:
            _close_quietly(smtp)
            if isinstance(error, smtplib.SMTPAuthenticationError):
                state.auth_rejections += 1
            raise classify_exception(phase, error) from error
        except BaseException:
            _close_quietly(smtp)
            raise
        return smtp

    def _reset(self, key: str, smtp: smtplib.SMTP) -> None:
        """RSET after a refused transaction so the connection can be reused, or drop it."""
        try:
            code, _ = smtp.rset()
        except (smtplib.SMTPException, OSError):
            code = -1
        if code != 250:
            self._drop(key)

    def _drop(self, key: str, quit_first: bool = False) -> None:
        kept = self._connections.pop(key, None)
        if kept is None:
            return
        if quit_first:
            # An error at QUIT loses nothing: every message had its final reply already.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                kept.smtp.quit()
        _close_quietly(kept.smtp)

    @staticmethod
    def _log_retry(account: SmtpAccount, recipient: str, retry_state: RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        log.info(
            "smtp retry: mailbox=%s to=%s attempt=%d wait=%.1fs: %s",
            account.key,
            recipient,
            retry_state.attempt_number,
            retry_state.upcoming_sleep,
            error,
        )


def _stuffed(payload: bytes) -> bytes:
    """The DATA block: dot-stuffed, CRLF-terminated, then the lone dot (RFC 5321 §4.5.2)."""
    quoted = re.sub(rb"(?m)^\.", b"..", payload)
    if not quoted.endswith(b"\r\n"):
        quoted += b"\r\n"
    return quoted + b".\r\n"


def _command(smtp: smtplib.SMTP, command: str) -> tuple[int, bytes]:
    smtp.putcmd(command)
    return smtp.getreply()


def _content(smtp: smtplib.SMTP, payload: bytes) -> tuple[int, bytes]:
    smtp.send(_stuffed(payload))
    return smtp.getreply()


def _closed_by_peer(smtp: smtplib.SMTP) -> bool:
    """True when an idle connection has something to read: the server's FIN (it closed the
    connection) or an unsolicited reply such as 421. Either way it is not reusable."""
    sock = smtp.sock
    if sock is None:
        return True
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    try:
        poller = select.poll()  # not select(): no limit on the descriptor's number
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError):
            smtp.close()
