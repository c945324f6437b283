"""Property: whatever the relationship data, suppression list, schedule and clock, no
(enrollment, step) is sent twice, no suppressed address receives anything, and every message is
sent inside the send window in the recipient's zone.

Hypothesis draws a campaign (referrers with random strengths and consent, prospects in random
zones with one to three referrers each, a random suppression list of addresses and domains in
random case, a random window (possibly spanning midnight, any days), holidays, sequences of one
to three steps with short random delays) and a random clock: pass moments with random gaps,
some repeated (a pass run twice at the same moment, as after a crash). Each example is launched
and run with the real services (check → launch → sweep/draft/send passes) on a fresh SQLite
file, sending through the real SMTP adapter to the real aiosmtpd sink. The checks read only
what the sink received (Date and Message-ID headers, envelope recipients) and the drawn data;
the window test is computed here, with the product's ``next_slot`` used as a cross-check.
"""

from __future__ import annotations

import email.utils
import random
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from sequencer.adapters.db.session import make_uow_factory
from sequencer.adapters.smtp import SmtpMailer
from sequencer.bootstrap import draft_config
from sequencer.config import Settings
from sequencer.core.schedule import next_slot
from sequencer.core.spec import load_campaign
from sequencer.services.checking import check_campaign
from sequencer.services.launch import launch_campaign
from sequencer.services.runner import Deps, run_pass
from sequencer.services.sending import SendConfig
from tests.reliability import Recorder, soaking
from tests.smtp_sink import Sink

ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Asia/Kolkata",
    "UTC",
)
DOMAINS = ("a.example", "b.example", "c.example")
DELAYS = ("1 hours", "3 hours", "1 days", "1 business days")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EPOCH = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
GAPS = (0, 20, 45, 60, 60, 90, 120, 180)  # minutes between passes (0: the pass runs again)
EXAMPLES = 300 if soaking() else 40


@dataclass
class Scenario:
    rep_tz: str
    referrers: list[dict[str, Any]]
    prospects: list[dict[str, Any]]
    referrals: list[tuple[str, str, int]]
    suppressed: list[str]  # as written (random case), addresses and @domains, before launch
    late: list[str]  # suppressed while the campaign runs, before pass number ``late_at``
    late_at: int
    zone: str  # schedule.timezone: prospect | rep | an IANA zone
    days: list[str]
    start: time
    end: time
    holidays: list[date]
    sequences: dict[str, list[str]]  # name -> delays of the follow-ups ("" for the first)
    policy: str
    clock: list[datetime] = field(default_factory=list)

    def send_zone(self, prospect_tz: str) -> ZoneInfo:
        if self.zone == "rep":
            return ZoneInfo(self.rep_tz)
        if self.zone == "prospect":
            return ZoneInfo(prospect_tz or self.rep_tz)
        return ZoneInfo(self.zone)

    def inside(self, moment: datetime, zone: ZoneInfo) -> bool:
        """Computed here: the window opens on a listed, non-holiday local day at ``start`` and
        closes at ``end`` (the next day when ``end <= start``); ``start <= t < end``."""
        local_day = moment.astimezone(zone).date()
        for day in (local_day, local_day - timedelta(days=1)):
            if DAYS[day.weekday()] not in self.days or day in self.holidays:
                continue
            opens = datetime.combine(day, self.start, tzinfo=zone).astimezone(UTC)
            closes_day = day + timedelta(days=1) if self.end <= self.start else day
            closes = datetime.combine(closes_day, self.end, tzinfo=zone).astimezone(UTC)
            if opens <= moment < closes:
                return True
        return False


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n_ref = draw(st.integers(1, 4))
    referrers = [
        {
            "id": f"r{i}",
            "name": f"Ref {i}",
            "email": f"r{i}@referrers.example",
            "our_strength": draw(st.integers(1, 5)),
            "consent": draw(st.booleans()),
        }
        for i in range(n_ref)
    ]
    n_pro = draw(st.integers(2, 9))
    prospects = [
        {
            "email": f"p{i}@{draw(st.sampled_from(DOMAINS))}",
            "tz": draw(st.sampled_from((*ZONES, ""))),
        }
        for i in range(n_pro)
    ]
    referrals = []
    for p in prospects:
        chosen = draw(
            st.lists(
                st.sampled_from(referrers), min_size=1, max_size=3, unique_by=lambda r: r["id"]
            )
        )
        referrals += [(r["id"], p["email"], draw(st.integers(1, 5))) for r in chosen]
    suppressed = []
    for p in draw(st.lists(st.sampled_from(prospects), max_size=3, unique_by=lambda p: p["email"])):
        suppressed.append(p["email"].upper() if draw(st.booleans()) else p["email"])
    if draw(st.booleans()):
        suppressed.append("@" + draw(st.sampled_from(DOMAINS)).upper())
    late = [
        p["email"].title()
        for p in draw(
            st.lists(st.sampled_from(prospects), max_size=3, unique_by=lambda p: p["email"])
        )
    ]
    if draw(st.booleans()):
        late.append("@" + draw(st.sampled_from(DOMAINS)))
    start = time(draw(st.integers(0, 23)), draw(st.sampled_from((0, 30))))
    length = timedelta(hours=draw(st.integers(1, 23)), minutes=draw(st.sampled_from((0, 30))))
    end = (datetime.combine(EPOCH.date(), start) + length).time()
    begin = EPOCH + timedelta(hours=draw(st.integers(0, 24 * 6)))
    gaps = draw(st.lists(st.sampled_from(GAPS), min_size=50, max_size=90))
    clock = [begin]
    for gap in gaps:
        clock.append(clock[-1] + timedelta(minutes=gap))
    steps = st.lists(st.sampled_from(DELAYS), min_size=0, max_size=2)
    return Scenario(
        rep_tz=draw(st.sampled_from(ZONES)),
        referrers=referrers,
        prospects=prospects,
        referrals=referrals,
        suppressed=suppressed,
        late=late,
        late_at=draw(st.integers(1, len(clock) - 1)),
        zone=draw(
            st.sampled_from(("prospect", "prospect", "rep", "Asia/Tokyo", "America/Chicago"))
        ),
        days=draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True)),
        start=start,
        end=end,
        holidays=draw(
            st.lists(st.dates(date(2026, 11, 22), date(2026, 12, 3)), max_size=2, unique=True)
        ),
        sequences={name: ["", *draw(steps)] for name in ("warm", "cold", "unnamed")},
        policy=draw(st.sampled_from(("consented", "always"))),
        clock=clock,
    )


