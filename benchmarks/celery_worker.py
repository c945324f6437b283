"""A real Celery worker for the benchmarks: ``workers.app`` with a private Redis key prefix.

``python -m benchmarks.celery_worker PREFIX [celery worker options]`` runs ``celery worker``
on ``REFSEQ_BROKER_URL`` with every key under ``PREFIX`` (kombu's ``global_keyprefix``), so a
benchmark never touches anyone else's keys on a shared Redis. ``configure(app, prefix)`` does
the same for the publishing side.
"""

from __future__ import annotations

import sys
from typing import Any


def configure(app: Any, broker_url: str, prefix: str) -> None:
    options = dict(app.conf.broker_transport_options or {})
    app.conf.update(
        broker_url=broker_url, broker_transport_options={**options, "global_keyprefix": prefix}
    )


def main() -> None:
    import os

    from workers.app import app

    prefix = sys.argv[1]
    configure(app, os.environ["REFSEQ_BROKER_URL"], prefix)
    app.worker_main(["worker", "--loglevel", "WARNING", "--without-heartbeat", *sys.argv[2:]])


if __name__ == "__main__":
    main()
