"""ImapMailboxReader against a real Dovecot (``tests/dovecot.py``, fixtures in conftest.py)."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes
from typing import Any

import pytest

from sequencer.adapters.imap import ImapMailboxReader, MailboxError
from sequencer.core.ports import Checkpoint, FetchBatch, ImapAccount
from tests.dovecot import Dovecot
from tests.ports import closed_port

SINCE = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
KOLKATA = timezone(timedelta(hours=5, minutes=30))


def mail(name: str) -> bytes:
    return (
        f"From: {name} <{name}@prospect.example>\r\n"
        "To: dana@acme.example\r\n"
        f"Subject: Re: intro ({name})\r\n"
        f"Message-ID: <{name}@prospect.example>\r\n"
        "\r\n"
        f"Hello from {name}.\r\n"
    ).encode()


def names(batch: FetchBatch) -> list[str]:
    """The batch's messages as the names given to ``mail()``, in batch order."""
    return [
        str(message_from_bytes(m.raw)["Message-ID"]).strip("<>").split("@")[0]
        for m in batch.messages
    ]


def account_for(dovecot: Dovecot, user: str, **changes: Any) -> ImapAccount:
    login, password = dovecot.user(user)
    fields: dict[str, Any] = {
        "host": dovecot.host,
        "port": dovecot.port,
        "security": "none",
        "username": login,
        "password": password,
    }
    return ImapAccount(**{**fields, **changes})


