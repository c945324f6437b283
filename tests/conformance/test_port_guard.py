"""The port guard (tests/portguard.py): a test that talks to a loopback port it did not open
is refused before a byte leaves and is failed, whatever the code under test made of it."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_helpers import NOW, Cli, init_example
from tests.portguard import ForeignPortError, expect_refusals, opened_ports
from tests.ports import closed_port, no_imap_port

# A program that is not part of the test session listening on loopback (as whatever held
# 127.0.0.1:2525 when `make test` failed): when its stdin closes it says whether anybody
# connected (the kernel completes a connection to a listening socket even before accept).
STRANGER = """
import selectors, socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
sel = selectors.DefaultSelector()
sel.register(s, selectors.EVENT_READ); sel.register(sys.stdin, selectors.EVENT_READ)
ready = {key.fileobj for key, _ in sel.select(timeout=120)}
print("connected" if s in ready else "nobody", flush=True)
"""


@pytest.fixture
def stranger() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    with subprocess.Popen(
        [sys.executable, "-c", STRANGER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:  # closes the pipes and waits
        assert proc.stdout is not None
        try:
            yield int(proc.stdout.readline()), proc
        finally:
            proc.kill()


def heard(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate(timeout=10)  # closes its stdin first
    return out.strip()


def test_a_connection_to_a_strangers_port_is_refused_and_reported(stranger) -> None:
    port, proc = stranger
    assert port not in opened_ports()
    with expect_refusals() as refusals, pytest.raises(ForeignPortError) as raised:
        socket.create_connection(("127.0.0.1", port), timeout=2)
    assert isinstance(raised.value, ConnectionRefusedError)
    with expect_refusals() as more, socket.socket() as sock:
        assert sock.connect_ex(("localhost", port)) != 0
    assert heard(proc) == "nobody"
    (message,) = refusals
    assert f"127.0.0.1:{port}" in message and "test_a_connection_to_a_strangers_port" in message
    assert len(more) == 1


def test_ports_the_session_opened_work_and_are_not_reported() -> None:
    with expect_refusals() as refusals:
        with socket.create_server(("127.0.0.1", 0)) as server:
            client = socket.create_connection(server.getsockname(), timeout=5)
            accepted, _ = server.accept()
            client.close()
            accepted.close()
        with closed_port() as port, pytest.raises(ConnectionRefusedError) as raised:
            socket.create_connection(("127.0.0.1", port), timeout=5)
        assert not isinstance(raised.value, ForeignPortError)  # the kernel's own refusal
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", no_imap_port())) != 0
    assert refusals == []


def test_a_campaign_left_on_a_port_the_test_did_not_open_sends_nothing_and_fails(
    db_url: str, tmp_path: Path, stranger
) -> None:
    """The `make test` failure: the campaign's SMTP port is one somebody else listens on."""
    port, proc = stranger
    cli = Cli(db_url, tmp_path)
    yaml = init_example(cli, tmp_path / "camp")
    text = yaml.read_text().replace("port: 2525", f"port: {port}")
    yaml.write_text(text.replace("approval: required", "approval: auto"))
    cli("launch", str(yaml), "--now", NOW)
    with expect_refusals() as refusals:
        tick = cli.json("tick", "--now", NOW)
    assert tick["send"]["sent"] == 0
    assert refusals and all(f"127.0.0.1:{port}" in r for r in refusals)
    assert heard(proc) == "nobody"
