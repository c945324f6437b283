"""Bad templates in a campaign's override folder: `refseq validate` renders every step for every
prospect and refuses each with the template file:line and the prospect, quickly; `launch`
refuses too and nothing is written or sent (a `tick` afterwards finds nothing to send).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.badinput import Sandbox
from tests.reliability import Recorder
from tests.smtp_sink import Sink

COLD = "priya.nair@fintrust.example"  # the first prospect on the cold sequence
UNNAMED = "aiko.tanaka@kumo.example"  # the only prospect on the unnamed sequence


@dataclass(frozen=True)
class Case:
    id: str
    body: str
    line: int
    message: str
    template: str = "cold_intro"
    file: str = "body.txt"
    subject: str = "Hello {{ prospect.first_name }}\n"
    pg: bool = False

    @property
    def prospect(self) -> str:
        return UNNAMED if self.template == "unnamed_intro" else COLD


CASES = [
    Case(
        "syntax error",
        "ok\n{% if %}\n",
        2,
        "syntax error: Expected an expression, got 'end of statement block'",
        pg=True,
    ),
    Case(
        "unclosed block",
        "{% for r in other_referrers %}\n{{ r.name }}\n",
        2,
        "syntax error: Unexpected end of template.",
    ),
    Case(
        "undefined variable",
        "Hello,\n\n{{ prospect.nickname }}\n",
        3,
        "undefined variable: 'prospect' has no attribute 'nickname'",
        pg=True,
    ),
    Case(
        "undefined variable in the subject",
        "Hello\n",
        1,
        "undefined variable: 'referrer' has no attribute 'nick'",
        file="subject.txt",
        subject="Hi from {{ referrer.nick }}\n",
    ),
    Case(
        "__class__.__mro__",
        "{{ ''.__class__.__mro__ }}\n",
        1,
        "sandbox violation: access to attribute '__class__' of 'str' object is unsafe.",
        pg=True,
    ),
    Case(
        "attr('__class__')",
        "a\n{{ prospect|attr('__class__') }}\n",
        2,
        "sandbox violation: access to attribute '__class__' of 'dict' object is unsafe.",
    ),
    Case(
        "str.format field access",
        "{{ '{0.__class__}'.format(prospect) }}\n",
        1,
        "sandbox violation: access to attribute '__class__' of 'dict' object is unsafe.",
    ),
    Case(
        "function __globals__",
        "{{ cycler.__init__.__globals__ }}\n",
        1,
        "sandbox violation: access to attribute '__init__' of 'type' object is unsafe.",
    ),
    Case(
        "__subclasses__()",
        "x\n\n{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}\n",
        3,
        "sandbox violation: access to attribute '__class__' of 'tuple' object is unsafe.",
    ),
    Case(
        "template internals",
        "{{ self._TemplateReference__context }}\n",
        1,
        "sandbox violation: access to attribute '_TemplateReference__context' of "
        "'TemplateReference' object is unsafe.",
    ),
    Case(
        "include outside the template folder",
        "{% include '../../../etc/passwd' %}\n",
        1,
        "template not found: ../../../etc/passwd",
    ),
    Case(
        "range(10**9)",
        "{% for i in range(10**9) %}x{% endfor %}\n",
        1,
        "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).",
    ),
    Case(
        "runaway nested loop (deadline)",
        "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}\n",
        1,
        "rendering took longer than 2.0s",
        template="unnamed_intro",
    ),
    Case(
        "huge output: string repetition",
        "{{ 'x' * 10**6 }}\n",
        1,
        "output is longer than 100000 characters",
        pg=True,
    ),
    Case(
        "huge output: loop",
        "{% for i in range(90000) %}xxxxxxxxxx{% endfor %}\n",
        1,
        "output is longer than 100000 characters",
    ),
    Case(
        "huge output: doubling a namespace string",
        "{% set ns = namespace(s='xx') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}\n",
        1,
        "output is longer than 100000 characters",
    ),
    Case(
        "huge width: center(10**9)",
        "{{ 'a'.center(10**9) }}\n",
        1,
        "sandbox violation: a width or count of 1000000000 is too large",
    ),
    Case(
        "huge number: 9**(9**9)",
        "{{ 9**(9**9) }}\n",
        1,
        "sandbox violation: the result of ** would be too large",
    ),
    Case(
        "lipsum (removed global)",
        "{{ lipsum(1000) }}\n",
        1,
        "undefined variable: 'lipsum' is undefined",
    ),
    Case(
        "infinite macro recursion",
        "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}\n",
        1,
        "too deeply nested (recursion limit reached)",
    ),
    Case(
        "a line break in the subject",
        "Hello\n",
        1,
        "the subject contains a line break",
        file="subject.txt",
        subject="Hello\nBcc: evil@x.example\n",
    ),
]


def _params() -> list[object]:
    out = []
    for case in CASES:
        for db in ("sqlite", "postgresql") if case.pg else ("sqlite",):
            marks = [pytest.mark.pg] if db == "postgresql" else []
            out.append(pytest.param(case, db, id=f"{db}-{case.id}", marks=marks))
    return out


@pytest.fixture
def sandbox(db_url: str, tmp_path: Path, smtp_sink: Sink) -> Sandbox:
    return Sandbox(db_url, tmp_path / "camp", smtp_sink)


@pytest.mark.reliability
@pytest.mark.parametrize(("case", "db_url"), _params(), indirect=["db_url"])
def test_a_bad_template_is_refused_with_file_line_and_prospect(
    case: Case, sandbox: Sandbox, reliability: Recorder
) -> None:
    folder = sandbox.template(case.template, case.subject, case.body)
    outcome = sandbox.refused()
    expected = f"{folder}/{case.file}:{case.line}: {case.message}"
    first = outcome.validate[0]
    reliability.record(
        "templates",
        case.id,
        trials=1,
        wrong_sends=len(sandbox.sink.handler.received),
        outcome=f"refused by validate+launch in {outcome.seconds:.1f}s: {case.message[:70]}",
    )
    assert first.startswith(expected), (first, expected)
    assert first.endswith(f", for prospect {case.prospect}")
    assert outcome.launch[0] == first
    assert "<class" not in "\n".join(outcome.validate)  # nothing of the inside leaks out
