"""Find the folder a mailbox files its sent mail in, without configuration (RFC 6154).

A server that announces ``SPECIAL-USE`` is asked ``LIST "" "*" RETURN (SPECIAL-USE)``; any
other server is asked a plain ``LIST``, whose attributes many servers (Dovecot, Gmail, Exchange)
fill in anyway. The folder carrying ``\\Sent`` is the answer; never a guess from its name (a
folder called "Sent" that the server does not fill would prove nothing).
"""

from __future__ import annotations

from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

SENT = b"\\sent"

Listing = list[tuple[tuple[bytes, ...], bytes, str]]


def _special_use_listing(client: IMAPClient) -> Listing:
    """``LIST "" "*" RETURN (SPECIAL-USE)`` (RFC 5258 + 6154). imapclient has no call for the
    RETURN option, so this goes through its imaplib connection like ``list_folders`` does."""
    imap: Any = client._imap
    typ, data = imap._simple_command("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
    if typ != "OK":
        raise IMAPClientError(f"LIST RETURN (SPECIAL-USE) refused: {data!r}")
    _, lines = imap._untagged_response(typ, data, "LIST")
    listing: Listing = client._proc_folder_list(lines)
    return listing


def find_sent_folder(client: IMAPClient) -> str | None:
    """The name of the folder the server marks ``\\Sent``, or None when it marks none."""
    listing: Listing = []
    if client.has_capability("SPECIAL-USE"):
        try:
            listing = _special_use_listing(client)
        except IMAPClientAbortError:
            raise  # the connection died: the caller's session reports it
        except IMAPClientError:
            listing = []  # a server that announces more than it does: try the plain LIST
    if not listing:
        listing = client.list_folders()
    for flags, _delimiter, name in listing:
        if any(bytes(f).lower() == SENT for f in flags):
            return str(name)
    return None
