"""Settings read once from the environment, with typed helpers that name the bad variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sequencer.errors import ConfigError

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


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str | None
    secret_key: str
    base_url: str
    secret_key_is_default: bool = False
    # Mailboxes the embedded runner sends from at once (one thread and SMTP session each).
    send_concurrency: int = 32

    @property
    def embedded(self) -> bool:
        """No broker configured: the embedded runner does the workers' job in-process."""
        return self.broker_url is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        secret = env_secret(env, "REFSEQ_SECRET_KEY")
        base_url = env_str(env, "REFSEQ_BASE_URL", "http://127.0.0.1:8000") or ""
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"REFSEQ_BASE_URL={base_url!r} must start with http:// or https://")
        if secret is not None and len(secret) < 16:
            raise ConfigError("REFSEQ_SECRET_KEY must be at least 16 characters")
        return cls(
            database_url=_database_url(env),
            broker_url=env_str(env, "REFSEQ_BROKER_URL"),
            # A fixed development key keeps the embedded default zero-config; `refseq` warns
            # when it is in use and a broker (production) is configured.
            secret_key=secret or "refseq-development-key-change-me",
            secret_key_is_default=secret is None,
            base_url=base_url.rstrip("/"),
            send_concurrency=env_int(env, "REFSEQ_SEND_CONCURRENCY", 32, minimum=1),
        )
