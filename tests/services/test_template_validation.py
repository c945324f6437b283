"""`refseq validate` renders every step for every prospect and reports template file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_helpers import NOW, Cli, init_example


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return Cli(db_url, tmp_path)


def with_template(cli, tmp_path, name, subject, body):
    yaml = init_example(cli, tmp_path / "camp")
    folder = yaml.parent / "tpl" / name
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text(subject)
    (folder / "body.txt").write_text(body)
    yaml.write_text(yaml.read_text() + "templates: tpl\n")
    return yaml, folder


WARM = (
    "elena.park@northbank.example",
    "john.reyes@ledgerline.example",
    "sam.ortiz@cleardesk.example",
)


def test_an_undefined_variable_is_reported_with_file_line_and_prospect(cli, tmp_path, uow_factory):
    yaml, folder = with_template(
        cli,
        tmp_path,
        "warm_intro",
        "Hi {{ prospect.first_name }}\n",
        "Hello,\n\n{{ prospect.nickname }}\n",
    )
    err = cli("validate", str(yaml), code=1).stderr.splitlines()
    assert err[:3] == [
        f"{folder}/body.txt:3: undefined variable: 'prospect' has no attribute 'nickname', for prospect {p}"
        for p in WARM
    ]
    assert "nothing was changed" in cli("launch", str(yaml), "--now", NOW, code=1).stderr
    with uow_factory() as uow:
        assert uow.repo.list_campaigns() == []


@pytest.mark.parametrize(
    ("body", "line", "problem"),
    [
        ("ok\n{% if %}\n", 2, "syntax error: Expected an expression, got 'end of statement block'"),
        ("{{ ''.__class__.__mro__ }}\n", 1, "sandbox violation"),
        ("{{ cycler.__init__.__globals__ }}\n", 1, "sandbox violation"),
        (
            "a\nb\n{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}\n",
            3,
            "sandbox violation",
        ),
    ],
)
def test_syntax_errors_and_sandbox_escapes_fail_validation(cli, tmp_path, body, line, problem):
    yaml, folder = with_template(cli, tmp_path, "cold_intro", "Hello\n", body)
    first = cli("validate", str(yaml), code=1).stderr.splitlines()[0]
    assert first.startswith(f"{folder}/body.txt:{line}: {problem}")
    assert "<class" not in first


def test_a_header_line_break_from_the_data_is_caught(cli, tmp_path):
    yaml, folder = with_template(
        cli, tmp_path, "cold_intro", "About {{ referral.context }}\n", "Hi\n"
    )
    referrals = yaml.parent / "referrals.csv"
    referrals.write_text(
        referrals.read_text().replace(
            "met you at an OWASP meetup in Paris", '"met you at an OWASP meetup\nin Paris"'
        )
    )
    err = cli("validate", str(yaml), code=1).stderr
    assert (
        f"{folder}/subject.txt:1: the subject contains a line break, for prospect marc.dubois@paysage.example"
        in err
    )


def test_a_missing_template_points_at_the_step(cli, tmp_path):
    yaml = init_example(cli, tmp_path / "camp")
    yaml.write_text(yaml.read_text().replace("template: cold_breakup", "template: cold_goodbye"))
    err = cli("validate", str(yaml), code=1).stderr
    assert f"{yaml}: sequences.cold[2].template: no template named 'cold_goodbye'" in err


def test_preview_renders_without_storing(cli, tmp_path, uow_factory):
    yaml = init_example(cli, tmp_path / "camp")
    shown = cli.json(
        "preview", str(yaml), "--prospect", "PRIYA.NAIR@fintrust.example", "--step", "3"
    )
    assert [(s["prospect"], s["step"], s["template"]) for s in shown] == [
        ("priya.nair@fintrust.example", 3, "cold_breakup")
    ]
    with uow_factory() as uow:
        assert uow.repo.list_campaigns() == []
