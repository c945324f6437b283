"""Run the real `refseq` CLI in-process against a given database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from sequencer.adapters.cli.main import app
from tests.ports import no_imap_port

NOW = "2026-11-23T20:00:00+00:00"  # Monday 15:00 New York
TEST_SECRET = "test-secret-key-0123456789"
TEST_BASE_URL = "https://refseq.test.example"


class Cli:
    def __init__(self, db_url: str, cwd: Path) -> None:
        # A key (the PostgreSQL runs have no data directory to generate one in) and a public
        # base URL: `tick` and `run` refuse to put loopback unsubscribe links in mail.
        self.env = {
            "REFSEQ_DATABASE_URL": db_url,
            "REFSEQ_SECRET_KEY": TEST_SECRET,
            "REFSEQ_BASE_URL": TEST_BASE_URL,
            "COLUMNS": "200",
        }
        self.cwd = cwd
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0) -> Any:
        result = self.runner.invoke(app, list(args), env=self.env, catch_exceptions=False)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code).stdout)


def init_example(cli: Cli, folder: Path) -> Path:
    """`refseq init folder`, its IMAP pointed at a closed port of ours (tests/ports.py): point
    it at a real server with ``imap_at``; SMTP stays on the example's 2525 until a test points
    it at its sink (the port guard fails a test that sends to 2525)."""
    cli("init", str(folder))
    yaml = folder / "campaign.yaml"
    text = yaml.read_text(encoding="utf-8")
    yaml.write_text(imap_at(text, no_imap_port(), "port: 1143"), encoding="utf-8")
    return yaml


def imap_at(campaign_yaml: str, port: int, old: str | None = None) -> str:
    """The campaign text with its IMAP port set to ``port``."""
    old = old or f"port: {no_imap_port()}"
    assert old in campaign_yaml, f"{old!r} is not in the campaign"
    return campaign_yaml.replace(old, f"port: {port}")
