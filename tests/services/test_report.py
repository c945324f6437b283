"""`refseq report` on a seeded campaign whose outcomes are known, on SQLite and PostgreSQL.

The example campaign is launched and really sent (aiosmtpd on loopback); the replies, bounces and
handoffs are then written through the repository, as the inbox service would.

Who is who (example data):

======================  ============  ========  =====================================
prospect                referrer      temp.     what happens
======================  ============  ========  =====================================
elena.park (warm)       james-hervin  warm      step 1; replies interested after 4 h;
                                                handed off
sam.ortiz (warm)        james-hervin  warm      steps 1+2; replies not interested
                                                96 h after step 1
john.reyes (warm)       jon-smith     warm      auto-reply after step 1; steps 1+2;
                                                replies interested 78 h after step 1;
                                                handed off
aiko.tanaka (unnamed)   omar-haddad   warm      step 1 only (no consent: never named)
priya.nair (cold)       lena-fox      cold      step 1; hard bounce
marc.dubois (cold)      jon-smith     cold      step 1; unsubscribes
======================  ============  ========  =====================================
"""

from __future__ import annotations

import csv
import io
import json
import random
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sequencer.adapters.db.report_queries import load_facts
from sequencer.adapters.smtp import SmtpMailer
from sequencer.core.drafts import DraftConfig
from sequencer.core.ports import HandoffRecord
from sequencer.core.states import DraftState, EnrollmentState
from sequencer.errors import NotFound
from sequencer.services.reporting import report
from sequencer.services.runner import Deps, run_pass
from sequencer.services.sending import SendConfig
from tests.cli_helpers import Cli, init_example
from tests.smtp_sink import Sink

SECRET = "test-secret-key-0123456789"
CAMPAIGN = "q4-fintech-intros"
MON = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York
H = timedelta(hours=1)


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    c = Cli(db_url, tmp_path)
    c.env["REFSEQ_SECRET_KEY"] = SECRET
    return c


def send_between(uow_factory, start: datetime, end: datetime) -> None:
    """Draft and send, pass by pass, every hour from ``start`` to ``end`` (inclusive)."""
    deps = Deps(
        uow_factory=uow_factory,
        draft_cfg=DraftConfig(SECRET, "https://refseq.acme.example", Path("templates/email")),
        send_cfg=SendConfig(env={}, max_attempts=3),
        mailer_factory=lambda: SmtpMailer(retry_attempts=1, sleep=lambda s: None),
        rng=random.Random(7),
    )
    try:
        now = start
        while now <= end:
            run_pass(deps, now, ["draft", "send"])
            now += H
    finally:
        deps.close()


class Seed:
    """Writes outcomes the way the inbox and routing services do."""

    def __init__(self, uow_factory) -> None:
        self.uow_factory = uow_factory
        with uow_factory() as uow:
            c = uow.repo.get_campaign(CAMPAIGN)
            assert c is not None
            self.campaign_id = c.id
            self.ids = {
                e.prospect_email.split("@")[0]: e.id
                for e in uow.repo.list_enrollments(self.campaign_id)
            }

    def inbound(
        self,
        who: str,
        klass: str,
        at: datetime,
        intent: str | None = None,
        state: EnrollmentState | None = None,
        handoff_at: datetime | None = None,
    ) -> None:
        enrollment_id = self.ids[who]
        with self.uow_factory() as uow:
            inbound_id = uow.repo.add_inbound(
                f"<{who}-{klass}-{at:%d%H}@mail.example>", "dana@127.0.0.1:1143/INBOX", None,
                b"Subject: re\r\n\r\nhello\r\n", at, at,
            )  # fmt: skip
            assert inbound_id is not None
            uow.repo.update_inbound(
                inbound_id,
                status="handled",
                klass=klass,
                intent=intent,
                enrollment_id=enrollment_id,
                handled_at=at,
            )
            if state is not None:
                uow.repo.update_enrollment(enrollment_id, at, state=state, next_due_at=None)
            if handoff_at is not None:
                handoff = HandoffRecord(
                    id=0,
                    inbound_id=inbound_id,
                    enrollment_id=enrollment_id,
                    campaign_id=self.campaign_id,
                    rep_email="dana@acme.example",
                    intent=intent or "interested",
                    reply_text="Happy to talk",
                    redirect_to=None,
                    state="open",
                    notified_at=None,
                    created_at=handoff_at,
                    handled_at=None,
                    handled_by=None,
                )
                assert uow.repo.add_handoff(handoff) is not None
            uow.commit()


