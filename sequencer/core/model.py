"""Frozen value objects shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time
from enum import StrEnum
from pathlib import Path


class Temperature(StrEnum):
    WARM = "warm"
    COLD = "cold"


class NamePolicy(StrEnum):
    """When a template may name the referrer."""

    CONSENTED = "consented"
    ALWAYS = "always"
    NEVER = "never"


class Security(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    SSL = "ssl"


class Approval(StrEnum):
    REQUIRED = "required"
    AUTO = "auto"


class DelayUnit(StrEnum):
    HOURS = "hours"
    DAYS = "days"
    BUSINESS_DAYS = "business_days"


@dataclass(frozen=True)
class Delay:
    amount: int
    unit: DelayUnit

    def __str__(self) -> str:
        return f"{self.amount} {self.unit.value.replace('_', ' ')}"


@dataclass(frozen=True)
class RepSpec:
    name: str
    email: str
    timezone: str


@dataclass(frozen=True)
class ServerSpec:
    host: str
    port: int
    security: Security
    username: str
    password_env: str | None


@dataclass(frozen=True)
class DkimSpec:
    """Sign outgoing mail: the selector and domain of the DNS record, and the private key file
    (a path, so the key itself never sits in the campaign file or the database)."""

    selector: str
    domain: str
    key_file: Path


@dataclass(frozen=True)
class MailboxSpec:
    smtp: ServerSpec
    imap: ServerSpec | None
    imap_folder: str
    daily_cap: int
    min_gap_seconds: int
    dkim: DkimSpec | None = None
    # Where the server files what is sent over SMTP (e.g. "[Gmail]/Sent Mail"): the workers
    # settle unknown send outcomes from it. None: not checked automatically.
    imap_sent_folder: str | None = None


@dataclass(frozen=True)
class DataFiles:
    prospects: Path
    referrers: Path
    referrals: Path


@dataclass(frozen=True)
class TemperatureRule:
    min_our_strength: int
    min_their_strength: int
    min_nps: int | None
    name_referrer: NamePolicy


@dataclass(frozen=True)
class SendWindow:
    days: tuple[int, ...]  # 0 = Monday
    start: time
    end: time


@dataclass(frozen=True)
class ScheduleSpec:
    timezone: str  # "prospect", "rep" or an IANA zone
    window: SendWindow
    holidays: tuple[date, ...]


@dataclass(frozen=True)
class StepSpec:
    template: str
    after: Delay | None
    thread: bool
    approval: Approval


@dataclass(frozen=True)
class RoutingSpec:
    notify_rep: bool
    webhook_url_env: str | None
    thank_referrer: str  # "draft" | "off"
    # At most one thank-you note per referrer in this long (it names every prospect since).
    thank_window_seconds: int = 86_400
    # The env var with the endpoint's own signing secret; required with webhook_url_env.
    webhook_secret_env: str | None = None


@dataclass(frozen=True)
class CampaignSpec:
    """A validated campaign file. ``sequences`` maps a sequence key to its steps.

    Keys: ``warm`` and ``cold`` always; ``unnamed`` optionally, used for prospects whose referrer
    may not be named (no consent) instead of holding them.
    """

    name: str
    source: Path
    rep: RepSpec
    mailbox: MailboxSpec
    data: DataFiles
    temperature: TemperatureRule
    schedule: ScheduleSpec
    sequences: dict[str, tuple[StepSpec, ...]]
    postal_address: str
    routing: RoutingSpec
    templates_dir: Path | None = None
    description: str = ""


@dataclass(frozen=True)
class Prospect:
    email: str  # normalised (domain lowercased, stripped)
    first_name: str
    last_name: str
    title: str
    company: str
    timezone: str
    custom: dict[str, str] = field(default_factory=dict)
    row: int = 0

    @property
    def key(self) -> str:
        """Case-insensitive identity used for dedupe and suppression."""
        return self.email.casefold()

    @property
    def domain(self) -> str:
        return self.key.rsplit("@", 1)[-1]

    def fields(self) -> dict[str, str]:
        base = {
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "title": self.title,
            "company": self.company,
            "timezone": self.timezone,
        }
        return {**self.custom, **base}


@dataclass(frozen=True)
class Referrer:
    id: str
    name: str
    email: str
    title: str
    company: str
    is_customer: bool
    nps: int | None
    our_strength: int
    our_context: str
    consent: bool
    row: int = 0
    timezone: str = ""  # optional IANA zone: thank-you notes go in their hours (else the rep's)

    def fields(self) -> dict[str, object]:
        zone = {"timezone": self.timezone} if self.timezone else {}
        return {
            **zone,
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "title": self.title,
            "company": self.company,
            "is_customer": self.is_customer,
            "nps": self.nps,
            "our_strength": self.our_strength,
            "our_context": self.our_context,
            "consent": self.consent,
        }


@dataclass(frozen=True)
class Referral:
    referrer_id: str
    prospect_email: str  # normalised like Prospect.email
    strength: int
    context: str
    row: int = 0

    @property
    def prospect_key(self) -> str:
        return self.prospect_email.casefold()


@dataclass(frozen=True)
class Audience:
    """The three CSVs, parsed. Rows with problems are left out and reported in ``problems``."""

    prospects: tuple[Prospect, ...]
    referrers: dict[str, Referrer]
    referrals: tuple[Referral, ...]
