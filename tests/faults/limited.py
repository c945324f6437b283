"""Run the real `refseq` entry point in a subprocess under an address-space limit, measured.

The peak is measured by a small wrapper process, not by pytest itself: a child forked from a
large process (pytest after a thousand tests is hundreds of MB) starts with its parent's pages
mapped, and Linux keeps that high-water mark across ``exec`` in ``ru_maxrss``. The wrapper is
small, so the `refseq` it forks starts small and its ``ru_maxrss`` is its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LIMIT = 1 << 30  # the subprocess's address space: 1 GiB (an attack fails there, not here)
REFSEQ = Path(sys.executable).with_name("refseq")

_WRAPPER = """
import json, os, resource, subprocess, sys
limit = int(sys.argv[1])
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
proc = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, preexec_fn=cap)
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = os.waitstatus_to_exitcode(status)
sys.stdout.write(json.dumps([proc.returncode, usage.ru_maxrss]))
"""


def run_limited(
    args: list[str], env: dict[str, str], timeout: float = 120.0
) -> tuple[int, str, float, float]:
    """(exit code, stderr, peak RSS in MB, seconds) of one refseq run under RLIMIT_AS; killed
    (exit code -9) after ``timeout`` seconds."""
    started = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-I", "-c", _WRAPPER, str(LIMIT), str(REFSEQ), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # a timeout kills the wrapper and refseq together
    ) as proc:
        try:
            out, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, stderr = proc.communicate()
            return -9, stderr, 0.0, time.monotonic() - started
    code, maxrss_kb = json.loads(out)
    return int(code), stderr, maxrss_kb / 1024, time.monotonic() - started
