"""`refseq db …`: schema migrations."""

from __future__ import annotations

import typer

from sequencer.adapters.cli import output
from sequencer.adapters.cli.common import handle_errors, settings

app = typer.Typer(
    help="Database schema (Alembic migrations; SQLite and PostgreSQL).", no_args_is_help=True
)


@app.command("upgrade")
@handle_errors
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Upgrade the schema of REFSEQ_DATABASE_URL (default: ./refseq.db)."""
    from sequencer.adapters.db.migrate import current
    from sequencer.adapters.db.migrate import upgrade as do_upgrade

    url = settings().database_url
    do_upgrade(url, revision)
    output.out.print(f"schema at revision {current(url)}")


@app.command("current")
@handle_errors
def show_current() -> None:
    """Print the schema revision of the database."""
    from sequencer.adapters.db.migrate import current

    output.out.print(current(settings().database_url) or "empty (run `refseq db upgrade`)")
