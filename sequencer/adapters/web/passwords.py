"""Argon2id password hashing (argon2-cffi): the ``services.accounts.PasswordHasher`` adapter."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Argon2Hasher:
    """argon2-cffi's RFC 9106 "low memory" defaults (t=3, m=64 MiB, p=4) unless told otherwise.

    Tests pass tiny parameters; a hash made with other parameters still verifies and is
    re-hashed at the next sign-in (``needs_rehash``).
    """

    def __init__(
        self, time_cost: int | None = None, memory_cost: int | None = None, parallelism: int = 4
    ) -> None:
        defaults = PasswordHasher()
        self._ph = PasswordHasher(
            time_cost=time_cost or defaults.time_cost,
            memory_cost=memory_cost or defaults.memory_cost,
            parallelism=parallelism,
        )

    def hash(self, password: str) -> str:
        return self._ph.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._ph.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._ph.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True


def fast_hasher() -> Argon2Hasher:
    """Cheap parameters for tests only (8 MiB, one pass)."""
    return Argon2Hasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
