"""`refseq`: the command line entry point."""

from __future__ import annotations

import typer

from sequencer.adapters.cli import (
    attention,
    campaign,
    consent,
    db,
    demo,
    drafts,
    inbox,
    report,
    reps,
    run,
    suppress,
)

app = typer.Typer(
    name="refseq",
    help="Referral-mention email sequencer: campaigns as code, drafts, approval, sending, replies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
campaign.register(app)
drafts.register(app)
reps.register(app)  # `refseq rep …` and `refseq web`
run.register(app)
report.register(app)
inbox.register(app)
demo.register(app)
consent.register(app)  # `refseq consent …` and `refseq flags …`
app.add_typer(suppress.app, name="suppress")
app.add_typer(db.app, name="db")
app.add_typer(attention.app, name="attention")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