def seeded(cli: Cli, tmp_path: Path, sink: Sink, uow_factory) -> None:
    yaml = init_example(cli, tmp_path / "camp")
    text = yaml.read_text().replace("port: 2525", f"port: {sink.port}")
    text = text.replace("min_gap: 90s", "min_gap: 0s").replace(
        "approval: required", "approval: auto"
    )
    yaml.write_text(text)
    cli("launch", str(yaml), "--now", MON.isoformat())

    send_between(uow_factory, MON, utc(2026, 11, 24, 1))  # every step 1 goes out
    seed = Seed(uow_factory)
    seed.inbound(
        "priya.nair", "hard_bounce", MON + timedelta(minutes=5), state=EnrollmentState.BOUNCED
    )
    seed.inbound("john.reyes", "auto_reply", MON + 2 * H)
    seed.inbound(
        "elena.park", "human_reply", MON + 4 * H, "interested",
        EnrollmentState.REPLIED, handoff_at=MON + 4 * H + timedelta(minutes=5),
    )  # fmt: skip
    seed.inbound("marc.dubois", "unsubscribe", MON + 6 * H, state=EnrollmentState.UNSUBSCRIBED)
    seed.inbound("aiko.tanaka", "unknown", MON + 12 * H)  # never a figure

    send_between(uow_factory, utc(2026, 11, 24, 2), utc(2026, 11, 28, 0))  # warm step 2
    seed.inbound(
        "john.reyes", "human_reply", utc(2026, 11, 26, 21), "interested",
        EnrollmentState.REPLIED, handoff_at=utc(2026, 11, 26, 21, 10),
    )  # fmt: skip
    seed.inbound(
        "sam.ortiz", "human_reply", utc(2026, 11, 27, 14), "not_interested", EnrollmentState.REPLIED
    )

    with uow_factory() as uow:
        sent = {
            (v.draft.to_email.split("@")[0], v.draft.step_number): v.draft.sent_at
            for v in uow.repo.list_drafts([DraftState.SENT])
        }
    assert sent == {  # the known sends the figures below rest on
        ("elena.park", 1): utc(2026, 11, 23, 14),
        ("sam.ortiz", 1): utc(2026, 11, 23, 14),
        ("sam.ortiz", 2): utc(2026, 11, 26, 14),
        ("john.reyes", 1): utc(2026, 11, 23, 15),
        ("john.reyes", 2): utc(2026, 11, 26, 15),
        ("priya.nair", 1): utc(2026, 11, 23, 14),
        ("marc.dubois", 1): utc(2026, 11, 23, 14),
        ("aiko.tanaka", 1): utc(2026, 11, 24, 0),
    }


COUNTS = (
    "enrolled", "sent", "bounced", "auto_replied", "replied", "interested", "unsubscribed",
    "handed_off",
)  # fmt: skip


def counts(funnel: dict) -> tuple[int, ...]:
    return tuple(funnel[k] for k in COUNTS)


def test_report_figures_on_a_campaign_with_known_outcomes(cli, tmp_path, smtp_sink, uow_factory):
    seeded(cli, tmp_path, smtp_sink, uow_factory)
    r = json.loads(cli("report", CAMPAIGN, "--format", "json").stdout)
    assert r["campaign"] == CAMPAIGN and r["by"] == "temperature"
    total = r["total"]
    assert counts(total["all"]) == (6, 6, 1, 1, 3, 2, 1, 2)
    assert counts(total["warm"]) == (4, 4, 0, 1, 3, 2, 0, 2)
    assert counts(total["cold"]) == (2, 2, 1, 0, 0, 0, 1, 0)
    assert total["all"]["reply_rate"] == 0.5
    assert total["warm"]["reply_rate"] == 0.75
    assert total["cold"]["reply_rate"] == 0.0
    assert total["cold"]["bounce_rate"] == 0.5
    assert total["cold"]["unsubscribe_rate"] == 0.5
    assert total["all"]["handoff_rate"] == pytest.approx(2 / 6)
    assert total["all"]["send_rate"] == 1.0
    # first send → first human reply: elena 4 h, john 78 h, sam 96 h
    assert total["warm"]["median_first_reply_seconds"] == 78 * 3600
    assert total["cold"]["median_first_reply_seconds"] is None
    assert [(row["group"], counts(row["all"])) for row in r["rows"]] == [
        ("warm", (4, 4, 0, 1, 3, 2, 0, 2)),
        ("cold", (2, 2, 1, 0, 0, 0, 1, 0)),
    ]

    assert [
        (x["referrer_id"], x["enrolled"], x["intros"], x["replies"], x["interested"], x["handoffs"])
        for x in r["referrers"]
    ] == [
        ("james-hervin", 2, 2, 2, 1, 1),
        ("jon-smith", 2, 2, 1, 1, 1),
        ("lena-fox", 1, 1, 0, 0, 0),
        ("omar-haddad", 1, 0, 0, 0, 0),  # no consent: the intro did not name him
    ]
    assert [x["conversion_rate"] for x in r["referrers"]] == [0.5, 0.5, 0.0, 0.0]
    assert r["referrers"][0]["referrer_name"] == "James Hervin"

    edges = {(e["referrer_id"], e["prospect_email"].split("@")[0]): e for e in r["edges"]}
    assert {k: (e["outcome"], e["messages_sent"], e["named"]) for k, e in edges.items()} == {
        ("james-hervin", "elena.park"): ("handed_off", 1, True),
        ("james-hervin", "sam.ortiz"): ("replied", 2, True),
        ("jon-smith", "john.reyes"): ("handed_off", 2, True),
        ("jon-smith", "marc.dubois"): ("unsubscribed", 1, True),
        ("lena-fox", "priya.nair"): ("bounced", 1, True),
        ("omar-haddad", "aiko.tanaka"): ("sent", 1, False),
    }
    assert edges[("james-hervin", "sam.ortiz")]["intent"] == "not_interested"
    assert edges[("jon-smith", "john.reyes")]["first_sent_at"] == "2026-11-23T15:00:00+00:00"

    # the same figures with no campaign named (there is only one)
    everything = json.loads(cli("report", "--format", "json").stdout)
    assert everything["campaign"] is None and everything["total"] == total


