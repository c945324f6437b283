"""A throwaway Dovecot IMAP server for tests (see STACK-NOTES §5a).

``Dovecot.start()`` writes a standalone config into a fresh world-readable temp dir (not pytest's
0700 ``tmp_path``: Dovecot's auth process runs as another user), starts ``dovecot -F`` on free
loopback ports and waits for the IMAP greeting; ``stop()`` SIGKILLs its process group.

* ``port``: plain IMAP with STARTTLS; ``ssl_port``: implicit TLS. The certificate is self-signed
  for ``localhost``/``127.0.0.1``; ``ssl_context()`` trusts it.
* Users live in one passwd-file *per user* (``users.d/%u``, PLAIN passwords), so ``user(name)``
  creates them on the fly. A single shared passwd-file would not do: Dovecot re-reads it at most
  once per second, so a user added right after a login is unknown for up to a second, and that
  failed login then earns the anvil auth penalty (~4 s per login from 127.0.0.1).
* ``auth_failure_delay = 0``; still, do failing logins from 127.0.0.2 (the penalty is per IP).
* As root, mail is owned by ``mail`` (Dovecot refuses uid 0); otherwise everything runs as the
  current user.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from imapclient import IMAPClient

INSTALL_HINT = (
    "install it with `apt-get install -y --no-install-recommends dovecot-imapd` (CI's .ci/run does)"
)
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
NO_USERS_KICKED = 68  # doveadm kick: nobody was connected (EX_NOUSER)
INDEX_FILES = ("dovecot-uidlist", "dovecot.index", "dovecot.index.log", "dovecot.index.cache")


class DovecotUnavailable(RuntimeError):
    """Dovecot is missing or would not start; the message says why and what to do."""


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if not found:
        raise DovecotUnavailable(f"`{name}` not found: Dovecot is not installed; {INSTALL_HINT}")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Dovecot:
    host = "127.0.0.1"

    def __init__(self, root: Path, port: int, ssl_port: int) -> None:
        self.root, self.port, self.ssl_port = root, port, ssl_port
        self.config = root / "dovecot.conf"
        self.cafile = root / "cert.pem"
        self.log_path = root / "dovecot.log"
        self._passwords: dict[str, str] = {}
        self._process: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            mail, login, internal = "mail", "dovenull", "dovecot"
        else:
            mail = login = internal = pwd.getpwuid(os.geteuid()).pw_name
        self._mail_uid, self._mail_gid = pwd.getpwnam(mail).pw_uid, pwd.getpwnam(mail).pw_gid
        self._login_user, self._internal_user = login, internal

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    def start(cls, timeout: float = 10.0) -> Dovecot:
        dovecot = _binary("dovecot")
        root = Path(tempfile.mkdtemp(prefix="refseq-dovecot-"))
        root.chmod(0o755)
        server = cls(root, _free_port(), _free_port())
        try:
            server._write_files()
            server._spawn(dovecot, timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)  # the master and all its children
            self._process.wait(timeout=10)
            self._process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def _write_files(self) -> None:
        for name in ("run", "state", "mail", "users.d"):
            (self.root / name).mkdir(mode=0o755)
        os.chown(self.root / "mail", self._mail_uid, self._mail_gid)
        subprocess.run(
            [_binary("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(self.root / "key.pem"), "-out", str(self.cafile)],
            check=True, capture_output=True,
        )  # fmt: skip
        unprivileged = os.geteuid() != 0
        users = self.root / "users.d" / "%u"
        self.config.write_text(
            CONFIG.format(
                root=self.root,
                port=self.port,
                ssl_port=self.ssl_port,
                uid=self._mail_uid,
                internal=self._internal_user,
                internal_group=_group_of(self._internal_user),
                login=self._login_user,
                users=users,
                anvil="service anvil {\n  chroot =\n}\n" if unprivileged else "",
            )
        )

    def _spawn(self, dovecot: str, timeout: float) -> None:
        stderr = (self.root / "stderr.log").open("wb")
        with stderr:
            self._process = subprocess.Popen(
                [dovecot, "-F", "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise DovecotUnavailable(
                    f"dovecot exited with {self._process.returncode} at startup:\n{self.logs()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=1) as sock,
            ):
                if sock.recv(100).startswith(b"* OK"):
                    return
            if time.monotonic() > deadline:
                raise DovecotUnavailable(f"no IMAP greeting within {timeout}s:\n{self.logs()}")
            time.sleep(0.02)

    def logs(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.root / "stderr.log", self.log_path)]
        return "\n".join(part for part in parts if part.strip())[-4000:]

    # -- users and clients ------------------------------------------------------------------

    def user(self, name: str) -> tuple[str, str]:
        """(login, password) of ``name``, created on first use."""
        if name not in self._passwords:
            if not USER_NAME.fullmatch(name):
                raise ValueError(f"bad test user name {name!r}")
            password = f"pw-{name}"
            home = self.root / "mail" / name
            line = f"{name}:{{PLAIN}}{password}:{self._mail_uid}:{self._mail_gid}::{home}\n"
            path = self.root / "users.d" / name
            tmp = path.with_suffix(".tmp")
            tmp.write_text(line)
            tmp.chmod(0o644)
            tmp.replace(path)
            self._passwords[name] = password
        return name, self._passwords[name]

    @contextlib.contextmanager
    def client(self, user: str) -> Iterator[IMAPClient]:
        """A logged-in plain-text client (the fixture's own view of the mailbox)."""
        login, password = self.user(user)
        with IMAPClient(self.host, self.port, ssl=False, timeout=10) as client:
            client.login(login, password)
            yield client

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    # -- mailbox helpers --------------------------------------------------------------------

    def append(
        self,
        user: str,
        folder: str,
        raw: bytes,
        flags: Sequence[bytes | str] = (),
        date: datetime | None = None,
    ) -> int:
        """APPEND ``raw`` (``date`` becomes its INTERNALDATE); returns its UID."""
        with self.client(user) as client:
            if folder != "INBOX" and not client.folder_exists(folder):
                client.create_folder(folder)
            reply = client.append(folder, raw, flags=flags, msg_time=date)
        match = re.search(rb"APPENDUID \d+ (\d+)", reply)
        assert match, reply
        return int(match.group(1))

    def flags(self, user: str, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        """UID → FLAGS of every message (read through a read-only SELECT)."""
        with self.client(user) as client:
            client.select_folder(folder, readonly=True)
            data = client.fetch(client.search(["ALL"]), ["FLAGS"])
            return {uid: tuple(item[b"FLAGS"]) for uid, item in data.items()}

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.client(user) as client:
            value: int = client.select_folder(folder, readonly=True)[b"UIDVALIDITY"]
            return value

    def delete(self, user: str, folder: str, uids: Sequence[int]) -> None:
        """What a rep's own mail client does: flag \\Deleted and expunge."""
        with self.client(user) as client:
            client.select_folder(folder)
            client.delete_messages(list(uids))
            client.expunge()

    def kick(self, user: str, timeout: float = 5.0) -> None:
        """Disconnect every session of ``user`` and wait until they are gone."""
        doveadm = [_binary("doveadm"), "-c", str(self.config)]
        kicked = subprocess.run([*doveadm, "kick", user], capture_output=True, text=True)
        if kicked.returncode not in (0, NO_USERS_KICKED):
            raise AssertionError(f"doveadm kick {user} failed: {kicked.stderr or kicked.stdout}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            who = subprocess.run([*doveadm, "who", "-1", user], capture_output=True, text=True)
            if user not in who.stdout.split():
                return
            time.sleep(0.02)
        raise AssertionError(f"{user}'s IMAP sessions are still there after {timeout}s")

    def reset_uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        """Simulate a server migration: drop the folder's UID list and indexes, so Dovecot
        renumbers its messages from 1 under a new (greater) UIDVALIDITY. Mail is kept.

        Live sessions are kicked first (their imap process must not rewrite the index).
        Returns the new UIDVALIDITY.
        """
        before = self.uidvalidity(user, folder)
        self.kick(user)
        maildir = self.root / "mail" / user / "Maildir"
        if folder != "INBOX":
            maildir = maildir / ("." + folder.replace("/", "."))
        for name in INDEX_FILES:
            (maildir / name).unlink(missing_ok=True)
        after = self.uidvalidity(user, folder)
        assert after != before, f"UIDVALIDITY of {user}/{folder} did not change ({before})"
        return after


def _group_of(user: str) -> str:
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = refseq-test-{port}
log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = {uid}
last_valid_uid = {uid}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    auto = create
  }}
  # The folder the server files sent mail in is found by its \\Sent attribute (RFC 6154),
  # never by its name: "Sent" above is a decoy that no one marks.
  mailbox "Gesendete Elemente" {{
    special_use = \\Sent
    auto = create
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ssl_port}
    ssl = yes
  }}
  chroot =
}}
{anvil}"""
