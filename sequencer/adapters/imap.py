"""IMAP adapter: reads the rep's mailbox for replies (implements ``ports.MailboxReader``).

Read-only by construction: every folder is SELECTed with ``readonly=True`` (EXAMINE) and bodies
are fetched with ``BODY.PEEK[]``, so the rep's mail is never flagged ``\\Seen``, moved or deleted.
Progress is the caller's ``Checkpoint(uidvalidity, last_uid)``; this adapter stores nothing.

One connection per login (host, port, security, user) is kept open between calls, checked with
NOOP and reopened when the server dropped it. Not thread-safe: one reader per worker thread.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from sequencer.adapters.imap_sent import find_sent_folder
from sequencer.core.ports import Checkpoint, FetchBatch, FetchedMail, ImapAccount, MailboxReader
from sequencer.errors import NoSentFolder, SequencerError

SECURITY_MODES = ("none", "starttls", "ssl")
FETCH_CHUNK = 100  # UIDs per FETCH command, to keep each server response a sane size

# What a dead or refusing server looks like from imapclient: its own errors (imaplib's error and
# abort), socket and TLS errors (OSError), and imaplib's EOF on a half-closed connection.
_FAILURES = (IMAPClientError, OSError, EOFError)


class MailboxError(SequencerError):
    """The mailbox could not be read: connection, TLS, login, folder or protocol failure.

    ``account_key`` names the mailbox (``user@host:port/folder``); the password never appears.
    """

    def __init__(self, account_key: str, message: str) -> None:
        self.account_key = account_key
        super().__init__(f"IMAP {account_key}: {message}")


def _login_key(account: ImapAccount) -> str:
    return f"{account.security}:{account.username}@{account.host}:{account.port}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ImapMailboxReader:
    """``MailboxReader`` over imapclient.

    ``ssl_context`` verifies the server for ``starttls``/``ssl`` (default: the system CAs with
    hostname checking); ``timeout`` bounds connecting and every read, in seconds.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None, timeout: float = 30.0) -> None:
        self._ssl_context = ssl_context
        self._timeout = timeout
        self._clients: dict[str, IMAPClient] = {}
        self._sent: dict[str, str | None] = {}  # login → its \\Sent folder (None: none marked)

    # -- the port ---------------------------------------------------------------------------

    def fetch_new(
        self,
        account: ImapAccount,
        checkpoint: Checkpoint | None,
        rescan_since: datetime,
        limit: int = 500,
    ) -> FetchBatch:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        with self._session(account) as client:
            uidvalidity = self._examine(client, account, account.folder)
            if checkpoint is not None and checkpoint.uidvalidity == uidvalidity:
                # "UID n:*" always matches the highest UID, even when it is below n.
                found = client.search(["UID", f"{checkpoint.last_uid + 1}:*"])
                uids = sorted(uid for uid in found if uid > checkpoint.last_uid)[:limit]
                return FetchBatch(uidvalidity, self._fetch(client, uids), rescanned=False)
            uids = self._received_since(client, rescan_since, limit)
            return FetchBatch(uidvalidity, self._fetch(client, uids), rescanned=True)

    def find_message_id(self, account: ImapAccount, folder: str | None, message_id: str) -> bool:
        # HEADER search is a substring match: the brackets make it match the whole id only.
        wanted = f"<{message_id.strip().strip('<>')}>"
        with self._session(account) as client:
            if folder is None:
                folder = self._sent_folder(client, account)
            self._examine(client, account, folder)
            return bool(client.search(["HEADER", "Message-ID", wanted]))

    def _sent_folder(self, client: IMAPClient, account: ImapAccount) -> str:
        """The folder the server marks ``\\Sent`` (SPECIAL-USE), asked once per login."""
        key = _login_key(account)
        if key not in self._sent:
            self._sent[key] = find_sent_folder(client)
        found = self._sent[key]
        if found is None:
            raise NoSentFolder(
                f"IMAP {account.key}: the server marks no folder \\Sent (RFC 6154 SPECIAL-USE); "
                "name it with imap.sent_folder in the campaign file"
            )
        return found

    def close(self) -> None:
        self._sent.clear()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            self._discard(client)

    # -- connections ------------------------------------------------------------------------

    @contextmanager
    def _session(self, account: ImapAccount) -> Iterator[IMAPClient]:
        """A logged-in client for ``account``. A connection or protocol failure inside drops
        the connection and raises MailboxError; a clean refusal (MailboxError) keeps it."""
        key = _login_key(account)
        client = self._clients.get(key)
        if client is not None:
            try:
                client.noop()
            except _FAILURES:
                del self._clients[key]
                self._discard(client)
                client = None
        if client is None:
            client = self._connect(account)
            self._clients[key] = client
        try:
            yield client
        except _FAILURES as exc:
            self._forget(key, client)
            raise MailboxError(account.key, f"read failed ({_describe(exc)})") from exc

    def _connect(self, account: ImapAccount) -> IMAPClient:
        if account.security not in SECURITY_MODES:
            raise MailboxError(
                account.key,
                f"unknown security {account.security!r} (use one of {', '.join(SECURITY_MODES)})",
            )
        if account.password is None:
            raise MailboxError(account.key, "no password configured (check its password_env)")
        where = f"{account.host}:{account.port}"
        try:
            client = IMAPClient(
                account.host,
                account.port,
                ssl=account.security == "ssl",
                ssl_context=self._ssl_context,
                timeout=self._timeout,
            )
        except _FAILURES as exc:
            raise MailboxError(
                account.key, f"cannot connect to {where} ({_describe(exc)})"
            ) from exc
        client.normalise_times = False  # keep INTERNALDATE's offset; we convert to UTC
        try:
            if account.security == "starttls":
                client.starttls(self._ssl_context)
            client.login(account.username, account.password)
        except LoginError as exc:
            self._discard(client)
            raise MailboxError(
                account.key, f"login refused for user {account.username!r} ({_describe(exc)})"
            ) from exc
        except _FAILURES as exc:
            self._discard(client)
            raise MailboxError(
                account.key, f"cannot open a session with {where} ({_describe(exc)})"
            ) from exc
        return client

    def _forget(self, key: str, client: IMAPClient) -> None:
        if self._clients.get(key) is client:
            del self._clients[key]
        self._discard(client)

    @staticmethod
    def _discard(client: IMAPClient) -> None:
        with suppress(*_FAILURES):
            client.logout()
            return
        with suppress(*_FAILURES):
            client.shutdown()

    # -- reading ----------------------------------------------------------------------------

    @staticmethod
    def _examine(client: IMAPClient, account: ImapAccount, folder: str) -> int:
        """SELECT read-only (so nothing we do can change the folder); returns UIDVALIDITY."""
        try:
            status = client.select_folder(folder, readonly=True)
        except IMAPClientAbortError:
            raise  # the connection died: _session reports it and reconnects next time
        except IMAPClientError as exc:
            raise MailboxError(
                account.key, f"cannot open folder {folder!r} ({_describe(exc)})"
            ) from exc
        uidvalidity = status.get(b"UIDVALIDITY")
        if not isinstance(uidvalidity, int):
            raise MailboxError(account.key, f"folder {folder!r} reports no UIDVALIDITY")
        return uidvalidity

    @staticmethod
    def _received_since(client: IMAPClient, since: datetime, limit: int) -> list[int]:
        """The first ``limit`` UIDs received at or after ``since``, ascending.

        SEARCH SINCE compares dates only, in the server's time zone, so search from the day
        before and filter on the exact INTERNALDATE.
        """
        since_utc = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
        candidates = sorted(client.search(["SINCE", (since_utc - timedelta(days=1)).date()]))
        kept: list[int] = []
        for start in range(0, len(candidates), FETCH_CHUNK):
            if len(kept) >= limit:
                break
            chunk = candidates[start : start + FETCH_CHUNK]
            dates = client.fetch(chunk, ["INTERNALDATE"])
            kept += [
                uid
                for uid in chunk
                if uid in dates and _utc(dates[uid][b"INTERNALDATE"]) >= since_utc
            ]
        return kept[:limit]

    @staticmethod
    def _fetch(client: IMAPClient, uids: list[int]) -> list[FetchedMail]:
        """Bodies with BODY.PEEK[] (never sets \\Seen); a UID expunged meanwhile is skipped."""
        mails: list[FetchedMail] = []
        for start in range(0, len(uids), FETCH_CHUNK):
            chunk = uids[start : start + FETCH_CHUNK]
            data = client.fetch(chunk, ["BODY.PEEK[]", "INTERNALDATE"])
            for uid in chunk:
                item = data.get(uid)
                if item is None or b"BODY[]" not in item:
                    continue
                raw = item[b"BODY[]"]
                mails.append(FetchedMail(uid, bytes(raw), _utc(item[b"INTERNALDATE"])))
        return mails


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


if TYPE_CHECKING:  # mypy proves the adapter implements the port
    _: MailboxReader = ImapMailboxReader()
