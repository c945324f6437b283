"""Loopback SMTP sinks for the sending benchmarks, each in a process of its own.

* the fast sink: aiosmtpd that accepts everything at once;
* the slow sink: the same, but it holds every message ``hold`` seconds before its 250 (as a
  real remote server does while it queues and scans), with ``await asyncio.sleep`` so one
  event loop holds many concurrent sessions.

A separate process keeps the sink off the benchmark's GIL: refseq and its raw baseline both talk
to a server that costs them nothing but the socket. ``python -m benchmarks.sinks --port P
[--hold 0.3]`` prints ``ready`` and serves until SIGTERM, then prints the count it accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
SINK_COMMAND = (sys.executable, "-m", "benchmarks.sinks")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.accepted = 0
        self.sessions = 0
        self.peak_sessions = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.hold:
            self.sessions += 1
            self.peak_sessions = max(self.peak_sessions, self.sessions)
            try:
                await asyncio.sleep(self.hold)
            finally:
                self.sessions -= 1
        self.accepted += 1
        return "250 2.0.0 Ok: queued"


def serve(port: int, hold: float) -> None:
    from aiosmtpd.controller import Controller

    handler = _Handler(hold)
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        enable_SMTPUTF8=True,
        data_size_limit=10 * 1024 * 1024,
        ready_timeout=10,
    )
    controller.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    controller.stop()
    print(f"accepted {handler.accepted} peak_concurrent {handler.peak_sessions}", flush=True)


class SinkProcess:
    """``with SinkProcess(hold=0.3) as sink: ... sink.port``; ``sink.accepted`` after exit."""

    def __init__(self, hold: float = 0.0) -> None:
        self.hold = hold
        self.port = free_port()
        self.accepted: int | None = None
        self.peak_concurrent: int | None = None
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.sinks",
                "--port",
                str(self.port),
                "--hold",
                str(self.hold),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line.strip() != "ready":
            self._proc.kill()
            raise RuntimeError(f"the SMTP sink did not start: {line!r}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        for line in out.splitlines():
            words = line.split()
            if words[:1] == ["accepted"] and len(words) >= 4:
                self.accepted, self.peak_concurrent = int(words[1]), int(words[3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to hold each message")
    args = parser.parse_args()
    serve(args.port, args.hold)


if __name__ == "__main__":
    main()