def write_campaign(folder: Path, s: Scenario, port: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "referrers.csv").write_text(
        "id,name,email,our_strength,consent\n"
        + "".join(
            f"{r['id']},{r['name']},{r['email']},{r['our_strength']},{'yes' if r['consent'] else 'no'}\n"
            for r in s.referrers
        )
    )
    (folder / "prospects.csv").write_text(
        "email,first_name,timezone\n" + "".join(f"{p['email']},P,{p['tz']}\n" for p in s.prospects)
    )
    (folder / "referrals.csv").write_text(
        "referrer_id,prospect_email,strength,context\n"
        + "".join(f"{r},{p},{n},a colleague\n" for r, p, n in s.referrals)
    )

    def steps(name: str, delays: list[str]) -> str:
        first = (
            "warm_intro" if name == "warm" else "cold_intro" if name == "cold" else "unnamed_intro"
        )
        follow = "warm_follow_up" if name == "warm" else "cold_follow_up"
        out = [f"    - {{template: {first}, approval: auto}}"]
        out += [
            f"    - {{template: {follow}, after: {d}, thread: true, approval: auto}}"
            for d in delays[1:]
        ]
        return f"  {name}:\n" + "\n".join(out) + "\n"

    holidays = ", ".join(d.isoformat() for d in s.holidays)
    yaml = f"""campaign: prop-{uuid.uuid4().hex[:8]}
rep: {{name: Dana Whitfield, email: dana@acme.example, timezone: {s.rep_tz}}}
mailbox:
  smtp: {{host: 127.0.0.1, port: {port}, security: none, username: dana}}
  daily_cap: 10000
  min_gap: 0s
data: {{prospects: prospects.csv, referrers: referrers.csv, referrals: referrals.csv}}
temperature:
  warm_when: {{min_our_strength: 3, min_their_strength: 3}}
  name_referrer: {s.policy}
schedule:
  timezone: {s.zone}
  window: {{days: [{", ".join(s.days)}], start: "{s.start:%H:%M}", end: "{s.end:%H:%M}"}}
  holidays: [{holidays}]
sequences:
{"".join(steps(n, d) for n, d in s.sequences.items())}compliance: {{postal_address: "Acme Inc, 1 Main St, Springfield"}}
routing: {{notify_rep: false, thank_referrer: "off"}}
"""
    (folder / "campaign.yaml").write_text(yaml)
    return folder / "campaign.yaml"


def suppress(db_url: str, values: list[str], now: datetime) -> None:
    from sequencer.services import campaigns

    factory = make_uow_factory(db_url)
    try:
        for value in values:
            campaigns.suppress(factory, value, "property test", "test", now)
    finally:
        factory.dispose()


