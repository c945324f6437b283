"""Launch throughput (issue 2: "100k prospects must work"), measured against a raw baseline.

    python benchmarks/launch_bench.py                 # 20,000 prospects, SQLite
    python benchmarks/launch_bench.py --large         # 100,000 prospects
    python benchmarks/launch_bench.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test

It writes N prospects, N/25 referrers and ~1.7 N referrals (seeded, so every run sees the same
data) next to a copy of the example campaign YAML in a temporary folder, then times, each phase in
a fresh child process (so each peak RSS is that phase's own):

* ``check``: ``check_campaign`` = parse the YAML, read and validate the three CSVs (email
  validation, dedupe, warm/cold inputs) and render every step for every prospect;
  ``check (no render)`` is the same without the render check.
* ``launch``: ``launch_campaign`` into a fresh, migrated SQLite file (and a fresh PostgreSQL
  database with ``--pg``), then the same launch again (must enroll nobody).
* ``report``: once a sent step 1, replies (10%), auto-replies, bounces and handoffs are seeded
  for those enrollments (set-based SQL, untimed), the report service (funnel + leaderboard +
  edges) grouped by temperature, step and referrer, in a process of its own as `refseq report`.
* the RAW BASELINE, in the same run on the same files: ``csv.reader`` over the three CSVs; a plain
  ``sqlite3`` ``executemany`` of N rows into a minimal table (one transaction, same pragmas);
  ``psycopg`` ``executemany`` of N rows with ``--pg``; and plain-driver ``fetchall`` of the rows
  the report reads.

Figures: seconds, prospects per second (every figure divides N prospects by its seconds), the
phase's peak RSS, and the ratio refseq / baseline (how many times slower than the bare minimum).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``benchmarks.data`` importable
    sys.path.insert(0, str(ROOT))

# The generated campaign and the fresh PostgreSQL databases are shared with python -m benchmarks.
from benchmarks.data import CAMPAIGN, NOW, fresh_pg, generate, libpq_url  # noqa: E402

# -- measuring (in the child process) ----------------------------------------------------------


def rss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Recorder:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    @contextmanager
    def time(self, name: str, **extra: Any) -> Iterator[dict[str, Any]]:
        row: dict[str, Any] = {"name": name, "rss_before_mb": rss_mb(), **extra}
        start = time.perf_counter()
        yield row
        row["seconds"] = time.perf_counter() - start
        row["peak_rss_mb"] = rss_mb()
        self.rows.append(row)


def _check(yaml: Path, render: bool) -> Any:
    from sequencer import bootstrap
    from sequencer.config import Settings
    from sequencer.services.checking import check_campaign

    cfg = (
        bootstrap.draft_config(
            Settings.from_env({"REFSEQ_SECRET_KEY": "benchmark-secret-key-0123456789"})
        )
        if render
        else None
    )
    return check_campaign(yaml, cfg)


def phase_raw_read(rec: Recorder, folder: Path, n: int) -> None:
    with rec.time("raw: csv.reader, 3 files") as row:
        total = 0
        for name in ("prospects.csv", "referrers.csv", "referrals.csv"):
            with (folder / name).open(newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.reader(fh))
            total += len(rows) - 1
        row["detail"] = f"{total} CSV rows"


def _raw_rows(folder: Path) -> list[tuple[Any, ...]]:
    with (folder / "prospects.csv").open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        next(reader)
        return [(1, r[0].casefold(), r[0], "ref-0", "warm") for r in reader]


def phase_raw_sqlite(rec: Recorder, folder: Path, n: int) -> None:
    rows = _raw_rows(folder)
    path = folder / "raw.db"
    path.unlink(missing_ok=True)
    with rec.time("raw: sqlite3 executemany", detail=f"{len(rows)} rows"):
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE enrollments (id INTEGER PRIMARY KEY, campaign_id INTEGER,"
            " prospect_key TEXT, prospect_email TEXT, referrer_id TEXT, temperature TEXT,"
            " UNIQUE (campaign_id, prospect_key))"
        )
        with db:
            db.executemany(
                "INSERT INTO enrollments (campaign_id, prospect_key, prospect_email, referrer_id,"
                " temperature) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        db.close()


def phase_raw_pg(rec: Recorder, folder: Path, n: int, admin_url: str) -> None:
    import psycopg

    rows = _raw_rows(folder)
    with (
        fresh_pg(admin_url) as url,
        rec.time("raw: psycopg executemany", detail=f"{len(rows)} rows"),
        psycopg.connect(libpq_url(url)) as conn,
    ):
        conn.execute(
            "CREATE TABLE enrollments (id SERIAL PRIMARY KEY, campaign_id INTEGER,"
            " prospect_key TEXT, prospect_email TEXT, referrer_id TEXT, temperature TEXT,"
            " UNIQUE (campaign_id, prospect_key))"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO enrollments (campaign_id, prospect_key, prospect_email,"
                " referrer_id, temperature) VALUES (%s, %s, %s, %s, %s)",
                rows,
            )
        conn.commit()


def phase_check(rec: Recorder, folder: Path, n: int, render: bool) -> None:
    name = "refseq: check_campaign" + ("" if render else " (no render)")
    with rec.time(name) as row:
        check = _check(folder / "campaign.yaml", render)
        assert check.launchable, [p.render() for p in check.problems[:5]]
        row["detail"] = f"{len(check.row_problems)} row problems"


def seed_outcomes(uow_factory: Any) -> dict[str, int]:
    """Set-based: step 1 sent to every active enrollment; 10% reply (half interested, handed
    off), 3% auto-reply, 2% bounce. Not timed: it only gives the report something to count."""
    from sqlalchemy import String, cast, func, insert, literal, select, update

    from sequencer.adapters.db.report_queries import DRAFTS, ENROLLMENTS, HANDOFFS, INBOUND
    from sequencer.adapters.db.types import JSONDocument, UTCDateTime

    e = ENROLLMENTS
    sent_at = literal(NOW + timedelta(hours=1), UTCDateTime)
    with uow_factory() as uow:
        s = uow.session
        s.execute(
            insert(DRAFTS).from_select(
                [
                    "enrollment_id", "campaign_id", "step_index", "template", "state", "to_email",
                    "subject", "text", "headers", "message_id", "due_at", "revision",
                    "created_at", "updated_at", "attempts", "sent_at",
                ],
                select(
                    e.c.id, e.c.campaign_id, literal(0), e.c.sequence + literal("_intro"),
                    literal("sent"), e.c.prospect_email, literal("Hello"), literal("Hi"),
                    literal({}, JSONDocument),
                    literal("<b") + cast(e.c.id, String) + literal("@bench.example>"),
                    sent_at, literal(1), sent_at, sent_at, literal(1), sent_at,
                ).where(e.c.state == "active"),
            )
        )  # fmt: skip
        klass_rules = (
            ("human_reply", "interested", 20, 0),
            ("human_reply", "question", 20, 10),
            ("auto_reply", None, 33, 5),
            ("hard_bounce", None, 50, 7),
        )
        for klass, intent, mod, rest in klass_rules:
            received = literal(NOW + timedelta(hours=30 + mod), UTCDateTime)
            s.execute(
                insert(INBOUND).from_select(
                    [
                        "dedupe_key", "mailbox_key", "raw", "received_at", "fetched_at", "status",
                        "klass", "intent", "evidence", "extracted", "enrollment_id",
                    ],
                    select(
                        literal(f"<{klass}-{mod}-{rest}-") + cast(e.c.id, String) + literal(">"),
                        literal("dana@127.0.0.1:1143/INBOX"), literal(b""), received, received,
                        literal("handled"), literal(klass), literal(intent, String),
                        literal([], JSONDocument), literal({}, JSONDocument), e.c.id,
                    ).where(e.c.state == "active", e.c.id % mod == rest),
                )
            )  # fmt: skip
        s.execute(
            insert(HANDOFFS).from_select(
                [
                    "inbound_id", "enrollment_id", "campaign_id", "rep_email", "intent",
                    "reply_text", "state", "created_at",
                ],
                select(
                    INBOUND.c.id, INBOUND.c.enrollment_id, e.c.campaign_id,
                    literal("dana@acme.example"), INBOUND.c.intent, literal("yes"),
                    literal("open"), INBOUND.c.received_at,
                )
                .join(e, e.c.id == INBOUND.c.enrollment_id)
                .where(INBOUND.c.intent == "interested"),
            )
        )  # fmt: skip
        replied = select(INBOUND.c.enrollment_id).where(INBOUND.c.klass == "human_reply")
        s.execute(update(e).where(e.c.id.in_(replied)).values(state="replied"))
        counts = {
            "sent": s.scalar(select(func.count()).select_from(DRAFTS)) or 0,
            "inbound": s.scalar(select(func.count()).select_from(INBOUND)) or 0,
            "handoffs": s.scalar(select(func.count()).select_from(HANDOFFS)) or 0,
        }
        uow.commit()
    return counts


RAW_REPORT_QUERIES = (
    "SELECT e.id, c.name, e.temperature, e.sequence, {rid}, {rname}, e.may_name_referrer,"
    " e.prospect_email, e.state, e.created_at FROM enrollments e JOIN campaigns c"
    " ON c.id = e.campaign_id WHERE c.name = 'q4-fintech-intros'",
    "SELECT enrollment_id, step_index, template, sent_at FROM drafts WHERE state = 'sent'",
    "SELECT enrollment_id, klass, intent, received_at FROM inbound_messages"
    " WHERE enrollment_id IS NOT NULL",
    "SELECT enrollment_id, created_at FROM handoffs",
)


def _raw_fetch(execute: Callable[[str], list[Any]], rid: str, rname: str) -> int:
    return sum(len(execute(q.format(rid=rid, rname=rname))) for q in RAW_REPORT_QUERIES)


def phase_launch(rec: Recorder, folder: Path, url: str, backend: str) -> None:
    """Launch into the fresh database at ``url``, launch again, then seed outcomes (untimed)."""
    from sequencer.adapters.db.migrate import ensure_schema
    from sequencer.adapters.db.session import make_uow_factory
    from sequencer.services.launch import launch_campaign

    check = _check(folder / "campaign.yaml", render=False)  # timed in its own phase
    ensure_schema(url)
    uow_factory = make_uow_factory(url)
    try:
        with rec.time(f"refseq: launch_campaign ({backend})") as row:
            result = launch_campaign(uow_factory, check, NOW)
            row["detail"] = f"{result.enrolled} enrolled"
        with rec.time(f"refseq: launch again ({backend})") as row:
            again = launch_campaign(uow_factory, check, NOW)
            assert again.enrolled == 0, again.enrolled
            row["detail"] = "0 enrolled (idempotent)"
        seed_outcomes(uow_factory)
    finally:
        uow_factory.dispose()


def phase_report(rec: Recorder, url: str, backend: str) -> None:
    """The report service on the launched, seeded campaign, in a process of its own (as
    `refseq report` runs), against a plain-driver fetch of the same rows."""
    from sequencer.adapters.db.report_queries import load_facts
    from sequencer.adapters.db.session import make_uow_factory
    from sequencer.services.reporting import report

    uow_factory = make_uow_factory(url)
    try:
        for by in ("temperature", "step", "referrer"):
            with rec.time(f"refseq: report --by {by} ({backend})") as row:
                r = report(uow_factory, CAMPAIGN, by, load_facts)
                t = r.total.all
                row["detail"] = (
                    f"{t.enrolled} enrolled, {t.sent} sent, {t.replied} replied, "
                    f"{t.handed_off} handed off, {len(r.referrers)} referrers"
                )
    finally:
        uow_factory.dispose()
    with rec.time(f"raw: fetch report rows ({backend})") as row:
        if backend == "sqlite":
            db = sqlite3.connect(url.removeprefix("sqlite:///"))
            fetched = _raw_fetch(
                lambda q: db.execute(q).fetchall(),
                "json_extract(e.referrer, '$.id')",
                "json_extract(e.referrer, '$.name')",
            )
            db.close()
        else:
            import psycopg

            with psycopg.connect(libpq_url(url)) as conn:
                fetched = _raw_fetch(
                    lambda q: conn.execute(q).fetchall(),  # type: ignore[arg-type]
                    "e.referrer->>'id'",
                    "e.referrer->>'name'",
                )
        row["detail"] = f"{fetched} rows"


def child(args: argparse.Namespace) -> None:
    rec = Recorder()
    folder, n = Path(args.dir), args.n
    phase = args.phase
    backend = "postgresql" if phase.endswith("-pg") else "sqlite"
    if phase == "raw-read":
        phase_raw_read(rec, folder, n)
    elif phase == "raw-sqlite":
        phase_raw_sqlite(rec, folder, n)
    elif phase == "raw-pg":
        phase_raw_pg(rec, folder, n, args.pg)
    elif phase == "check-parse":
        phase_check(rec, folder, n, render=False)
    elif phase == "check":
        phase_check(rec, folder, n, render=True)
    elif phase in {"launch-sqlite", "launch-pg"}:
        phase_launch(rec, folder, args.db, backend)
    elif phase in {"report-sqlite", "report-pg"}:
        phase_report(rec, args.db, backend)
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    json.dump(rec.rows, sys.stdout)


# -- orchestration (in the parent process) -----------------------------------------------------


def run_phase(
    phase: str, folder: Path, n: int, pg: str | None, db: str | None = None
) -> list[dict[str, Any]]:
    cmd = [sys.executable, __file__, "--phase", phase, "--dir", str(folder), "--n", str(n)]
    if pg:
        cmd += ["--pg", pg]
    if db:
        cmd += ["--db", db]
    print(f"  {phase} …", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"phase {phase} failed (exit {done.returncode})")
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


# refseq figure → the baseline(s) it is divided by
RATIOS: dict[str, tuple[str, ...]] = {
    "refseq: check_campaign (no render)": ("raw: csv.reader, 3 files",),
    "refseq: check_campaign": ("raw: csv.reader, 3 files",),
    "refseq: launch_campaign (sqlite)": ("raw: sqlite3 executemany",),
    "refseq: launch again (sqlite)": ("raw: sqlite3 executemany",),
    "refseq: launch_campaign (postgresql)": ("raw: psycopg executemany",),
    "refseq: launch again (postgresql)": ("raw: psycopg executemany",),
    "refseq: report --by temperature (sqlite)": ("raw: fetch report rows (sqlite)",),
    "refseq: report --by step (sqlite)": ("raw: fetch report rows (sqlite)",),
    "refseq: report --by referrer (sqlite)": ("raw: fetch report rows (sqlite)",),
    "refseq: report --by temperature (postgresql)": ("raw: fetch report rows (postgresql)",),
    "refseq: report --by step (postgresql)": ("raw: fetch report rows (postgresql)",),
    "refseq: report --by referrer (postgresql)": ("raw: fetch report rows (postgresql)",),
}


def summarise(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    secs = {r["name"]: r["seconds"] for r in rows}
    out = []
    for r in rows:
        bases = RATIOS.get(r["name"], ())
        base = sum(secs[b] for b in bases if b in secs) if all(b in secs for b in bases) else 0
        ratio = r["seconds"] / base if base else None
        out.append({**r, "per_second": n / r["seconds"], "ratio": ratio})
    # end to end: what `refseq launch FILE` does (read + check + store) against read + insert
    e2e = [
        ("refseq: check (no render) + launch, sqlite", "refseq: check_campaign (no render)",
         "refseq: launch_campaign (sqlite)", "raw: sqlite3 executemany"),
        ("refseq: check (no render) + launch, postgresql", "refseq: check_campaign (no render)",
         "refseq: launch_campaign (postgresql)", "raw: psycopg executemany"),
    ]  # fmt: skip
    for name, check, launch, raw in e2e:
        if check in secs and launch in secs and raw in secs:
            total = secs[check] + secs[launch]
            base = secs["raw: csv.reader, 3 files"] + secs[raw]
            out.append(
                {"name": name, "seconds": total, "per_second": n / total, "ratio": total / base,
                 "peak_rss_mb": None, "detail": "sum of the two lines above"}
            )  # fmt: skip
    return out


def print_table(rows: list[dict[str, Any]], n: int, meta: str) -> None:
    width = max(len(r["name"]) for r in rows)
    print(f"\nrefseq launch benchmark: {n:,} prospects; {meta}")
    head = (
        f"{'measurement':<{width}}  {'seconds':>8}  {'prospects/s':>11}  {'peak RSS':>9}  "
        f"{'x baseline':>10}  detail"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        rss = f"{r['peak_rss_mb']:.0f} MB" if r.get("peak_rss_mb") else ""
        ratio = f"{r['ratio']:.1f}x" if r.get("ratio") else ""
        print(
            f"{r['name']:<{width}}  {r['seconds']:>8.2f}  {r['per_second']:>11,.0f}  {rss:>9}  "
            f"{ratio:>10}  {r.get('detail', '')}"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000, help="prospects (default 20,000)")
    p.add_argument("--large", action="store_true", help="100,000 prospects")
    p.add_argument("--pg", metavar="URL", help="also PostgreSQL: a role that may CREATE DATABASE")
    p.add_argument("--keep", metavar="DIR", help="generate into DIR (new or empty) and keep it")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        child(args)
        return
    n = 100_000 if args.large else args.n
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="refseq-bench-"))
    try:
        print(f"generating {n:,} prospects in {folder} …", file=sys.stderr, flush=True)
        start = time.perf_counter()
        generate(folder, n)
        print(f"  done in {time.perf_counter() - start:.1f}s", file=sys.stderr)
        rows: list[dict[str, Any]] = []
        for phase in ("raw-read", "raw-sqlite", "check-parse", "check"):
            rows += run_phase(phase, folder, n, args.pg)
        db_file = folder / "refseq.db"
        for stale in (db_file, folder / "refseq.db-wal", folder / "refseq.db-shm"):
            stale.unlink(missing_ok=True)  # --keep DIR from an earlier run
        sqlite_url = f"sqlite:///{db_file}"
        for phase in ("launch-sqlite", "report-sqlite"):
            rows += run_phase(phase, folder, n, args.pg, sqlite_url)
        if args.pg:
            rows += run_phase("raw-pg", folder, n, args.pg)
            with fresh_pg(args.pg) as pg_url:
                for phase in ("launch-pg", "report-pg"):
                    rows += run_phase(phase, folder, n, args.pg, pg_url)
        summary = summarise(rows, n)
        meta = (
            f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
            f"{os.cpu_count()} CPUs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        )
        if args.json:
            json.dump({"prospects": n, "meta": meta, "rows": summary}, sys.stdout, indent=2)
            print()
        else:
            print_table(summary, n, meta)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