class CountingReader(ImapMailboxReader):
    """Counts new connections (each one is one LOGIN)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.logins = 0

    def _connect(self, account: ImapAccount) -> Any:
        self.logins += 1
        return super()._connect(account)


@pytest.fixture
def reader() -> Any:
    reader = CountingReader(timeout=10)
    yield reader
    reader.close()


@pytest.fixture
def account(dovecot: Dovecot, imap_user: str) -> ImapAccount:
    return account_for(dovecot, imap_user)


def test_it_rescans_by_exact_internal_date_on_the_first_poll(
    dovecot: Dovecot, imap_user: str, account: ImapAccount, reader: CountingReader
) -> None:
    dovecot.append(imap_user, "INBOX", mail("old"), date=SINCE - timedelta(days=10))
    dovecot.append(imap_user, "INBOX", mail("hour-before"), date=SINCE - timedelta(hours=1))
    at = dovecot.append(imap_user, "INBOX", mail("at"), date=SINCE)
    dovecot.append(imap_user, "INBOX", mail("day-before"), date=SINCE - timedelta(days=1))
    later = dovecot.append(
        imap_user, "INBOX", mail("later"), date=datetime(2026, 3, 11, 9, 0, tzinfo=KOLKATA)
    )

    batch = reader.fetch_new(account, None, SINCE)

    assert batch.rescanned is True
    assert batch.uidvalidity == dovecot.uidvalidity(imap_user)
    assert [m.uid for m in batch.messages] == [at, later]
    assert names(batch) == ["at", "later"]
    assert batch.messages[0].raw == mail("at")
    assert batch.messages[0].internal_date == SINCE
    assert batch.messages[1].internal_date == datetime(2026, 3, 11, 3, 30, tzinfo=UTC)
    assert all(m.internal_date.tzinfo is UTC for m in batch.messages)
    assert batch.last_uid == later


def test_it_returns_only_new_uids_in_order_after_a_checkpoint(
    dovecot: Dovecot, imap_user: str, account: ImapAccount, reader: CountingReader
) -> None:
    for name in ("a", "b"):
        dovecot.append(imap_user, "INBOX", mail(name), date=SINCE)
    first = reader.fetch_new(account, None, SINCE)
    assert names(first) == ["a", "b"]
    assert first.last_uid is not None
    checkpoint = Checkpoint(first.uidvalidity, first.last_uid)

    # "UID n:*" matches the highest UID even when it is below n: nothing new must stay nothing.
    nothing = reader.fetch_new(account, checkpoint, SINCE)
    assert (nothing.messages, nothing.rescanned) == ([], False)

    # Incremental polls ignore the date: an old INTERNALDATE that arrives now is still new.
    uids = [
        dovecot.append(imap_user, "INBOX", mail("c"), date=SINCE + timedelta(days=1)),
        dovecot.append(imap_user, "INBOX", mail("d-old-date"), date=SINCE - timedelta(days=30)),
    ]
    second = reader.fetch_new(account, checkpoint, SINCE)
    assert (second.rescanned, second.uidvalidity) == (False, first.uidvalidity)
    assert [m.uid for m in second.messages] == uids
    assert names(second) == ["c", "d-old-date"]

    after = Checkpoint(second.uidvalidity, uids[-1])
    assert reader.fetch_new(account, after, SINCE).messages == []


def test_it_stops_at_the_limit_and_the_next_call_continues(
    dovecot: Dovecot, imap_user: str, account: ImapAccount, reader: CountingReader
) -> None:
    for n in range(5):
        dovecot.append(imap_user, "INBOX", mail(f"m{n}"), date=SINCE + timedelta(minutes=n))

    seen: list[list[str]] = []
    batch = reader.fetch_new(account, None, SINCE, limit=2)  # the rescan is limited too
    assert batch.rescanned is True
    seen.append(names(batch))
    while batch.messages:
        assert batch.last_uid is not None
        batch = reader.fetch_new(account, Checkpoint(batch.uidvalidity, batch.last_uid), SINCE, 2)
        assert batch.rescanned is False
        seen.append(names(batch))

    assert seen == [["m0", "m1"], ["m2", "m3"], ["m4"], []]
    with pytest.raises(ValueError, match="limit"):
        reader.fetch_new(account, None, SINCE, limit=0)


def test_it_never_sets_seen_nor_changes_any_flag_nor_deletes(
    dovecot: Dovecot, imap_user: str, account: ImapAccount, reader: CountingReader
) -> None:
    dovecot.append(imap_user, "INBOX", mail("unread"), date=SINCE)
    dovecot.append(imap_user, "INBOX", mail("read"), flags=[b"\\Seen"], date=SINCE)
    dovecot.append(imap_user, "INBOX", mail("starred"), flags=[b"\\Flagged"], date=SINCE)
    dovecot.append(imap_user, "Sent", mail("ours"), date=SINCE)
    before = dovecot.flags(imap_user), dovecot.flags(imap_user, "Sent")
    assert b"\\Seen" not in before[0][1]

    batch = reader.fetch_new(account, None, SINCE)
    assert len(batch.messages) == 3
    assert reader.fetch_new(account, Checkpoint(batch.uidvalidity, 0), SINCE).messages
    assert reader.find_message_id(account, "Sent", "<ours@prospect.example>")

    after = dovecot.flags(imap_user), dovecot.flags(imap_user, "Sent")
    assert after == before  # same UIDs, same flags (not even \Recent was taken)
    assert b"\\Seen" not in after[0][1]


def test_it_rescans_when_uidvalidity_changes_and_loses_nothing(
    dovecot: Dovecot, imap_user: str, account: ImapAccount, reader: CountingReader
) -> None:
    dovecot.append(imap_user, "INBOX", mail("before"), date=SINCE - timedelta(days=2))
    for name in ("m1", "m2", "m3"):
        dovecot.append(imap_user, "INBOX", mail(name), date=SINCE + timedelta(hours=1))
    first = reader.fetch_new(account, None, SINCE)
    assert names(first) == ["m1", "m2", "m3"]
    assert first.last_uid is not None
    old = Checkpoint(first.uidvalidity, first.last_uid)

    # The rep deletes m1 in their mail client, a reply arrives, then the server is migrated:
    # every message is renumbered from 1 under a new UIDVALIDITY, and our session is dropped.
    dovecot.delete(imap_user, "INBOX", [first.messages[0].uid])
    dovecot.append(imap_user, "INBOX", mail("m4"), date=SINCE + timedelta(hours=2))
    new_validity = dovecot.reset_uidvalidity(imap_user)
    assert new_validity != old.uidvalidity

    batch = reader.fetch_new(account, old, SINCE)

    assert (batch.rescanned, batch.uidvalidity) == (True, new_validity)
    assert names(batch) == ["m2", "m3", "m4"]  # everything since the date, oldest UID first
    m4 = batch.messages[-1]
    assert m4.uid <= old.last_uid  # so "UID 5:*" with the old checkpoint would miss it
    known = {"m1", "m2", "m3"}  # what the caller's dedupe already holds
    assert [n for n in names(batch) if n not in known] == ["m4"]
    assert reader.logins == 2  # the dropped session was noticed (NOOP) and replaced

    assert batch.last_uid is not None
    after = reader.fetch_new(account, Checkpoint(batch.uidvalidity, batch.last_uid), SINCE)
    assert (after.messages, after.rescanned) == ([], False)


def test_it_finds_a_sent_message_by_its_message_id(
    dovecot: Dovecot, imap_user: str, account: ImapAccount, reader: CountingReader
) -> None:
    sent = b"From: dana@acme.example\r\nMessage-ID: <abc.123@acme.example>\r\n\r\nHi\r\n"
    dovecot.append(imap_user, "Sent", sent, flags=[b"\\Seen"])

    assert reader.find_message_id(account, "Sent", "<abc.123@acme.example>") is True
    assert reader.find_message_id(account, "Sent", "abc.123@acme.example") is True
    assert reader.find_message_id(account, "Sent", "<nope@acme.example>") is False
    assert reader.find_message_id(account, "Sent", "c.123@acme.example") is False  # no substring
    assert reader.find_message_id(account, "INBOX", "<abc.123@acme.example>") is False
    with pytest.raises(MailboxError, match=r"cannot open folder 'Archive'") as caught:
        reader.find_message_id(account, "Archive", "<abc.123@acme.example>")
    assert account.key in str(caught.value)
    # A refused folder leaves the connection usable.
    assert reader.find_message_id(account, "Sent", "<abc.123@acme.example>") is True
    assert reader.logins == 1


def test_it_reuses_one_connection_and_reconnects_when_it_died(
    dovecot: Dovecot, imap_user: str, account: ImapAccount, reader: CountingReader
) -> None:
    dovecot.append(imap_user, "INBOX", mail("one"), date=SINCE)
    sent = account_for(dovecot, imap_user, folder="Sent")

    reader.fetch_new(account, None, SINCE)
    reader.fetch_new(account, None, SINCE)
    reader.find_message_id(account, "Sent", "<x@acme.example>")
    reader.fetch_new(sent, None, SINCE)  # same login, another folder
    assert reader.logins == 1

    dovecot.kick(imap_user)  # the server drops the idle connection
    assert names(reader.fetch_new(account, None, SINCE)) == ["one"]
    assert reader.logins == 2

    reader.close()
    reader.close()  # idempotent
    assert names(reader.fetch_new(account, None, SINCE)) == ["one"]
    assert reader.logins == 3


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_it_reads_over_tls(
    dovecot: Dovecot, imap_user: str, reader: CountingReader, security: str
) -> None:
    dovecot.append(imap_user, "INBOX", mail("secret"), date=SINCE)
    port = dovecot.port if security == "starttls" else dovecot.ssl_port
    account = account_for(dovecot, imap_user, host="localhost", port=port, security=security)
    tls_reader = ImapMailboxReader(ssl_context=dovecot.ssl_context(), timeout=10)
    try:
        assert names(tls_reader.fetch_new(account, None, SINCE)) == ["secret"]
    finally:
        tls_reader.close()

    # The default context trusts only the system CAs: the self-signed certificate is refused.
    with pytest.raises(MailboxError, match="certificate verify failed"):
        reader.fetch_new(account, None, SINCE)


def _connect_from(monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """Make every new TCP connection come from ``source`` (a loopback alias)."""
    real = socket.create_connection

    def create_connection(address: Any, timeout: Any = None, source_address: Any = None) -> Any:
        return real(address, timeout, (source, 0))

    monkeypatch.setattr(socket, "create_connection", create_connection)


def test_it_raises_mailbox_error_quickly_on_a_wrong_password(
    dovecot: Dovecot,
    imap_user: str,
    account: ImapAccount,
    reader: CountingReader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Dovecot's anvil slows every later login from the failing IP by ~4 s: fail from 127.0.0.2.
    _connect_from(monkeypatch, "127.0.0.2")
    wrong = account_for(dovecot, imap_user, password="hunter2-wrong")
    started = time.monotonic()
    with pytest.raises(MailboxError) as caught:
        reader.fetch_new(wrong, None, SINCE)
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert message.startswith(f"IMAP {wrong.key}: login refused for user '{imap_user}'")
    assert "hunter2" not in message
    assert caught.value.account_key == wrong.key
    monkeypatch.undo()

    started = time.monotonic()  # the right password from 127.0.0.1 is not penalised
    dovecot.append(imap_user, "INBOX", mail("fine"), date=SINCE)
    assert names(reader.fetch_new(account, None, SINCE)) == ["fine"]
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"password": None}, "no password configured"),
        ({"security": "tls"}, "unknown security 'tls'"),
        ({"port": "closed"}, "cannot connect to 127.0.0.1:{port}"),
    ],
)
def test_it_raises_mailbox_error_without_a_usable_connection(
    dovecot: Dovecot, imap_user: str, reader: CountingReader, changes: Any, problem: str
) -> None:
    with closed_port() as port:  # ours, so nothing else can be listening there
        changes = {k: port if v == "closed" else v for k, v in changes.items()}
        problem = problem.format(port=port)
        account = account_for(dovecot, imap_user, **changes)
        with pytest.raises(MailboxError, match=problem) as caught:
            reader.fetch_new(account, None, SINCE)
    assert str(caught.value).startswith(f"IMAP {account.key}: ")
