"""The installation's secret key: from ``REFSEQ_SECRET_KEY``, else a key file made on first use.

Like Django's, Airflow's and Superset's installs, every refseq data directory gets its own
random key (``secret.key``, 256 bits, mode 0600). The file is created without a race: the key
is written to a private temporary file that is then hard-linked into place, so two processes
starting at once end up with the same key (the loser reads the winner's), and nobody ever sees
a half-written file. A key file that others may read, or that belongs to someone else, is
refused, and so is any key that has ever been published (the old development defaults).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from sequencer.errors import ConfigError

KEY_FILE_NAME = "secret.key"
MIN_KEY_LENGTH = 16
# Keys that were in refseq's source: whoever read it can forge sessions and unsubscribe links.
PUBLIC_KEYS = frozenset(
    {
        "refseq-development-key-change-me",  # the embedded default until this release
        "refseq-demo-secret-key",  # the demo's fixed key
    }
)
NEW_KEY_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def is_public(key: str) -> bool:
    return key.strip() in PUBLIC_KEYS


def check_key(key: str, where: str) -> str:
    """``key`` if it may sign anything; otherwise a ConfigError naming ``where`` it came from."""
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"{where} must be at least {MIN_KEY_LENGTH} characters")
    if is_public(key):
        raise ConfigError(
            f"{where} is a published development key: anyone can forge sessions and "
            f"unsubscribe links with it. Unset it (refseq then generates a private key file) "
            f"or set a new random one: {NEW_KEY_HINT}"
        )
    return key


def data_dir(env: Mapping[str, str], database_url: str) -> Path | None:
    """``REFSEQ_DATA_DIR``, else the SQLite database's directory; None for a server database."""
    explicit = (env.get("REFSEQ_DATA_DIR") or "").strip()
    if explicit:
        return Path(explicit).expanduser()
    prefix = "sqlite:///"
    if database_url.startswith(prefix) and len(database_url) > len(prefix):
        return Path(database_url[len(prefix) :]).parent
    return None


def _check_private(path: Path) -> None:
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} is not a regular file; remove it to generate a new key")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise ConfigError(
            f"{path} belongs to another user (uid {info.st_uid}); run refseq as that user "
            f"or remove the file to generate a new key"
        )
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{path} can be read by others (mode {stat.S_IMODE(info.st_mode):04o}): "
            f"run `chmod 600 {path}` and, since the key may have leaked, rotate it "
            f"(docs/security.md)"
        )


def _read(path: Path) -> str:
    _check_private(path)
    key = path.read_text(encoding="ascii").strip()
    return check_key(key, str(path))


def load_or_create(directory: Path) -> tuple[str, Path]:
    """The key kept in ``directory/secret.key``, made (0600, atomically) if there is none."""
    path = directory / KEY_FILE_NAME
    if path.exists():
        return _read(path), path
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create the data directory {directory}: {exc.strerror}") from None
    tmp = directory / f".{KEY_FILE_NAME}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"cannot write a secret key file in {directory}: {exc.strerror}; set "
            f"REFSEQ_SECRET_KEY or REFSEQ_DATA_DIR to a directory refseq may write"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        # link() fails if another process got there first: then its key is the key.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path), path
