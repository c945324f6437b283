"""The processes that render templates run under an address-space limit (RLIMIT_AS).

* ``limit_address_space`` lowers only the soft limit, to the process's size plus the headroom,
  never raises one already lower, and is off with ``REFSEQ_MEMORY_HEADROOM=0``; past it an
  allocation is a MemoryError, not the OOM killer (each in a fresh interpreter).
* The long-running workers have it, read from the outside (``/proc/PID/limits``): `refseq run`
  (the embedded runner) and `celery -A workers.app worker` on the local Redis.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.limited import REFSEQ

REDIS_URL = os.environ.get("REFSEQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
GIB = 1 << 30

PROBE = """
import resource, sys
from sequencer.memlimit import limit_address_space
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
if sys.argv[1] == "lower":
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, hard))
got = limit_address_space()
now = resource.getrlimit(resource.RLIMIT_AS)
try:
    block = bytearray(int(sys.argv[2]))
    allocated = "yes"
except MemoryError:
    allocated = "MemoryError"
print(got, now[0], now[1] == hard, allocated)
"""


def _probe(mode: str, headroom: str, allocate: int) -> list[str]:
    env = {**os.environ, "REFSEQ_MEMORY_HEADROOM": headroom}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(allocate)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return out.split()


def test_the_limit_is_size_plus_headroom_and_stops_a_runaway_allocation() -> None:
    got, soft, hard_kept, allocated = _probe("keep", "256M", 2 * GIB)
    assert got == soft and int(soft) < 2 * GIB  # a fresh interpreter is far below 1.75 GiB
    assert hard_kept == "True"
    assert allocated == "MemoryError"


def test_a_lower_limit_is_kept_and_zero_turns_it_off() -> None:
    got, soft, _, _ = _probe("lower", "16G", 1 << 20)
    assert int(got) == int(soft) == 3 * GIB
    got, _, _, allocated = _probe("keep", "0", 64 << 20)
    assert got == "None" and allocated == "yes"


def _address_limit(pid: int) -> str:
    text = Path(f"/proc/{pid}/limits").read_text(encoding="ascii")
    match = re.search(r"^Max address space\s+(\S+)\s+(\S+)", text, re.M)
    assert match is not None, text
    return match.group(1)


def _wait_for_limit(proc: subprocess.Popen[str], pid_of: int | None = None) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        limit = _address_limit(pid_of or proc.pid)
        if limit != "unlimited":
            return limit
        time.sleep(0.2)
    raise AssertionError("the address-space limit was never set")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_refseq_run_has_the_limit(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "REFSEQ_DATABASE_URL": f"sqlite:///{tmp_path}/refseq.db",
        "REFSEQ_MEMORY_HEADROOM": "3G",
    }
    env.pop("REFSEQ_BROKER_URL", None)
    subprocess.run([str(REFSEQ), "db", "upgrade"], env=env, check=True, capture_output=True)
    log = (tmp_path / "output.txt").open("w")
    proc = subprocess.Popen(
        [str(REFSEQ), "run", "--interval", "3600"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        limit = int(_wait_for_limit(proc))
    finally:
        _stop(proc)
        log.close()
    assert 3 * GIB < limit < 3 * GIB + 2 * GIB, limit


def test_a_celery_worker_has_the_limit(tmp_path: Path) -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc}); start redis-server")
    env = {
        **os.environ,
        "REFSEQ_DATABASE_URL": f"sqlite:///{tmp_path}/refseq.db",
        "REFSEQ_BROKER_URL": REDIS_URL,
        "REFSEQ_MEMORY_HEADROOM": "3G",
    }
    celery = Path(sys.executable).with_name("celery")
    log = (tmp_path / "output.txt").open("w")
    proc = subprocess.Popen(
        [str(celery), "-A", "workers.app", "worker", "--pool", "solo", "-Q", f"none-{os.getpid()}"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        limit = int(_wait_for_limit(proc))
    finally:
        _stop(proc)
        log.close()
    assert 3 * GIB < limit < 3 * GIB + 2 * GIB, limit
