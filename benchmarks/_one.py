"""Run one stage in this (fresh) process and write its results as JSON.

    python -m benchmarks._one MODULE --size quick --db sqlite --out FILE [...]

``python -m benchmarks`` starts one of these per stage and database, so each peak RSS
(``ru_maxrss``) is that stage's own and no stage warms a cache for the next. The results go to
``--out`` (not stdout, which libraries may print to); an exception is written there too, with
its traceback, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
import traceback
from typing import Any

from benchmarks.harness import PG_DEFAULT, Context, Result, peak_rss_mb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._one")
    p.add_argument("module", help="a module of benchmarks/stages, e.g. launch")
    p.add_argument("--size", choices=("quick", "default", "large"), default="default")
    p.add_argument("--db", action="append", default=[], help="sqlite or postgresql (repeatable)")
    p.add_argument("--pg", default=PG_DEFAULT)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix=f"refseq-bench-{args.module}-")
    ctx = Context(
        size=args.size,
        dbs=args.db or ["sqlite"],
        pg_admin_url=args.pg,
        workdir=workdir,
        reps=args.reps,
        redis_url=args.redis,
    )
    out: dict[str, Any] = {"results": [], "error": None}
    started = time.perf_counter()
    status = 0
    try:
        module = importlib.import_module(f"benchmarks.stages.{args.module}")
        results: list[Result] = module.run(ctx)
        for r in results:
            if r.peak_rss_mb is None:
                r.peak_rss_mb = peak_rss_mb()
        out["results"] = [r.as_json() for r in results]
    except BaseException as exc:  # report anything, KeyboardInterrupt included
        out["error"] = "".join(traceback.format_exception(exc))
        status = 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out["wall_seconds"] = time.perf_counter() - started
    out["process_peak_rss_mb"] = peak_rss_mb()
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(out, fh, default=str)
    return status


if __name__ == "__main__":
    sys.exit(main())