def test_report_by_step_template_and_referrer(cli, tmp_path, smtp_sink, uow_factory):
    seeded(cli, tmp_path, smtp_sink, uow_factory)
    by_step = json.loads(cli("report", CAMPAIGN, "--by", "step", "--format", "json").stdout)
    rows = {row["label"]: row for row in by_step["rows"]}
    assert list(rows) == ["step 1", "step 2"]
    # step 1: six messages; elena's reply+handoff, john's auto-reply, priya's bounce, marc's opt-out
    assert counts(rows["step 1"]["all"]) == (6, 6, 1, 1, 1, 1, 1, 1)
    # step 2: john's and sam's messages, both answered
    assert counts(rows["step 2"]["all"]) == (2, 2, 0, 0, 2, 1, 0, 1)
    assert rows["step 2"]["all"]["reply_rate"] == 1.0
    assert rows["step 2"]["all"]["median_first_reply_seconds"] == 87 * 3600
    assert rows["step 1"]["all"]["median_first_reply_seconds"] == 4 * 3600

    by_template = json.loads(cli("report", CAMPAIGN, "--by", "template", "--format", "json").stdout)
    assert {row["group"]: row["all"]["sent"] for row in by_template["rows"]} == {
        "cold_intro": 2,
        "unnamed_intro": 1,
        "warm_follow_up": 2,
        "warm_intro": 3,
    }

    by_referrer = json.loads(cli("report", CAMPAIGN, "--by", "referrer", "--format", "json").stdout)
    rows = {row["group"]: row for row in by_referrer["rows"]}
    assert rows["jon-smith"]["label"] == "Jon Smith"
    assert counts(rows["jon-smith"]["all"]) == (2, 2, 0, 1, 1, 1, 1, 1)
    assert counts(rows["jon-smith"]["warm"]) == (1, 1, 0, 1, 1, 1, 0, 1)
    assert counts(rows["jon-smith"]["cold"]) == (1, 1, 0, 0, 0, 0, 1, 0)


def test_report_table_csv_and_chart(cli, tmp_path, smtp_sink, uow_factory):
    seeded(cli, tmp_path, smtp_sink, uow_factory)
    chart = tmp_path / "report.png"
    table = cli("report", CAMPAIGN, "--by", "step", "--chart", str(chart), "--edges").stdout
    for heading in ("Warm vs cold", "Funnel by step", "Referrer leaderboard", "Referral edges"):
        assert heading in table
    line = next(ln for ln in table.splitlines() if ln.strip("│┃ ").startswith("replied "))
    assert "3 (75.0%)" in line and "0 (0.0%)" in line and "3 (50.0%)" in line
    assert "3d 6h" in table  # warm median time to first reply (78 h)

    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1200, 550)

    rows = list(csv.DictReader(io.StringIO(cli("report", CAMPAIGN, "--format", "csv").stdout)))
    assert [(r["temperature"], r["group"]) for r in rows[:3]] == [
        ("all", "warm"),
        ("warm", "warm"),
        ("cold", "warm"),
    ]
    total = {r["temperature"]: r for r in rows if r["group"] == "all"}
    assert total["all"]["replied"] == "3" and total["all"]["reply_rate"] == "0.5"
    leaders = cli("report", CAMPAIGN, "--format", "csv", "--section", "referrers").stdout
    assert leaders.splitlines()[1].startswith("james-hervin,James Hervin,2,2,2,1,1,0.5")


def test_an_unknown_campaign_or_grouping_is_refused(cli, uow_factory):
    result = cli("report", "nope", code=1)
    assert "no campaign named 'nope'" in result.stderr
    result = cli("report", "--by", "mood", code=2)
    assert "choose one of: temperature, step, referrer, template, campaign" in result.stderr
    with pytest.raises(NotFound):
        report(uow_factory, "nope", "temperature", load_facts)
    empty = report(uow_factory, None, "step", load_facts)
    assert empty.rows == () and empty.total.all.enrolled == 0
