"""Templates that try to exhaust memory, refused by `refseq validate` (the real entry point).

Each attack is the example campaign with one override template. `refseq validate` runs in a
subprocess under an address-space limit (RLIMIT_AS), so an attack that got through would fail
with a MemoryError there instead of taking the machine down; the test then asserts the clear,
located error (template file:line), the exit code, and the peak memory and time measured for
that one process (``os.wait4``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.limited import REFSEQ, run_limited

PEAK_MB = 250  # what validate may reach on any of these (it needs about 60 MB)
SECONDS = 20.0  # generous: the deadline per render is 2 s, the machine is shared
TOO_LONG = "output is longer than 100000 characters"


# 10**4 references to one 99,999-character text, built by list literals (no filter, no call)
NESTED = (
    "{% set y = 'x' * 99999 %}{% set l = [y,y,y,y,y,y,y,y,y,y] %}{% set m = [l,l,l,l,l,l,l,l,l,l] %}"
    "{% set n = [m,m,m,m,m,m,m,m,m,m] %}{% set o = [n,n,n,n,n,n,n,n,n,n] %}"
)


@dataclass(frozen=True)
class Attack:
    id: str
    body: str
    line: int = 1
    message: str = TOO_LONG


ATTACKS = [
    Attack(
        "indent(99999) in a loop",
        "Hi\n{% set x = 'a\\n' * 5000 %}{% for i in range(1000) %}{{ x|indent(99999) }}"
        "{% endfor %}\n",
        2,
    ),
    Attack("join with a huge separator", "{{ range(99999)|join('x' * 99999) }}\n"),
    Attack("str.join with a huge separator", "{{ ('x' * 99999).join(range(99999)|map('string')) }}\n"),
    Attack("tojson of a repeated list", "{{ (['x' * 99999] * 99999)|tojson|length }}\n"),
    Attack("string of a repeated list", "{{ (['x' * 99999] * 99999)|string|length }}\n"),
    Attack("list doubling", "{% set ns = namespace(l=[1] * 99999) %}{% for i in range(30) %}"
           "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}\n"),
    Attack("sum of lists", "{{ ([[1]] * 40000)|sum(start=[])|length }}\n",
           message="sandbox violation: sum adds numbers only"),
    Attack("wordwrap with a huge wrapstring",
           "{{ ('a ' * 50000)|wordwrap(1, wrapstring='x' * 99999) }}\n"),
    Attack("urlize with a huge target", "{{ ('a.com ' * 16000)|urlize(target='x' * 99999) }}\n"),
    Attack("map center", "{{ ('x' * 99999)|list|map('center', 99999)|join }}\n"),
    Attack("macro output in a loop", "{% macro m() %}{% for i in range(99999) %}{{ 'x' * 99999 }}"
           "{% endfor %}{% endmacro %}{{ m()|length }}\n"),
    Attack("set block in a loop", "\n{% set y %}{% for i in range(99999) %}{{ 'x' * 99999 }}"
           "{% endfor %}{% endset %}{{ y|length }}\n", 2),
    Attack("caller() in a loop", "{% macro w() %}{{ caller() }}{% endmacro %}{% call w() %}"
           "{% for i in range(99999) %}{{ 'x' * 99999 }}{% endfor %}{% endcall %}\n"),
    Attack("macro recursion doubling its argument",
           "{% macro m(s, n) %}{% if n < 60 %}{{ m(s ~ s, n + 1) }}{% else %}{{ s|length }}"
           "{% endif %}{% endmacro %}{{ m('xx', 0) }}\n"),
    Attack("translate", "{{ ('a' * 99999).translate({97: 'b' * 99999})|length }}\n"),
    Attack("tojson of nested list literals", f"{NESTED}{{{{ o|tojson|length }}}}\n"),
    Attack("printing nested list literals", f"{NESTED}{{{{ o }}}}\n"),
    Attack("~ of nested list literals", f"{NESTED}{{{{ ('a' ~ o)|length }}}}\n"),
    Attack("a 5 MB template file", "Hi\n" + "{{ prospect.first_name }} " * 200_000, line=0,
           message="the file is 5,200,003 bytes; a template file may have at most 1,048,576"),
    Attack("int squaring", "{% set ns = namespace(n=2 ** 4000) %}{% for i in range(40) %}"
           "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n > 0 }}\n",
           message="sandbox violation: the result of * would be too large"),
]  # fmt: skip


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("example") / "camp"
    subprocess.run([str(REFSEQ), "init", str(folder)], check=True, capture_output=True)
    return folder


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_a_template_that_would_exhaust_memory_is_a_located_error(
    attack: Attack, example: Path, tmp_path: Path
) -> None:
    camp = tmp_path / "camp"
    shutil.copytree(example, camp)
    folder = camp / "tpl" / "cold_intro"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Hello {{ prospect.first_name }}\n", encoding="utf-8")
    (folder / "body.txt").write_text(attack.body, encoding="utf-8")
    yaml = camp / "campaign.yaml"
    yaml.write_text(yaml.read_text(encoding="utf-8") + "templates: tpl\n", encoding="utf-8")
    env = {**os.environ, "REFSEQ_DATABASE_URL": f"sqlite:///{tmp_path}/refseq.db"}

    code, stderr, peak_mb, seconds = run_limited(["validate", str(yaml)], env)

    lines = stderr.splitlines()
    assert code == 1, stderr[-2000:]
    where = f"{folder}/body.txt:{attack.line}" if attack.line else f"{folder}/body.txt"
    assert lines[0].startswith(f"{where}: {attack.message}"), lines[:3]
    assert "MemoryError" not in stderr
    assert peak_mb < PEAK_MB, f"validate peaked at {peak_mb:.0f} MB"
    assert seconds < SECONDS, f"validate took {seconds:.1f}s"


def test_the_drafting_worker_refuses_a_template_edited_after_launch(
    example: Path, tmp_path: Path
) -> None:
    """Templates can change after launch: the drafting pass (`refseq tick --only draft`, the
    workers' job) meets the attack, reports it for each prospect and stays small."""
    camp = tmp_path / "camp"
    shutil.copytree(example, camp)
    folder = camp / "tpl" / "cold_intro"
    folder.mkdir(parents=True)
    shipped = Path(__file__).resolve().parents[2] / "templates" / "email" / "cold_intro"
    shutil.copytree(shipped, folder, dirs_exist_ok=True)
    yaml = camp / "campaign.yaml"
    yaml.write_text(yaml.read_text(encoding="utf-8") + "templates: tpl\n", encoding="utf-8")
    env = {
        **os.environ,
        "REFSEQ_DATABASE_URL": f"sqlite:///{tmp_path}/refseq.db",
        "REFSEQ_BASE_URL": "https://refseq.acme.example",  # drafts carry public links
    }
    now = "2026-11-24T10:00:00+00:00"  # a Tuesday: London and Paris mornings (cold prospects)
    subprocess.run([str(REFSEQ), "launch", str(yaml), "--now", now], env=env, check=True,
                   capture_output=True)  # fmt: skip
    (folder / "body.txt").write_text(ATTACKS[0].body, encoding="utf-8")  # indent(99999)

    code, stderr, peak_mb, seconds = run_limited(["tick", "--only", "draft", "--now", now], env)

    lines = stderr.splitlines()
    assert code == 1, stderr[-2000:]
    assert sorted(lines) == [
        f"{email}: step 1: cold_intro/body.txt:2: output is longer than 100000 characters"
        for email in ("marc.dubois@paysage.example", "priya.nair@fintrust.example")
    ], lines
    assert "MemoryError" not in stderr
    assert peak_mb < PEAK_MB, f"drafting peaked at {peak_mb:.0f} MB"
    assert seconds < SECONDS, f"drafting took {seconds:.1f}s"
