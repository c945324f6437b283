"""launch: CSV → validated, classified enrollments in the database.

refseq's side is what ``refseq launch FILE`` does: ``check_campaign`` (parse the YAML, read and
validate the three CSVs, build the audience, render every step of every prospect's sequence to
catch template problems) and then ``launch_campaign`` (plan warm/cold, strongest path, consent,
suppression, first send time; store the campaign and N enrollments in one transaction) into a
fresh, migrated database.

The raw baseline, on the same files in the same run: ``csv.reader`` over the three CSVs,
``email_validator.validate_email`` on every prospect and referrer address, and one
``executemany`` with the plain driver of the same number of rows (JSON snapshots of the prospect,
its first referrer and the referral) into the same ``enrollments`` table of a fresh, migrated
database, in one transaction. Nothing else.

Target: ratio ≥ 0.35; peak RSS < 400 MB at 100,000 prospects.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.data import NOW, draft_config, fresh_database, generate, raw_connect
from benchmarks.harness import Context, Result, alternate, peak_rss_mb

STAGE = "launch"
MEMORY_TARGET_MB = 400.0


def _note(msg: str) -> None:
    print(f"launch: {msg}", file=sys.stderr, flush=True)


def _ours(yaml: Path, kind: str, ctx: Context, phases: dict[str, list[float]]) -> float:
    from sequencer.adapters.db.session import make_uow_factory
    from sequencer.services.checking import check_campaign
    from sequencer.services.launch import launch_campaign

    cfg = draft_config()
    with fresh_database(kind, ctx.workdir, ctx.pg_admin_url) as url:
        uow_factory = make_uow_factory(url)
        try:
            started = time.perf_counter()
            checked = check_campaign(yaml, cfg)
            assert checked.launchable, [p.render() for p in checked.problems[:5]]
            checked_at = time.perf_counter()
            report = launch_campaign(uow_factory, checked, NOW)
            done = time.perf_counter()
            assert report.enrolled > 0
            del checked, report
        finally:
            uow_factory.dispose()
    phases["check"].append(checked_at - started)
    phases["launch"].append(done - checked_at)
    return done - started


def _raw(yaml: Path, kind: str, ctx: Context) -> float:
    from email_validator import validate_email

    folder = yaml.parent
    with fresh_database(kind, ctx.workdir, ctx.pg_admin_url) as url:
        db = raw_connect(url)
        try:
            started = time.perf_counter()
            tables: dict[str, list[list[str]]] = {}
            for name in ("prospects", "referrers", "referrals"):
                with (folder / f"{name}.csv").open(newline="", encoding="utf-8-sig") as fh:
                    tables[name] = list(csv.reader(fh))
            referrers = {r[0]: r for r in tables["referrers"][1:]}
            for r in referrers.values():
                validate_email(r[2], check_deliverability=False)
            first_referral: dict[str, list[str]] = {}
            for r in tables["referrals"][1:]:
                first_referral.setdefault(r[1], r)
            p_head = tables["prospects"][0]
            r_head = tables["referrers"][0]
            rows: list[tuple[Any, ...]] = []
            stamp = NOW.replace(tzinfo=None) if kind == "sqlite" else NOW
            for p in tables["prospects"][1:]:
                email = validate_email(p[0], check_deliverability=False).normalized
                referral = first_referral[p[0]]
                rows.append(
                    (
                        1, email.casefold(), email, json.dumps(dict(zip(p_head, p, strict=True))),
                        json.dumps(dict(zip(r_head, referrers[referral[0]], strict=True))),
                        json.dumps({"strength": referral[2], "context": referral[3]}), "[]",
                        "warm", "warm", True, "", "active", 0, 0, stamp, stamp, stamp,
                    )
                )  # fmt: skip
            mark = "?" if kind == "sqlite" else "%s"
            cur = db.cursor()
            cur.execute(
                "INSERT INTO campaigns (id, name, status, source, spec_hash, spec, created_at,"
                f" updated_at) VALUES (1, 'raw', 'active', '', '', '{{}}', {mark}, {mark})",
                (stamp, stamp),
            )
            cur.executemany(
                "INSERT INTO enrollments (campaign_id, prospect_key, prospect_email, prospect,"
                " referrer, referral, other_referrals, temperature, sequence, may_name_referrer,"
                " reason, state, steps_done, soft_bounces, next_due_at, created_at, updated_at)"
                f" VALUES ({', '.join([mark] * 17)})",
                rows,
            )
            db.commit()
            return time.perf_counter() - started
        finally:
            db.close()


def run(ctx: Context) -> list[Result]:
    n = ctx.pick(300, 20_000, 100_000)
    yaml = generate(Path(ctx.workdir) / "campaign", n)
    results = []
    for kind in ctx.dbs:
        phases: dict[str, list[float]] = {"check": [], "launch": []}
        rep = [0]

        def ours(
            kind: str = kind, phases: dict[str, list[float]] = phases, rep: list[int] = rep
        ) -> float:
            rep[0] += 1
            _note(f"{kind}: refseq, run {rep[0]} of {ctx.reps}")
            return _ours(yaml, kind, ctx, phases)

        def raw(kind: str = kind) -> float:
            _note(f"{kind}: raw baseline")
            return _raw(yaml, kind, ctx)

        seconds, baseline = alternate(ours, raw, ctx.reps)
        peak = peak_rss_mb()
        ratio = baseline / seconds
        memory_ok = peak < MEMORY_TARGET_MB
        met = ratio >= 0.35 and (memory_ok or n < 100_000)
        check_s = sorted(phases["check"])[len(phases["check"]) // 2]
        launch_s = sorted(phases["launch"])[len(phases["launch"]) // 2]
        results.append(
            Result(
                stage=STAGE,
                db=kind,
                items=n,
                unit="prospects",
                seconds=seconds,
                baseline_seconds=baseline,
                baseline="csv.reader + email-validator + one executemany",
                target=">= 0.35, < 400 MB at 100k",
                met=met,
                peak_rss_mb=peak,
                extra={
                    "check_seconds": check_s,
                    "launch_seconds": launch_s,
                    "memory_target_mb": MEMORY_TARGET_MB,
                    "memory_met": memory_ok,
                },
                notes=(
                    f"check (incl. render check) {check_s:.2f}s + plan & store {launch_s:.2f}s; "
                    f"peak RSS {peak:.0f} MB"
                    + ("" if n >= 100_000 else " (the 400 MB target applies at 100k: --large)")
                ),
            )
        )
    return results
