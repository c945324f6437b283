"""User data in terminal output is printed as it is: rich interprets none of it.

A prospect called ``[bold]Elena[/bold] :x:`` and a referrer context holding ``[red]`` must show
exactly so in `refseq show`, `refseq queue`, `refseq preview` and in `refseq validate`'s problem
lines: no emoji substituted for ``:x:``, no markup swallowed (through the real CLI, both
databases).
"""

from __future__ import annotations

from pathlib import Path

from tests.cli_helpers import NOW, Cli, init_example

NAME = "[bold]Elena[/bold] :x: [link=https://evil.example]x[/link]"
CONTEXT = "met at [red]Money20/20[/red] :thumbs_up:"
REFERRER = "James :x: [i]Hervin[/i]"


def _poisoned(cli: Cli, tmp_path: Path) -> Path:
    yaml = init_example(cli, tmp_path / "camp")
    prospects = yaml.with_name("prospects.csv")
    text = prospects.read_text(encoding="utf-8-sig")
    prospects.write_text(text.replace(",Elena,", f',"{NAME}",', 1), encoding="utf-8")
    referrers = yaml.with_name("referrers.csv")
    text = referrers.read_text(encoding="utf-8")
    text = text.replace("co-presented with us at Money20/20", CONTEXT, 1)
    referrers.write_text(text.replace("James Hervin", REFERRER, 1), encoding="utf-8")
    return yaml


def _plain(output: str) -> None:
    assert "\u274c" not in output  # ❌
    assert "\U0001f44d" not in output  # 👍


def test_user_data_is_printed_literally(db_url: str, tmp_path: Path) -> None:
    cli = Cli(db_url, tmp_path)
    cli.env["REFSEQ_SECRET_KEY"] = "test-secret-key-0123456789"
    yaml = _poisoned(cli, tmp_path)

    preview = cli("preview", str(yaml), "--prospect", "elena.park@northbank.example").stdout
    assert NAME in preview
    _plain(preview)

    cli("launch", str(yaml), "--now", NOW)
    cli("tick", "--now", NOW, "--only", "draft")
    queue = cli("queue").stdout
    assert REFERRER in queue, queue
    _plain(queue)
    ids = {d["prospect"]: d["id"] for d in cli.json("queue")}
    shown = cli("show", str(ids["elena.park@northbank.example"])).stdout
    assert NAME in shown, shown
    assert CONTEXT in shown, shown
    assert REFERRER in shown, shown
    _plain(shown)


def test_problem_lines_are_printed_literally(db_url: str, tmp_path: Path) -> None:
    cli = Cli(db_url, tmp_path)
    yaml = init_example(cli, tmp_path / "camp")
    referrers = yaml.with_name("referrers.csv")
    text = referrers.read_text(encoding="utf-8")
    referrers.write_text(text.replace(",yes,10,5,", ",yes,[bold]:x:,5,", 1), encoding="utf-8")
    lines = cli("validate", str(yaml), code=1).stderr
    assert "nps: '[bold]:x:' is not a whole number" in lines, lines
    _plain(lines)
