"""An address-space limit (RLIMIT_AS) for the processes that render templates.

The render sandbox caps what a template may build (``core/render_limits.py``); this is the
backstop under it, so that a way round those caps ends in a ``MemoryError`` (reported as a
template error) instead of the kernel's OOM killer taking the worker and whatever else runs on
the machine. It is set where rendering happens: the Celery worker (``worker_init``: its pool
processes inherit it), a live ``refseq run`` (replays and ``tick`` are not limited) and the
processes of the pre-launch render check.

Safe by construction: only the *soft* limit is lowered (the hard limit is left alone), never
below what the process already uses, and to the process's current size plus a headroom
(``REFSEQ_MEMORY_HEADROOM``, default 4 GiB, in bytes or with a K/M/G suffix; ``0`` turns it
off), which leaves room for every thread stack and malloc arena the process will create. A
limit already lower is kept. Linux only (elsewhere it does nothing).
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Mapping
from pathlib import Path

from sequencer.errors import ConfigError

DEFAULT_HEADROOM = 4 << 30
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
log = logging.getLogger(__name__)


def headroom(env: Mapping[str, str] | None = None) -> int:
    """``REFSEQ_MEMORY_HEADROOM`` in bytes (default 4 GiB; 0 = no limit)."""
    env = os.environ if env is None else env
    raw = (env.get("REFSEQ_MEMORY_HEADROOM") or "").strip().lower().removesuffix("b")
    if not raw:
        return DEFAULT_HEADROOM
    number, unit = (raw[:-1], raw[-1]) if raw[-1] in "kmg" else (raw, "")
    if not number.isdigit():
        raise ConfigError(
            f"REFSEQ_MEMORY_HEADROOM={raw!r} is not a size (use bytes, or e.g. 512M, 4G; 0 = off)"
        )
    return int(number) * _UNITS[unit]


def _current_size() -> int | None:
    """This process's virtual size in bytes (VmSize), or None where /proc is not there."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def limit_address_space(extra: int | None = None) -> int | None:
    """Lower the soft RLIMIT_AS to the current size + ``extra`` (default: the configured
    headroom). Returns the soft limit now in force, or None when none was set."""
    extra = headroom() if extra is None else extra
    size = _current_size()
    if extra <= 0 or size is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = size + extra
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft <= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    except (ValueError, OSError) as exc:  # pragma: no cover - refused by the OS
        log.warning("could not set the address-space limit: %s", exc)
        return None
    return wanted
