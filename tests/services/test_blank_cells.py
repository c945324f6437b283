"""Blank CSV cells a template prints with no fallback are reported per row by `refseq validate`.

An empty ``industry`` rendered "growing its  team." and validate said OK. Now every row whose
blank cell a template prints is reported with the file, row, column and the template line;
a template that gives a fallback (``fallback``, ``default``, an ``if`` guard, ``or``) is not.
Through the real CLI, both databases (launch refuses it too, and writes nothing).
"""

from __future__ import annotations

from pathlib import Path

from tests.cli_helpers import NOW, Cli, init_example
from tests.faults.badinput import nonzero, row_counts

BODY = """Hi {{ prospect.first_name }},

I saw {{ prospect.company }} is growing its {{ prospect.industry }} team.
{{ prospect.industry|upper }}
{{ prospect.industry|fallback('a') }} {{ prospect.industry or 'b' }} {{ prospect.industry|default('c') }}
{% if prospect.industry %}In {{ prospect.industry }}.{% endif %}
{{ referral.context|fallback('You know each other.') }} {{ referrer.our_context }}

{{ rep.name }}
"""


def _campaign(cli: Cli, tmp_path: Path) -> Path:
    yaml = init_example(cli, tmp_path / "camp")
    prospects = yaml.with_name("prospects.csv")
    text = prospects.read_text(encoding="utf-8-sig")
    text = text.replace("America/New_York,banking", "America/New_York,")  # Elena, row 2: warm
    text = text.replace("Europe/Paris,payments", "Europe/Paris,  ")  # Marc, row 5: blank too
    prospects.write_text(text, encoding="utf-8")
    referrers = yaml.with_name("referrers.csv")
    text = referrers.read_text(encoding="utf-8")
    lines = text.splitlines()
    fields = lines[1].split(",")  # james-hervin, row 2
    fields[8] = ""  # our_context
    lines[1] = ",".join(fields)
    referrers.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in ("warm_intro", "cold_intro"):
        folder = yaml.parent / "tpl" / name
        folder.mkdir(parents=True)
        (folder / "subject.txt").write_text("Hi {{ prospect.first_name }}\n", encoding="utf-8")
        (folder / "body.txt").write_text(BODY, encoding="utf-8")
    yaml.write_text(yaml.read_text(encoding="utf-8") + "templates: tpl\n", encoding="utf-8")
    return yaml


def test_blank_cells_printed_without_fallback_are_reported_per_row(
    db_url: str, tmp_path: Path
) -> None:
    cli = Cli(db_url, tmp_path)
    yaml = _campaign(cli, tmp_path)
    warm = yaml.parent / "tpl" / "warm_intro" / "body.txt"
    cold = yaml.parent / "tpl" / "cold_intro" / "body.txt"

    lines = cli("validate", str(yaml), code=1).stderr.splitlines()

    def expected(source: str, row: int, column: str, body: Path, line: int, var: str) -> str:
        variable = f"{var}.{column}"
        return (
            f"{source}: row {row}: {column}: is empty, and {body}:{line} prints it with no "
            f"fallback (fill it in, or write {{{{ {variable}|fallback('...') }}}} in the template)"
        )

    assert lines[:-1] == [
        expected("prospects.csv", 2, "industry", warm, 3, "prospect"),
        expected("prospects.csv", 2, "industry", warm, 4, "prospect"),
        expected("prospects.csv", 5, "industry", cold, 3, "prospect"),
        expected("prospects.csv", 5, "industry", cold, 4, "prospect"),
        expected("referrers.csv", 2, "our_context", warm, 7, "referrer"),
    ], "\n".join(lines)
    assert lines[-1].endswith("campaign.yaml: 5 problem(s)")

    before = row_counts(db_url)
    cli("launch", str(yaml), "--now", NOW, code=1)
    assert nonzero(row_counts(db_url)) == nonzero(before)


def test_a_template_with_fallbacks_for_blank_cells_validates(db_url: str, tmp_path: Path) -> None:
    cli = Cli(db_url, tmp_path)
    yaml = _campaign(cli, tmp_path)
    text = BODY.replace("its {{ prospect.industry }} team", "its {{ prospect.industry|d('') }}")
    text = text.replace("{{ prospect.industry|upper }}", "{{ prospect.industry|d('x')|upper }}")
    text = text.replace("{{ referrer.our_context }}", "{{ referrer.our_context or '' }}")
    for name in ("warm_intro", "cold_intro"):
        (yaml.parent / "tpl" / name / "body.txt").write_text(text, encoding="utf-8")
    assert "OK" in cli("validate", str(yaml)).stdout
