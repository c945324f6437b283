"""``python -m benchmarks``: every stage against its raw baseline, in one run.

    python -m benchmarks --quick              # CI: seconds, every stage, fails only if one errors
    python -m benchmarks                      # a laptop: minutes
    python -m benchmarks --large              # 1M enrollments (tick), 100k prospects (launch)
    python -m benchmarks --only launch,tick --db sqlite --json figures.json

Every module in ``benchmarks/stages/`` is a stage (``STAGE = "name"``, ``run(ctx)``). Each stage
runs once per database in a fresh child process (``python -m benchmarks._one``), so the peak RSS
printed is that stage's own. One line per (stage, database): the items, refseq's rate, the raw
baseline's rate measured in the same run on the same data, their ratio (1.0 = as fast as the
bare minimum), the target, whether it was met, and the peak RSS. ``--json FILE`` writes the
same. The exit status is non-zero only when a stage raised (or timed out), never for a timing.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmarks.harness import PG_DEFAULT

STAGES_DIR = Path(__file__).resolve().parent / "stages"
ROOT = STAGES_DIR.parent.parent
# The order; stages not listed here come after, by name.
ORDER = (
    "launch", "drafting", "sending", "tick", "inbound", "celery", "slow network",
    "reply-to-stop",
)  # fmt: skip
REPS = {"quick": 2, "default": 3, "large": 3}
TIMEOUT = {"quick": 300.0, "default": 1800.0, "large": 7200.0}


@dataclass
class Stage:
    name: str  # STAGE
    module: str  # file name under stages/, without .py


@dataclass
class Outcome:
    stage: Stage
    db: str
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(" ", "-")


def discover() -> list[Stage]:
    """Every ``stages/*.py`` with a ``STAGE = "..."`` (read without importing the module)."""
    found = []
    for path in sorted(STAGES_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = path.stem
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "STAGE" for t in node.targets)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                name = node.value.value
        found.append(Stage(name, path.stem))
    rank = {_norm(n): i for i, n in enumerate(ORDER)}
    return sorted(found, key=lambda s: (rank.get(_norm(s.name), len(ORDER)), s.name))


def _run_child(
    stage: Stage, db: str, args: argparse.Namespace, status: Any, timeout: float
) -> Outcome:
    started = time.perf_counter()
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out_file = tmp.name
    cmd = [
        sys.executable, "-m", "benchmarks._one", stage.module, "--size", args.size,
        "--db", db, "--pg", args.pg, "--reps", str(args.reps), "--redis", args.redis,
        "--out", out_file,
    ]  # fmt: skip
    lines: list[str] = []
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1
    )

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.strip():
                status(line.strip()[:100])

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(timeout=5)
    outcome = Outcome(stage, db, seconds=time.perf_counter() - started)
    try:
        with open(out_file, encoding="utf-8") as fh:
            data = json.load(fh)
        outcome.results = data.get("results", [])
        outcome.error = data.get("error")
    except (OSError, ValueError):
        data = None
    finally:
        os.unlink(out_file)
    if proc.returncode != 0 and outcome.error is None:
        why = "timed out" if data is None and outcome.seconds >= timeout else "died"
        tail = "".join(lines[-30:])
        outcome.error = f"the stage {why} (exit {proc.returncode})\n{tail}"
    if outcome.error and lines:
        outcome.error += "\n-- stderr (last lines) --\n" + "".join(lines[-15:])
    return outcome


def _fmt_rate(rate: float | None, unit: str) -> str:
    if rate is None:
        return "—"
    if rate >= 100:
        return f"{rate:,.0f} {unit}/s"
    return f"{rate:,.1f} {unit}/s"


def _row_cells(r: dict[str, Any]) -> list[str]:
    unit = r.get("unit") or "items"
    ratio = r.get("ratio")
    met = r.get("met")
    rss = r.get("peak_rss_mb")
    return [
        r["stage"],
        r["db"],
        f"{r['items']:,} {unit}",
        _fmt_rate(r.get("rate"), ""),
        _fmt_rate(r.get("baseline_rate"), ""),
        "—" if ratio is None else f"{ratio:.2f}",
        r.get("target") or "—",
        "—" if met is None else ("[green]yes[/]" if met else "[red]no[/]"),
        "—" if rss is None else f"{rss:,.0f} MB",
        r.get("baseline") or "",
    ]


def render_table(console: Console, outcomes: list[Outcome], meta: dict[str, Any]) -> None:
    table = Table(
        title=f"refseq benchmarks ({meta['size']}): {meta['when']}, {meta['machine']}",
        title_justify="left",
    )
    for name, justify in (
        ("stage", "left"), ("db", "left"), ("items", "right"), ("refseq", "right"),
        ("baseline", "right"), ("ratio", "right"), ("target", "left"), ("met", "center"),
        ("peak RSS", "right"), ("baseline is", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for o in outcomes:
        for r in o.results:
            table.add_row(*_row_cells(r))
        if o.error:
            table.add_row(o.stage.name, o.db, "[red]ERROR[/]", *([""] * 7))
    console.print(table)
    notes = [(r["stage"], r["db"], r["notes"]) for o in outcomes for r in o.results if r["notes"]]
    for stage, db, note in notes:
        console.print(f"  [dim]{stage} ({db}): {note}[/]")


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPUs, load {load:.1f}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="size", action="store_const", const="quick",
                      help="tiny sizes for CI (seconds)")  # fmt: skip
    size.add_argument("--large", dest="size", action="store_const", const="large",
                      help="1,000,000 enrollments (tick), 100,000 prospects (launch)")  # fmt: skip
    p.set_defaults(size="default")
    p.add_argument("--only", metavar="STAGE[,STAGE]", help="run only these stages")
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument(
        "--pg", metavar="URL", default=PG_DEFAULT, help="a role that may CREATE DATABASE"
    )
    p.add_argument("--redis", metavar="URL", default="redis://127.0.0.1:6379/14")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    p.add_argument("--reps", type=int, help="repetitions per side (default: 2 quick, else 3)")
    p.add_argument("--timeout", type=float, help="seconds per stage and database")
    p.add_argument("--list", action="store_true", help="list the stages and exit")
    args = p.parse_args(argv)
    if args.reps is None:
        args.reps = REPS[args.size]
    if args.timeout is None:
        args.timeout = TIMEOUT[args.size]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal or console.width < 150:
        console = Console(width=170)  # one line per stage, also in CI logs
    stages = discover()
    if args.list:
        for s in stages:
            console.print(f"{s.name}  [dim](benchmarks/stages/{s.module}.py)[/]")
        return 0
    if args.only:
        wanted = {_norm(w) for w in args.only.split(",") if w.strip()}
        unknown = wanted - {_norm(s.name) for s in stages} - {_norm(s.module) for s in stages}
        if unknown:
            known = ", ".join(s.name for s in stages)
            console.print(f"[red]unknown stage(s): {', '.join(sorted(unknown))}[/] ({known})")
            return 2
        stages = [s for s in stages if _norm(s.name) in wanted or _norm(s.module) in wanted]
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    meta = {
        "size": args.size,
        "when": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": machine(),
        "dbs": dbs,
        "reps": args.reps,
        "argv": sys.argv[1:] if argv is None else argv,
    }
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("[dim]{task.fields[note]}"),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("stages", total=len(stages) * len(dbs), note="")
        for stage in stages:
            for i, db in enumerate(dbs):
                progress.update(task, description=f"{stage.name} ({db})", note="starting")

                def status(line: str) -> None:
                    progress.update(task, note=line)

                outcome = _run_child(stage, db, args, status, args.timeout)
                outcomes.append(outcome)
                progress.advance(task)
                verdict = "[red]ERROR[/]" if outcome.error else "done"
                progress.console.print(f"{stage.name} ({db}): {verdict} in {outcome.seconds:.1f}s")
                if (
                    not outcome.error
                    and outcome.results
                    and all(r["db"] == "-" for r in outcome.results)
                ):
                    progress.advance(task, len(dbs) - i - 1)
                    break  # the stage does not depend on the database
    meta["seconds"] = round(time.perf_counter() - started, 1)
    render_table(console, outcomes, meta)
    errors = [o for o in outcomes if o.error]
    for o in errors:
        console.print(f"\n[red]{o.stage.name} ({o.db}) failed:[/]")
        console.print(o.error, markup=False, highlight=False)
    console.print(f"{len(outcomes)} run(s) in {meta['seconds']:.0f}s, {len(errors)} error(s)")
    if args.json:
        rows = [r for o in outcomes for r in o.results]
        errs = [{"stage": o.stage.name, "db": o.db, "error": o.error} for o in errors]
        Path(args.json).write_text(
            json.dumps({"meta": meta, "results": rows, "errors": errs}, indent=2, default=str)
            + "\n",
            encoding="utf-8",
        )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