@dataclass
class Totals:
    examples: int = 0
    passes: int = 0
    sends: int = 0
    enrollments: int = 0
    duplicates: int = 0
    suppressed_sends: int = 0
    outside: int = 0
    disagreements: int = 0
    late_checked: int = 0  # sends after a mid-run suppression (checked against it)


@pytest.mark.reliability
def test_no_double_send_no_suppressed_send_every_send_in_the_window(
    sqlite_template: Path, tmp_path: Path, smtp_sink: Sink, reliability: Recorder
) -> None:
    totals = Totals()
    env = {"REFSEQ_SECRET_KEY": "property-secret-0123456789"}
    cfg = draft_config(Settings.from_env({**env, "REFSEQ_DATABASE_URL": "sqlite://"}))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not soaking(),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(s=scenarios())
    def run(s: Scenario) -> None:
        folder = tmp_path / uuid.uuid4().hex[:10]
        yaml = write_campaign(folder / "camp", s, smtp_sink.port)
        db = folder / "refseq.db"
        shutil.copyfile(sqlite_template, db)
        db_url = f"sqlite:///{db}"
        smtp_sink.handler.received.clear()
        suppress(db_url, s.suppressed, s.clock[0])
        factory = make_uow_factory(db_url)
        deps = Deps(
            uow_factory=factory,
            draft_cfg=cfg,
            send_cfg=SendConfig(env={}),
            mailer_factory=SmtpMailer,
            rng=random.Random(0),
        )
        try:
            check = check_campaign(yaml, cfg)
            assert check.launchable, [p.render() for p in check.problems]
            report = launch_campaign(factory, check, s.clock[0])
            for i, now in enumerate(s.clock):
                if i == s.late_at:
                    suppress(db_url, s.late, now)  # while the campaign runs
                run_pass(deps, now, ("sweep", "draft", "send"))
        finally:
            deps.close()
            factory.dispose()
        spec, _, _ = load_campaign(yaml)
        assert spec is not None
        engine = create_engine(db_url, poolclass=NullPool)
        with engine.connect() as c:
            drafts = {
                row.message_id: row
                for row in c.execute(
                    text(
                        "SELECT message_id, enrollment_id, step_index, to_email, sent_at FROM drafts"
                    )
                )
            }
        engine.dispose()
        zones = {p["email"]: p["tz"] for p in s.prospects}
        blocked = {v.casefold() for v in s.suppressed}
        late = {v.casefold() for v in s.late}
        late_from = s.clock[s.late_at]
        keys: Counter[tuple[int, int]] = Counter()
        for m in smtp_sink.handler.received:
            msg = m.message
            draft = drafts[str(msg["Message-ID"])]
            keys[(draft.enrollment_id, draft.step_index)] += 1
            sent = email.utils.parsedate_to_datetime(str(msg["Date"])).astimezone(UTC)
            for rcpt in m.rcpt_tos:
                address = rcpt.casefold()
                domain = "@" + address.rpartition("@")[2]
                if address in blocked or domain in blocked:
                    totals.suppressed_sends += 1
                if sent >= late_from and (address in late or domain in late):
                    totals.suppressed_sends += 1
                totals.late_checked += bool(late) and sent >= late_from
                zone = s.send_zone(zones[rcpt])
                ok = s.inside(sent, zone)
                totals.outside += not ok
                # cross-check with the product's own window code
                totals.disagreements += ok != (next_slot(sent, spec.schedule, zone) == sent)
        totals.duplicates += sum(n - 1 for n in keys.values())
        totals.examples += 1
        totals.passes += len(s.clock)
        totals.sends += len(smtp_sink.handler.received)
        totals.enrollments += report.enrolled
        assert totals.duplicates == 0, keys
        assert totals.suppressed_sends == 0
        assert totals.outside == 0 and totals.disagreements == 0

    run()
    reliability.record(
        "property",
        "random relationships, suppressions, windows/zones/holidays, sequences and clocks",
        trials=totals.examples,
        duplicates=totals.duplicates,
        wrong_sends=totals.suppressed_sends + totals.outside,
        outcome=f"{totals.examples} examples, {totals.passes} passes, {totals.enrollments} "
        f"enrollments, {totals.sends} sends checked ({totals.late_checked} after a mid-run "
        "suppression): 0 twice, 0 to suppressed, 0 outside the window",
    )
    assert totals.sends > 0  # the examples did send something to check
    assert (totals.duplicates, totals.suppressed_sends, totals.outside) == (0, 0, 0)
