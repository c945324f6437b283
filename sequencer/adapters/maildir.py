"""A MailboxReader over a local Maildir: the demo's (and a test box's) stand-in for IMAP.

It honours the same contract as the IMAP reader (checkpoint of UIDVALIDITY and last UID,
oldest first, ``limit``) so the real poller runs unchanged on top of it. UIDs are assigned in
arrival order and kept in ``.refseq-uids`` inside the Maildir; the files are never changed.
"""

from __future__ import annotations

import json
import mailbox
from datetime import UTC, datetime
from pathlib import Path

from sequencer.core.ports import Checkpoint, FetchBatch, FetchedMail, ImapAccount

UIDVALIDITY = 1


class MaildirReader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.box = mailbox.Maildir(str(root), create=True)
        self._uids_file = root / ".refseq-uids"

    def _uids(self) -> dict[str, int]:
        known: dict[str, int] = (
            json.loads(self._uids_file.read_text()) if self._uids_file.exists() else {}
        )
        new = sorted(
            (k for k in self.box.iterkeys() if k not in known),
            key=lambda k: (self.box.get_message(k).get_date(), k),
        )
        for key in new:
            known[key] = max(known.values(), default=0) + 1
        if new:
            self._uids_file.write_text(json.dumps(known))
        return known

    def fetch_new(
        self,
        account: ImapAccount,
        checkpoint: Checkpoint | None,
        rescan_since: datetime,
        limit: int = 500,
    ) -> FetchBatch:
        uids = self._uids()
        after = checkpoint.last_uid if checkpoint and checkpoint.uidvalidity == UIDVALIDITY else 0
        out = []
        for key, uid in sorted(uids.items(), key=lambda kv: kv[1]):
            if uid <= after:
                continue
            msg = self.box.get_message(key)
            when = datetime.fromtimestamp(msg.get_date(), UTC)
            if checkpoint is None and when < rescan_since:
                continue
            path = Path(self.root, msg.get_subdir(), key)
            out.append(FetchedMail(uid, path.read_bytes(), when))
            if len(out) >= limit:
                break
        return FetchBatch(UIDVALIDITY, out, rescanned=checkpoint is None)

    def find_message_id(self, account: ImapAccount, folder: str | None, message_id: str) -> bool:
        return False

    def close(self) -> None:
        pass

    def deliver(self, raw: bytes, at: datetime) -> None:
        """Drop a message into the Maildir as if it had just arrived at ``at``."""
        message = mailbox.MaildirMessage(raw)
        message.set_date(at.timestamp())
        self.box.add(message)
