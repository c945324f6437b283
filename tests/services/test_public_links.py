"""`refseq tick` / `run` refuse to put loopback unsubscribe links in real mail (unless --dev).

The mail is read from the raw bytes aiosmtpd received, parsed with the standard library."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from pathlib import Path

from sequencer.core.states import DraftState
from tests.cli_helpers import Cli, init_example
from tests.smtp_sink import Sink

MON = "2026-11-23T14:00:00+00:00"  # Monday 09:00 in New York: the first steps are due


def launched(db_url: str, tmp_path: Path, sink: Sink) -> Cli:
    cli = Cli(db_url, tmp_path)
    del cli.env["REFSEQ_BASE_URL"]  # what a fresh install has: the loopback default
    yaml = init_example(cli, tmp_path / "camp")
    text = yaml.read_text().replace("port: 2525", f"port: {sink.port}")
    yaml.write_text(text.replace("min_gap: 90s", "min_gap: 0s").replace("required", "auto"))
    cli("launch", str(yaml), "--now", MON)
    return cli


def links(sink: Sink) -> set[str]:
    found = set()
    for r in sink.handler.received:
        msg = message_from_bytes(r.data, policy=policy.default)
        body = msg.get_body(("plain",))
        assert body is not None
        found |= set(re.findall(r"https?://[^/\s]+/u/", body.get_content()))
    return found


def test_a_loopback_base_url_sends_nothing_and_says_what_to_set(
    db_url, tmp_path, smtp_sink, uow_factory
):
    cli = launched(db_url, tmp_path, smtp_sink)
    for args in (("tick", "--now", MON), ("run", "--from", MON, "--until", MON)):
        err = cli(*args, code=1).stderr
        assert "REFSEQ_BASE_URL is http://127.0.0.1:8000" in err
        assert "no prospect could opt out" in err and "--dev" in err
    assert smtp_sink.handler.received == []
    with uow_factory() as uow:  # nothing drafted with a loopback link either
        assert uow.repo.list_drafts(list(DraftState)) == []


def test_a_public_base_url_goes_into_the_links(db_url, tmp_path, smtp_sink):
    cli = launched(db_url, tmp_path, smtp_sink)
    cli.env["REFSEQ_BASE_URL"] = "https://refseq.acme.example"
    cli("tick", "--now", MON)
    assert smtp_sink.handler.received
    assert links(smtp_sink) == {"https://refseq.acme.example/u/"}


def test_dev_allows_loopback_links_for_test_mail(db_url, tmp_path, smtp_sink):
    cli = launched(db_url, tmp_path, smtp_sink)
    cli("tick", "--now", MON, "--dev")
    assert links(smtp_sink) == {"http://127.0.0.1:8000/u/"}


def test_poll_says_what_to_do_and_takes_dev_too(db_url, tmp_path, smtp_sink):
    """`refseq poll` drafts thank-you notes (with links) too: it refuses the loopback default
    like tick and run, and the --dev its message names exists (it once did not)."""
    cli = launched(db_url, tmp_path, smtp_sink)
    err = cli("poll", "--now", MON, code=1).stderr
    assert "REFSEQ_BASE_URL is http://127.0.0.1:8000" in err and "--dev" in err
    errors = cli.json("poll", "--now", MON, "--dev")["errors"]  # exit 0: it reached the mailbox
    assert [e for e in errors if "REFSEQ_IMAP_PASSWORD" not in e] == []
