"""Run the real `refseq` entry point in a subprocess under an address-space limit, measured."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

LIMIT = 1 << 30  # the subprocess's address space: 1 GiB (an attack fails there, not here)
REFSEQ = Path(sys.executable).with_name("refseq")


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def run_limited(
    args: list[str], env: dict[str, str], timeout: float = 120.0
) -> tuple[int, str, float, float]:
    """(exit code, stderr, peak RSS in MB, seconds) of one refseq run under RLIMIT_AS; killed
    (exit code -9) after ``timeout`` seconds."""
    started = time.monotonic()
    with subprocess.Popen(
        [str(REFSEQ), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_limit,
    ) as proc:
        assert proc.stderr is not None
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            stderr = proc.stderr.read()
            _, status, usage = os.wait4(proc.pid, 0)  # reaps it: Popen must not wait() too
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, stderr, usage.ru_maxrss / 1024, time.monotonic() - started
