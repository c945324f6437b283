"""Typed errors. Each carries where the problem is, so the CLI can print one clear line."""

from __future__ import annotations

from dataclasses import dataclass


class SequencerError(Exception):
    """Root of every error refseq raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One input problem with its location.

    ``line``/``col`` are 1-based positions in a YAML file; ``row`` is the 1-based CSV line
    number (the header is line 1). ``field`` names the YAML path or CSV column.
    """

    source: str
    message: str
    field: str = ""
    line: int | None = None
    col: int | None = None
    row: int | None = None
    hint: str = ""

    def render(self) -> str:
        if self.row is not None:
            where = f"{self.source}: row {self.row}"
            head = f"{where}: {self.field}: " if self.field else f"{where}: "
        else:
            where = self.source
            if self.line is not None:
                where += f":{self.line}"
                if self.col is not None:
                    where += f":{self.col}"
            head = f"{where}: {self.field}: " if self.field else f"{where}: "
        tail = f" ({self.hint})" if self.hint else ""
        return f"{head}{self.message}{tail}"

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "line": self.line,
            "col": self.col,
            "row": self.row,
            "field": self.field,
            "message": self.message,
            "hint": self.hint,
        }


class SpecError(SequencerError):
    """A campaign (YAML + CSVs + templates) has problems; ``problems`` lists all of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(p.render() for p in problems))


class ConfigError(SequencerError):
    """An environment variable is missing or malformed; the message names it."""


class NotFound(SequencerError):
    """A campaign, draft or other object named on the command line does not exist."""


class InvalidTransition(SequencerError):
    """A state machine was asked for a move its table does not allow."""

    def __init__(self, machine: str, state: str, event: str) -> None:
        self.machine, self.state, self.event = machine, state, event
        super().__init__(f"{machine}: cannot {event!r} from state {state!r}")


class ConflictError(SequencerError):
    """The object changed since it was read (optimistic concurrency)."""


class RenderError(SequencerError):
    """A template failed to render; the message says template file:line and what."""

    def __init__(self, template: str, line: int | None, message: str) -> None:
        self.template, self.line, self.message = template, line, message
        where = f"{template}:{line}" if line else template
        super().__init__(f"{where}: {message}")


class DeliveryError(SequencerError):
    """Base of the SMTP outcomes other than success; ``reply`` is the server's words."""

    def __init__(self, message: str, code: int | None = None, reply: str = "") -> None:
        super().__init__(message)
        self.code, self.reply = code, reply


class TransientDeliveryError(DeliveryError):
    """Nothing was delivered and it may work later: connection, TLS, AUTH, 4xx before DATA ends."""


class PermanentDeliveryError(DeliveryError):
    """Delivery failed for good (5xx to RCPT or DATA). ``recipient_unknown`` = a 5.1.x reply."""

    def __init__(
        self,
        message: str,
        code: int | None = None,
        reply: str = "",
        recipient_unknown: bool = False,
    ) -> None:
        super().__init__(message, code, reply)
        self.recipient_unknown = recipient_unknown


class AmbiguousDeliveryError(DeliveryError):
    """The message data was sent but no reply came: it may or may not have been delivered."""


class LostClaim(SequencerError):
    """Right before DATA the sender found its claimed draft changed: another process took the
    claim back (a sweeper that judged it stale: its clock ahead, ``tick --now <future>``, a
    send slower than ``stale_after``). A normal event, not a failure: no DATA was sent, and the
    draft is that process's now (released to approved, it is sent once by whoever claims it)."""

    def __init__(self, draft_id: int) -> None:
        self.draft_id = draft_id
        super().__init__(f"draft {draft_id}: claim taken back by another process; not sent")


class NoSentFolder(SequencerError):
    """The mailbox's server marks no folder ``\\Sent`` (RFC 6154) and the campaign names none."""
