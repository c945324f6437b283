"""Settings read once from the environment, with typed helpers that name the bad variable."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sequencer.errors import ConfigError
from sequencer.secretkey import NEW_KEY_HINT, check_key, data_dir, is_public, load_or_create

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def env_secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (Docker secrets)."""
    direct = env.get(name)
    path = env.get(f"{name}_FILE")
    if direct and path:
        raise ConfigError(f"set either {name} or {name}_FILE, not both")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from None
    return direct or None


def _database_url(env: Mapping[str, str]) -> str:
    url = env_str(env, "REFSEQ_DATABASE_URL")
    if url is None:
        return f"sqlite:///{Path.cwd() / 'refseq.db'}"
    if not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
        raise ConfigError(
            f"REFSEQ_DATABASE_URL={url!r}: use sqlite:///path.db or postgresql+psycopg://user@host/db"
        )
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _secret_key(env: Mapping[str, str], database_url: str) -> tuple[str, Path | None]:
    """``REFSEQ_SECRET_KEY`` (or ``_FILE``), else the data directory's generated key file."""
    secret = env_secret(env, "REFSEQ_SECRET_KEY")
    if secret is not None:
        return check_key(secret, "REFSEQ_SECRET_KEY"), None
    directory = data_dir(env, database_url)
    if directory is None:
        raise ConfigError(
            "REFSEQ_SECRET_KEY is not set: with a database server the web queue and the workers "
            "may run on different machines and must sign with one key. Set REFSEQ_SECRET_KEY "
            f"(e.g. {NEW_KEY_HINT}) or REFSEQ_DATA_DIR to a directory they share"
        )
    return load_or_create(directory)


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str | None
    secret_key: str
    base_url: str
    # Where the key came from when it was generated (None: REFSEQ_SECRET_KEY).
    secret_key_file: Path | None = None
    # Mailboxes the embedded runner sends from at once (one thread and SMTP session each).
    send_concurrency: int = 32

    def __post_init__(self) -> None:
        if is_public(self.secret_key):
            raise ConfigError(
                "the secret key is a published development key: refusing to sign anything "
                "with it (see docs/security.md)"
            )

    @property
    def embedded(self) -> bool:
        """No broker configured: the embedded runner does the workers' job in-process."""
        return self.broker_url is None

    @property
    def loopback_links(self) -> bool:
        """Links in mail (unsubscribe, sign-in) would point at this machine only."""
        return is_loopback_url(self.base_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        base_url = env_str(env, "REFSEQ_BASE_URL", DEFAULT_BASE_URL) or ""
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"REFSEQ_BASE_URL={base_url!r} must start with http:// or https://")
        database_url = _database_url(env)
        secret, key_file = _secret_key(env, database_url)
        return cls(
            database_url=database_url,
            broker_url=env_str(env, "REFSEQ_BROKER_URL"),
            secret_key=secret,
            secret_key_file=key_file,
            base_url=base_url.rstrip("/"),
            send_concurrency=env_int(env, "REFSEQ_SEND_CONCURRENCY", 32, minimum=1),
        )


DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is this machine (localhost, 127.0.0.0/8, ::1, 0.0.0.0)."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def require_public_links(settings: Settings, dev: bool) -> None:
    """Refuse to draft or send mail whose unsubscribe link points at loopback (unless ``dev``)."""
    if dev or not settings.loopback_links:
        return
    raise ConfigError(
        f"REFSEQ_BASE_URL is {settings.base_url}: the unsubscribe links in the mail would "
        "point at the sender's own machine, so no prospect could opt out. Set REFSEQ_BASE_URL "
        "to the public address of `refseq web` (e.g. https://refseq.example.com), or pass "
        "--dev to send test mail anyway"
    )
