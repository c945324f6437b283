"""Webhooks are signed with the endpoint's own secret and a timestamp, and the receiver in
docs/security.md — run verbatim — verifies real deliveries over HTTP, on both databases."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sequencer.adapters.webhook import UrllibPoster
from sequencer.core.ports import HandoffRecord
from sequencer.services.routing import deliver_webhooks
from tests.cli_helpers import NOW, Cli, init_example

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
MASTER = "test-secret-key-0123456789"  # REFSEQ_SECRET_KEY: signs sessions and unsubscribe links
HOOK_SECRET = "whsec-crm-only-9f8e7d6c5b4a"
AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def receiver_example() -> tuple[str, Any]:
    """The Python block after ``<!-- receiver-example -->`` in docs/security.md, executed."""
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"<!-- receiver-example -->\n```python\n(.*?)```", text, re.S)
    assert found, "docs/security.md lost its receiver example"
    namespace: dict[str, Any] = {}
    exec(compile(found.group(1), str(DOC), "exec"), namespace)
    return found.group(1), namespace["verify"]


@dataclass
class Receiver:
    url: str
    verify: Any
    calls: list[tuple[dict[str, str], bytes, bool]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A CRM on a free loopback port that answers 204 only to what the docs' code accepts."""
    _, verify = receiver_example()
    calls: list[tuple[dict[str, str], bytes, bool]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = verify(HOOK_SECRET.encode(), self.headers.get("X-Refseq-Signature", ""), body)
            calls.append((dict(self.headers), body, ok))
            self.send_response(204 if ok else 401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook", verify, calls)
    server.shutdown()
    server.server_close()


def queue_webhooks(db_url: str, tmp_path: Path, uow_factory, secret_env: str | None) -> list[int]:
    """The example campaign launched through the CLI, and one pending webhook per prospect."""
    cli = Cli(db_url, tmp_path)
    cli("launch", str(init_example(cli, tmp_path / "camp")), "--now", NOW)
    ids = []
    with uow_factory() as uow:
        campaign = uow.repo.list_campaigns()[0].campaign
        for n, e in enumerate(uow.repo.list_enrollments(campaign.id)[:2]):
            inbound = uow.repo.add_inbound(
                f"<r{n}@x.example>", "dana@127.0.0.1:1143/INBOX", None, b"Subject: r\r\n\r\nhi\r\n",
                AT, AT,
            )  # fmt: skip
            assert inbound is not None
            handoff = uow.repo.add_handoff(
                HandoffRecord(
                    0,
                    inbound,
                    e.id,
                    campaign.id,
                    "dana@acme.example",
                    "interested",
                    "Yes",
                    None,
                    "open",
                    None,
                    AT,
                    None,
                    None,
                )
            )
            assert handoff is not None
            uow.repo.add_webhook(
                handoff.id, "CRM_WEBHOOK_URL", {"n": n, "prospect": e.prospect_email}, AT,
                secret_env=secret_env,
            )  # fmt: skip
            ids.append(handoff.id)
        uow.commit()
    return ids


def test_the_documented_receiver_is_ten_lines_and_verifies_a_real_delivery(
    db_url, tmp_path, uow_factory, receiver: Receiver
):
    code, _ = receiver_example()
    assert len(code.strip().splitlines()) <= 10
    queue_webhooks(db_url, tmp_path, uow_factory, "CRM_WEBHOOK_SECRET")
    env = {"CRM_WEBHOOK_URL": receiver.url, "CRM_WEBHOOK_SECRET": HOOK_SECRET}
    report = deliver_webhooks(uow_factory, UrllibPoster(timeout=5), MASTER, env, AT)
    assert (report.webhooks_delivered, report.errors) == (2, [])
    assert [ok for _, _, ok in receiver.calls] == [True, True]
    headers, body, _ = receiver.calls[0]
    fields = dict(p.split("=", 1) for p in headers["X-Refseq-Signature"].split(","))
    assert abs(int(fields["t"]) - time.time()) < 60  # the wall clock, not the scheduler's
    # Not signed with the key that signs sessions and unsubscribe links:
    signed = fields["t"].encode() + b"." + body
    assert fields["v1"] != hmac.new(MASTER.encode(), signed, hashlib.sha256).hexdigest()
    assert not receiver.verify(MASTER.encode(), headers["X-Refseq-Signature"], body)
    # Tampering with the body or the time breaks it:
    assert not receiver.verify(HOOK_SECRET.encode(), headers["X-Refseq-Signature"], body + b" ")
    moved = headers["X-Refseq-Signature"].replace(f"t={fields['t']}", f"t={int(fields['t']) + 1}")
    assert not receiver.verify(HOOK_SECRET.encode(), moved, body)


def test_a_delivery_replayed_after_the_window_is_refused(
    db_url, tmp_path, uow_factory, receiver: Receiver
):
    queue_webhooks(db_url, tmp_path, uow_factory, "CRM_WEBHOOK_SECRET")
    env = {"CRM_WEBHOOK_URL": receiver.url, "CRM_WEBHOOK_SECRET": HOOK_SECRET}
    captured_at = time.time() - 301  # signed 5 minutes and a second ago
    report = deliver_webhooks(
        uow_factory, UrllibPoster(timeout=5), MASTER, env, AT, clock=lambda: captured_at
    )
    assert report.webhooks_delivered == 0 and len(receiver.calls) == 2
    assert not any(ok for _, _, ok in receiver.calls)
    assert all("attempt 1 failed: HTTP 401" in e for e in report.errors)


@pytest.mark.parametrize(
    ("secret_env", "env", "problem"),
    [
        (None, {}, "names no routing.webhook_secret_env"),
        ("CRM_WEBHOOK_SECRET", {}, "CRM_WEBHOOK_SECRET (routing.webhook_secret_env) is not set"),
        ("CRM_WEBHOOK_SECRET", {"CRM_WEBHOOK_SECRET": "short"}, "is too short"),
        ("CRM_WEBHOOK_SECRET", {"CRM_WEBHOOK_SECRET": MASTER}, "is REFSEQ_SECRET_KEY"),
    ],
)
def test_without_its_own_secret_nothing_is_sent_and_the_reason_is_recorded(
    db_url, tmp_path, uow_factory, receiver: Receiver, secret_env, env, problem
):
    queue_webhooks(db_url, tmp_path, uow_factory, secret_env)
    env = {"CRM_WEBHOOK_URL": receiver.url, **env}
    report = deliver_webhooks(uow_factory, UrllibPoster(timeout=5), MASTER, env, AT)
    assert receiver.calls == [] and report.webhooks_delivered == 0
    assert len(report.errors) == 2 and all(problem in e for e in report.errors)
    with uow_factory() as uow:
        (pending, _) = uow.repo.pending_webhooks(AT.replace(year=2027))
    assert pending.attempts == 1 and problem in (pending.last_error or "")
