"""A cutting TCP proxy: forwards loopback connections to a server and can cut one mid-stream.

Put it between a client and a real server (here: the IMAP reader and Dovecot). For each new
connection, the next entry of :attr:`CuttingProxy.plan` says where to cut it (None: never):

* ``Cut(after=n)``: after ``n`` bytes of server→client traffic;
* ``Cut(after=n, marker=b"BODY[] {")``: ``n`` bytes after the first time ``marker`` appears in the
  server→client stream (e.g. inside the first message literal of a FETCH).

At the cut the proxy forwards exactly the bytes up to that point, then shuts both sockets, as a
dying server or a NAT timeout would: the client sees a connection closed in the middle of a
response. :attr:`CuttingProxy.connections` records, per connection, the bytes forwarded each
way, whether it was cut, and the server's bytes up to the cut (to prove *where* it was cut).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

CHUNK = 16 * 1024
KEEP = 64 * 1024  # server bytes kept per connection for inspection (the start of the stream)


@dataclass(frozen=True)
class Cut:
    after: int
    marker: bytes | None = None


@dataclass
class Connection:
    cut_plan: Cut | None
    down: int = 0  # server → client bytes forwarded
    up: int = 0  # client → server bytes forwarded
    cut: bool = False
    head: bytearray = field(default_factory=bytearray)  # the first KEEP server bytes
    tail: bytes = b""  # the last bytes forwarded before the cut
    _armed_at: int | None = None  # absolute offset where the cut falls, once known

    def limit(self, chunk: bytes) -> int | None:
        """How many bytes of ``chunk`` may pass before the cut (None: all of them)."""
        plan = self.cut_plan
        if plan is None:
            return None
        if self._armed_at is None:
            if plan.marker is None:
                self._armed_at = plan.after
            else:
                carry = self.tail[len(self.tail) - len(plan.marker) + 1 :] if self.tail else b""
                at = (carry + chunk).find(plan.marker)
                if at < 0:
                    return None
                self._armed_at = self.down - len(carry) + at + len(plan.marker) + plan.after
        room = self._armed_at - self.down
        return room if room < len(chunk) else None


class CuttingProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.plan: list[Cut | None] = []
        self.connections: list[Connection] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # so that close() is noticed
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._acceptor.start()

    def cut_next(self, cut: Cut | None) -> None:
        with self._lock:
            self.plan.append(cut)

    @property
    def cuts(self) -> int:
        with self._lock:
            return sum(c.cut for c in self.connections)

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                conn = Connection(self.plan.pop(0) if self.plan else None)
                self.connections.append(conn)
                self._sockets += [client, server]
            for target, args in (
                (self._down, (server, client, conn)),
                (self._up, (client, server, conn)),
            ):
                thread = threading.Thread(target=target, args=args, daemon=True)
                self._threads.append(thread)
                thread.start()

    def _down(self, server: socket.socket, client: socket.socket, conn: Connection) -> None:
        try:
            while True:
                chunk = server.recv(CHUNK)
                if not chunk:
                    break
                room = conn.limit(chunk)
                if room is not None:
                    client.sendall(chunk[:room])
                    self._note(conn, chunk[:room])
                    conn.cut = True
                    break
                client.sendall(chunk)
                self._note(conn, chunk)
        except OSError:
            pass
        finally:
            _shut(client, server)

    @staticmethod
    def _note(conn: Connection, data: bytes) -> None:
        if len(conn.head) < KEEP:
            conn.head += data[: KEEP - len(conn.head)]
        conn.tail = (conn.tail + data)[-256:]
        conn.down += len(data)

    @staticmethod
    def _up(client: socket.socket, server: socket.socket, conn: Connection) -> None:
        try:
            while True:
                chunk = client.recv(CHUNK)
                if not chunk:
                    break
                server.sendall(chunk)
                conn.up += len(chunk)
        except OSError:
            pass
        finally:
            _shut(client, server)

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)
        for thread in self._threads:
            thread.join(5)
        self._acceptor.join(5)


def _shut(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


@contextlib.contextmanager
def cutting_proxy(host: str, port: int) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
