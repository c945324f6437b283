"""Rendering step templates: shipped templates, the context, filters, limits and every failure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sequencer.core.context import build_context
from sequencer.core.render import (
    SHIPPED_TEMPLATES,
    RenderedEmail,
    Renderer,
    available_templates,
    check_template_name,
    fallback,
    first_name,
    join_names,
    possessive,
    render_step,
    template_dirs,
)
from sequencer.errors import RenderError

SHIPPED = (SHIPPED_TEMPLATES,)

PROSPECT = {
    "email": "elena@pixel.io",
    "first_name": "Elena",
    "last_name": "Petrova",
    "title": "CEO",
    "company": "Pixel",
    "timezone": "Europe/Amsterdam",
    "segment": "fintech",
    "Deal Size": "50k",
}
REFERRER = {
    "id": "jon",
    "name": "Jon Smith",
    "email": "jon@altex.com",
    "title": "CISO",
    "company": "Altex",
    "is_customer": True,
    "nps": 9,
    "our_strength": 5,
    "our_context": "worked with our CTO, Jim Walsh, for five years at Microsoft",
    "consent": True,
}
REFERRAL = {"strength": 5, "context": "your former colleague at Chase", "row": 2}
OTHERS = [
    {"name": "Ann Lee", "company": "Corp", "context": "your board member", "may_name": True},
    {"name": "Hidden Person", "company": "Hush", "context": "your sister", "may_name": False},
]
REP = {"name": "Sam Rivera", "email": "sam@acme.io", "title": "Account Executive"}
CAMPAIGN = {"name": "Q3 fintech", "postal_address": "Acme Inc, 1 Main St, Springfield"}
SECRETS = ("Jon", "Smith", "jon@altex.com", "CISO", "Altex", "Jim Walsh", "Hidden", "Hush")


def ctx(
    *,
    temperature: str = "warm",
    named: bool = True,
    internal: bool = False,
    step: int = 1,
    prospect: dict[str, str] | None = None,
    referrer: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return build_context(
        prospect=PROSPECT if prospect is None else prospect,
        referrer=REFERRER if referrer is None else referrer,
        referral=REFERRAL,
        temperature=temperature,
        may_name_referrer=named,
        other_referrers=OTHERS,
        rep=REP,
        campaign=CAMPAIGN,
        step_number=step,
        unsubscribe_url="https://acme.io/u/tok",
        internal=internal,
        extra=extra,
    )


def make_template(root: Path, name: str, subject: str, body: str, html: str | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "subject.txt").write_text(subject, encoding="utf-8")
    (folder / "body.txt").write_text(body, encoding="utf-8")
    if html is not None:
        (folder / "body.html").write_text(html, encoding="utf-8")
    return root


def render_error(name: str, context: dict[str, Any], root: Path, **kwargs: Any) -> str:
    with pytest.raises(RenderError) as info:
        render_step(name, context, (root,), **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- shipped templates

HANDOFF_EXTRA = {"reply_subject": "Re: hi", "reply_excerpt": "Sounds good.\nTuesday at 10?"}


def test_it_ships_every_documented_template() -> None:
    assert available_templates(SHIPPED) == {
        "warm_intro",
        "warm_follow_up",
        "cold_intro",
        "cold_follow_up",
        "cold_breakup",
        "thank_referrer",
        "handoff_notice",
        "unnamed_intro",
    }
    for name in ("warm_intro", "cold_intro"):
        assert (SHIPPED_TEMPLATES / name / "body.html").is_file()


@pytest.mark.parametrize("name", sorted(available_templates(SHIPPED)))
@pytest.mark.parametrize(
    ("temperature", "named"), [("warm", True), ("cold", True), ("cold", False), ("warm", False)]
)
def test_it_renders_every_shipped_template(name: str, temperature: str, named: bool) -> None:
    if name.startswith("warm_") and not named:
        # warm templates name the referrer; unnamed prospects get the "unnamed" sequence, and a
        # warm template used by mistake is a clear error, never a leak
        with pytest.raises(RenderError) as info:
            render_step(name, ctx(named=False), SHIPPED)
        message = str(info.value)
        assert "'referrer' has no attribute" in message
        return
    internal = name in ("thank_referrer", "handoff_notice")
    extra = HANDOFF_EXTRA if name == "handoff_notice" else None
    context = ctx(temperature=temperature, named=named, internal=internal, step=2, extra=extra)
    email = render_step(name, context, SHIPPED)
    assert isinstance(email, RenderedEmail)
    assert email.template == name
    assert email.subject
    assert "\n" not in email.subject
    assert email.text.endswith("\n")
    assert not email.text.endswith("\n\n")
    assert "\n\n\n" not in email.text
    assert "{{" not in email.text
    assert "{%" not in email.text
    assert "None" not in email.text
    if not internal:
        assert email.text.startswith("Hi Elena,\n\n")
        assert email.text.rstrip().endswith("Sam Rivera") or email.text.rstrip().endswith(
            "Account Executive"
        )
        assert len(email.text.split()) < 120
        assert "unsubscribe" not in email.text.lower()  # compose adds the footer
    if not named and not internal:
        for secret in SECRETS:
            assert secret not in email.subject
            assert secret not in email.text
            assert secret not in (email.html or "")


def test_it_writes_the_warm_intro_the_way_a_good_rep_would() -> None:
    email = render_step("warm_intro", ctx(), SHIPPED)
    assert email.subject == "Jon Smith suggested we talk"
    assert email.text == (
        "Hi Elena,\n"
        "\n"
        "Jon Smith, Altex's CISO and your former colleague at Chase, suggested I get in touch."
        " Jon worked with our CTO, Jim Walsh, for five years at Microsoft.\n"
        "\n"
        "Altex is a customer of ours, and Jon thought we could help Pixel in a similar way.\n"
        "\n"
        "Would you be open to a 20-minute call next week?\n"
        "\n"
        "Best,\n"
        "Sam Rivera\n"
        "Account Executive\n"
    )
    assert email.html is not None
    assert "Jon Smith, Altex&#39;s CISO and your former colleague at Chase" in email.html
    assert email.text.count("?") == 1  # one clear ask


def test_it_keeps_the_warm_intro_grammatical_when_fields_are_blank() -> None:
    referrer = {**REFERRER, "title": "", "company": "", "is_customer": False, "our_context": ""}
    prospect = {**PROSPECT, "first_name": " ", "company": ""}
    email = render_step("warm_intro", ctx(referrer=referrer, prospect=prospect), SHIPPED)
    assert email.text.startswith(
        "Hi there,\n\nJon Smith, your former colleague at Chase, suggested I get in touch.\n\n"
        "Jon thought what we do could be useful to your team.\n\n"
    )


def test_it_mentions_the_connection_in_the_cold_intro_without_claiming_a_recommendation() -> None:
    named = render_step("cold_intro", ctx(temperature="cold"), SHIPPED)
    assert "I understand Jon Smith at Altex is your former colleague at Chase." in named.text
    assert "Jon worked with our CTO, Jim Walsh, for five years at Microsoft" in named.text
    assert "suggest" not in named.text
    assert "recommend" not in named.text
    unnamed = render_step("cold_intro", ctx(temperature="cold", named=False), SHIPPED)
    assert "One of our customers knows you, which is how Pixel came onto my radar." in unnamed.text
    assert unnamed.subject == "A connection in common"


def test_it_passes_reply_details_to_the_handoff_notice() -> None:
    context = ctx(named=False, internal=True, extra=HANDOFF_EXTRA)
    email = render_step("handoff_notice", context, SHIPPED)
    assert email.subject == "Reply from Elena Petrova (Pixel)"
    assert '("Re: hi")' in email.text
    assert "> Sounds good.\n> Tuesday at 10?\n" in email.text
    assert "Referrer: Jon Smith, CISO at Altex (not named in our emails)" in email.text


# --------------------------------------------------------------------------- context


def test_it_exposes_every_csv_field_of_the_prospect(tmp_path: Path) -> None:
    root = make_template(
        tmp_path,
        "t",
        "{{ prospect.company }}",
        "{{ prospect.segment }} {{ prospect['Deal Size'] }} {{ prospect.full_name }}\n",
    )
    email = render_step("t", ctx(), (root,))
    assert (email.subject, email.text) == ("Pixel", "fintech 50k Elena Petrova\n")


def test_it_builds_the_documented_context_shape() -> None:
    context = ctx(step=2)
    assert set(context) == {
        "prospect",
        "referrer",
        "referral",
        "rep",
        "campaign",
        "step",
        "unsubscribe_url",
    }
    assert context["referrer"]["first_name"] == "Jon"
    assert context["referrer"]["description"] == "one of our customers"
    assert context["referral"] == {
        "context": "your former colleague at Chase",
        "strength": 5,
        "temperature": "warm",
        "is_warm": True,
        "may_name_referrer": True,
        "others": [
            {
                "name": "Ann Lee",
                "first_name": "Ann",
                "title": "",
                "company": "Corp",
                "context": "your board member",
            }
        ],
        "others_total": 2,
    }
    assert context["rep"]["first_name"] == "Sam"
    assert context["step"] == {"number": 2, "is_follow_up": True}
    assert context["campaign"]["postal_address"] == CAMPAIGN["postal_address"]


def test_it_makes_an_unnamed_referrer_unreachable(tmp_path: Path) -> None:
    context = ctx(named=False)
    assert "Jon" not in repr(context["referrer"])
    assert "Altex" not in repr(context["referrer"])
    assert "Hidden" not in repr(context)
    root = make_template(tmp_path, "t", "Hi", "{{ referrer.description }}\n\n{{ referrer.name }}\n")
    assert render_error("t", context, root) == (
        "t/body.txt:3: undefined variable: 'referrer' has no attribute 'name' (the referrer may "
        "not be named to this prospect; use referrer.description or check "
        "referral.may_name_referrer)"
    )
    for probe in (
        "referrer['name']",
        "referrer.get('name')",
        "referrer|string",
        "referrer.items()",
    ):
        make_template(tmp_path, "t", "Hi", "{{ " + probe + " }}\n")
        try:
            text = render_step("t", context, (root,)).text
        except RenderError:
            continue
        assert "Jon" not in text
        assert "Altex" not in text


def test_it_refuses_extra_variables_that_replace_built_in_ones() -> None:
    with pytest.raises(ValueError, match="'prospect'"):
        ctx(extra={"prospect": {}})


# --------------------------------------------------------------------------- lookup


def test_it_prefers_the_override_dir_and_never_mixes_folders(tmp_path: Path) -> None:
    shipped = make_template(tmp_path / "shipped", "t", "Shipped", "shipped\n", "<p>shipped</p>")
    override = make_template(tmp_path / "override", "t", "Override", "override\n")
    dirs = template_dirs(shipped, override)
    assert dirs == (override, shipped)
    assert template_dirs(shipped, None) == (shipped,)
    email = render_step("t", ctx(), dirs)
    assert (email.subject, email.text, email.html) == ("Override", "override\n", None)
    make_template(shipped, "only_shipped", "S", "s\n")
    assert render_step("only_shipped", ctx(), dirs).subject == "S"
    assert available_templates(dirs) == {"t", "only_shipped"}


def test_it_reports_a_missing_template(tmp_path: Path) -> None:
    root = make_template(tmp_path, "t", "Hi", "x\n")
    assert render_error("nope", ctx(), root) == (
        f"nope: no template named 'nope' (looked in: {root})"
    )


def test_it_reports_a_template_folder_without_a_body(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "subject.txt").write_text("Hi")
    assert render_error("t", ctx(), tmp_path) == (
        f"t/body.txt: missing file (the template folder is {tmp_path / 't'})"
    )


@pytest.mark.parametrize("name", ["../etc", "warm_intro/body.txt", "Warm", "", "-x", "a" * 65, 3])
def test_it_rejects_names_that_are_not_plain_template_names(tmp_path: Path, name: Any) -> None:
    with pytest.raises(RenderError) as info:
        check_template_name(name)
    assert str(info.value) == (
        f"{name}: invalid template name: use 1-64 lowercase letters, digits, '-' or '_', "
        "starting with a letter or digit"
    )
    with pytest.raises(RenderError):
        render_step(name, ctx(), (tmp_path,))


def test_it_cannot_include_files_outside_the_template_dirs(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    root = make_template(tmp_path / "dirs", "t", "Hi", '{% include "../secret.txt" %}\n')
    assert render_error("t", ctx(), root) == "t/body.txt:1: template not found: ../secret.txt"


# --------------------------------------------------------------------------- failures


def test_it_reports_an_undefined_variable_with_file_and_line(tmp_path: Path) -> None:
    root = make_template(
        tmp_path, "t", "Hi {{ prospect.first_name }}", "Hi,\n\n{{ prospect.nickname }} x\n"
    )
    assert render_error("t", ctx(), root) == (
        "t/body.txt:3: undefined variable: 'prospect' has no attribute 'nickname'"
    )


def test_it_reports_an_unknown_top_level_name(tmp_path: Path) -> None:
    root = make_template(tmp_path, "t", "Hi", "a\nb\n{% if nobody %}x{% endif %}\n")
    assert (
        render_error("t", ctx(), root) == "t/body.txt:3: undefined variable: 'nobody' is undefined"
    )


def test_it_reports_the_line_inside_an_html_body(tmp_path: Path) -> None:
    root = make_template(tmp_path, "t", "Hi", "ok\n", "<p>\n{{ rep.phone }}\n</p>\n")
    assert render_error("t", ctx(), root) == (
        "t/body.html:2: undefined variable: 'rep' has no attribute 'phone'"
    )


def test_it_reports_a_syntax_error_with_file_and_line(tmp_path: Path) -> None:
    root = make_template(tmp_path, "t", "Hi", "one\ntwo\n{% if prospect.company %}\nthree\n")
    assert render_error("t", ctx(), root) == (
        "t/body.txt:4: syntax error: Unexpected end of template. Jinja was looking for the "
        "following tags: 'elif' or 'else' or 'endif'. The innermost block that needs to be "
        "closed is 'if'."
    )


def test_it_reports_an_unknown_filter_as_a_syntax_error(tmp_path: Path) -> None:
    root = make_template(tmp_path, "t", "{{ prospect.company|shout }}", "x\n")
    assert (
        render_error("t", ctx(), root) == "t/subject.txt:1: syntax error: No filter named 'shout'."
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "{{ ''.__class__.__mro__ }}",
            "access to attribute '__class__' of 'str' object is unsafe.",
        ),
        (
            "{{ cycler.__init__.__globals__ }}",
            "access to attribute '__init__' of 'type' object is unsafe.",
        ),
        (
            "{{ prospect.__class__ }}",
            "access to attribute '__class__' of 'dict' object is unsafe.",
        ),
        (
            "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}",
            "access to attribute '__class__' of 'tuple' object is unsafe.",
        ),
        (
            "{{ prospect.update({'email': 'x'}) }}",
            "access to attribute 'update' of 'dict' object is unsafe.",
        ),
        (
            "{{ referral.others.append(1) }}",
            "access to attribute 'append' of 'list' object is unsafe.",
        ),
        (
            "{{ range.__globals__ }}",
            "access to attribute '__globals__' of 'function' object is unsafe.",
        ),
        (
            "{{ '{0.__class__}'.format(1) }}",
            "access to attribute '__class__' of 'int' object is unsafe.",
        ),
    ],
)
def test_it_blocks_sandbox_escapes(tmp_path: Path, body: str, expected: str) -> None:
    root = make_template(tmp_path, "t", "Hi", f"line one\n{body}\n")
    message = render_error("t", ctx(), root)
    assert message == f"t/body.txt:2: sandbox violation: {expected}"
    assert "<class" not in message
    assert "subclasses" not in message


def test_it_rejects_a_subject_with_a_line_break(tmp_path: Path) -> None:
    root = make_template(tmp_path, "t", "Hi {{ prospect.company }}\nBcc: x@y.z", "x\n")
    assert render_error("t", ctx(), root) == "t/subject.txt:1: the subject contains a line break"
    evil = {**PROSPECT, "company": "Pixel\r\nBcc: victim@example.com"}
    root = make_template(tmp_path, "t", "Hi {{ prospect.company }}", "x\n")
    assert render_error("t", ctx(prospect=evil), root) == (
        "t/subject.txt:1: the subject contains a line break"
    )


def test_it_strips_the_subject_and_rejects_an_empty_one(tmp_path: Path) -> None:
    root = make_template(tmp_path, "t", "  Hi   {{ prospect.first_name }}  \n", "x\n")
    assert render_step("t", ctx(), (root,)).subject == "Hi Elena"
    make_template(tmp_path, "t", "{{ prospect.segment|fallback('') }}\n", "x\n")
    empty = {**PROSPECT, "segment": " "}
    assert render_error("t", ctx(prospect=empty), root) == "t/subject.txt:1: the subject is empty"


def test_it_rejects_output_that_is_too_long(tmp_path: Path) -> None:
    root = make_template(
        tmp_path, "t", "Hi", "x\n{% for i in range(1000) %}{{ prospect.company }}{% endfor %}\n"
    )
    assert render_error("t", ctx(), root, max_chars=500) == (
        "t/body.txt:2: output is longer than 500 characters"
    )


@pytest.mark.parametrize(
    "body",
    [
        "{{ 'x' * 10000000 }}",
        "{% set ns = namespace(s='xx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}",
        "{{ prospect.company|center(100000000) }}",
        "{{ '%100000000s'|format(1) }}",
        "{{ '{:>100000000}'.format(1) }}",
        "{{ prospect.company.ljust(100000000) }}",
        "{{ 9 ** (9 ** 9) }}",
    ],
)
def test_it_refuses_to_build_huge_values(tmp_path: Path, body: str) -> None:
    root = make_template(tmp_path, "t", "Hi", body + "\n")
    started = time.monotonic()
    message = render_error("t", ctx(), root)
    assert message.startswith("t/body.txt:1: ")
    assert "output is longer than" in message or "too large" in message
    assert time.monotonic() - started < 1


class FakeClock:
    def __init__(self, step: float = 0.0) -> None:
        self.t = 0.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


class Slow:
    """A context value whose attribute takes 'five seconds' on the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    @property
    def thing(self) -> str:
        self.clock.t += 5
        return "done"


def test_it_stops_at_the_time_limit_with_a_fake_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    root = make_template(tmp_path, "t", "Hi", "one\ntwo\n{{ slow.thing }}\nfour\n")
    assert render_error("t", {"slow": Slow(clock)}, root, now=clock) == (
        "t/body.txt:3: rendering took longer than 2.0s"
    )


def test_it_stops_a_loop_at_the_time_limit(tmp_path: Path) -> None:
    clock = FakeClock(step=0.001)
    root = make_template(tmp_path, "t", "Hi", "one\n{% for i in [1, 2, 3] * 10000 %}{% endfor %}\n")
    assert render_error("t", {}, root, now=clock, max_chars=10**6) == (
        "t/body.txt:2: rendering took longer than 2.0s"
    )


@pytest.mark.parametrize(
    "body",
    [
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "{% set r = range(100000)|list %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}",
        "{% for a in range(100000) %}{% for b in range(100000) %}{{ '' }}{% endfor %}{% endfor %}",
    ],
)
def test_it_stops_runaway_loops_in_real_time(tmp_path: Path, body: str) -> None:
    root = make_template(tmp_path, "t", "Hi", body)
    started = time.monotonic()
    assert render_error("t", {}, root, time_limit=0.2) == (
        "t/body.txt:1: rendering took longer than 0.2s"
    )
    assert time.monotonic() - started < 1.5


def test_it_reports_infinite_recursion(tmp_path: Path) -> None:
    root = make_template(tmp_path, "t", "Hi", "{% macro f() %}{{ f() }}{% endmacro %}\n{{ f() }}\n")
    assert (
        render_error("t", {}, root) == "t/body.txt:1: too deeply nested (recursion limit reached)"
    )


def test_it_reports_other_runtime_errors_with_their_line(tmp_path: Path) -> None:
    root = make_template(tmp_path, "t", "Hi", "a\n{{ 1 / 0 }}\n")
    assert render_error("t", {}, root) == "t/body.txt:2: division by zero (ZeroDivisionError)"


def test_it_reports_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    root = make_template(tmp_path, "t", "Hi", "x")
    (root / "t" / "body.txt").write_bytes(b"caf\xe9\n")
    assert render_error("t", {}, root) == "t/body.txt: the file is not UTF-8 text"


# --------------------------------------------------------------------------- escaping & output


def test_it_escapes_html_but_not_text(tmp_path: Path) -> None:
    evil = {**PROSPECT, "company": "<script>alert(1)</script> & Co"}
    root = make_template(
        tmp_path,
        "t",
        "News for {{ prospect.company }}",
        "{{ prospect.company }}\n",
        "<p>{{ prospect.company }}</p>\n",
    )
    email = render_step("t", ctx(prospect=evil), (root,))
    assert email.text == "<script>alert(1)</script> & Co\n"
    assert email.subject == "News for <script>alert(1)</script> & Co"
    assert email.html == "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co</p>\n"


def test_it_tidies_whitespace_line_by_line(tmp_path: Path) -> None:
    body = (
        "\n\nHi {{ prospect.first_name }},   \n"
        "{% if prospect.segment %}\n"
        "You work in {{ prospect.segment }}."
        "{% if prospect.title %} ({{ prospect.title }}){% endif %}\n"
        "{% endif %}\n"
        "{% if prospect.nonsense is defined %}\n\nnever\n\n{% endif %}\n"
        "\n\n\nBye 100%}\n\n"
    )
    root = make_template(tmp_path, "t", "Hi", body)
    assert render_step("t", ctx(), (root,)).text == (
        "Hi Elena,\nYou work in fintech. (CEO)\n\nBye 100%}\n"
    )


def test_it_lets_csv_columns_named_like_dict_methods_work(tmp_path: Path) -> None:
    prospect = {**PROSPECT, "items": "three widgets", "keys": "k"}
    root = make_template(tmp_path, "t", "{{ prospect.items }}", "{{ prospect.keys }}\n")
    email = render_step("t", ctx(prospect=prospect), (root,))
    assert (email.subject, email.text) == ("three widgets", "k\n")


def test_it_renders_none_as_empty(tmp_path: Path) -> None:
    referrer = {**REFERRER, "nps": None}
    root = make_template(tmp_path, "t", "Hi", "nps=[{{ referrer.nps }}]\n")
    assert render_step("t", ctx(referrer=referrer), (root,)).text == "nps=[]\n"


def test_it_picks_up_edited_templates(tmp_path: Path) -> None:
    root = make_template(tmp_path, "t", "One", "x\n")
    assert render_step("t", {}, (root,)).subject == "One"
    subject = root / "t" / "subject.txt"
    subject.write_text("Two")
    stat = subject.stat()
    import os

    os.utime(subject, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert render_step("t", {}, (root,)).subject == "Two"


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Jane Smith", "Jane"),
        ("Dr. Jane Smith", "Jane"),
        ("dr jane smith", "jane"),
        ("Prof. Dr. Hans Müller", "Hans"),
        ("Smith, Jane", "Jane"),
        ("Jane Smith, PhD", "Jane"),
        ("  Jean-Luc   Picard ", "Jean-Luc"),
        ("Dr. Smith", "Dr. Smith"),
        ("Cher", "Cher"),
        ("", ""),
        ("   ", ""),
        (None, ""),
    ],
)
def test_it_finds_first_names(value: str | None, expected: str) -> None:
    assert first_name(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("James", "James'"), ("Elena", "Elena's"), ("Altex", "Altex's"), ("BOSS", "BOSS'"), ("", "")],
)
def test_it_makes_possessives(value: str, expected: str) -> None:
    assert possessive(value) == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], ""),
        (["A"], "A"),
        (["A", "B"], "A and B"),
        (["A", "B", "C"], "A, B and C"),
        (["A", "", None, "B"], "A and B"),
        ("Solo", "Solo"),
    ],
)
def test_it_joins_names(names: Any, expected: str) -> None:
    assert join_names(names) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("", "there"), ("  ", "there"), (None, "there"), ("Ann", "Ann"), (0, 0)]
)
def test_it_falls_back_for_blank_values(value: Any, expected: Any) -> None:
    assert fallback(value, "there") == expected


def test_it_keeps_missing_fields_an_error_even_with_fallback(tmp_path: Path) -> None:
    root = make_template(tmp_path, "t", "Hi", "{{ prospect.nickname|fallback('there') }}\n")
    assert render_error("t", ctx(), root) == (
        "t/body.txt:1: undefined variable: 'prospect' has no attribute 'nickname'"
    )


def test_it_offers_the_filters_in_templates(tmp_path: Path) -> None:
    root = make_template(
        tmp_path,
        "t",
        "{{ referrer.name|first_name }}",
        "{{ referrer.company|possessive }} {{ referral.others|map(attribute='name')|join_names }}"
        " {{ referral.context|capfirst }}\n",
    )
    email = render_step("t", ctx(), (root,))
    assert email.subject == "Jon"
    assert email.text == "Altex's Ann Lee Your former colleague at Chase\n"


# --------------------------------------------------------------------------- batch rendering


def outcome(render: Any, *args: Any) -> tuple[Any, ...]:
    """What ``render(*args)`` gave: the email, or the error's file, line and message."""
    try:
        email = render(*args)
    except RenderError as exc:
        return ("error", exc.template, exc.line, exc.message, str(exc))
    return ("email", email)


BATCH_CASES = {
    "ok": (
        "Hi {{ prospect.first_name }}",
        "Dear {{ prospect.full_name }},\n",
        "<p>{{ prospect.company }}</p>",
    ),
    "undefined": ("Hi", "a\nb\n{{ prospect.nickname }}\n", None),
    "syntax": ("Hi", "ok\n", "<p>\n{% if %}\n"),
    "sandbox": ("Hi", "{{ ''.__class__.__mro__ }}\n", None),
    "too_long": ("Hi", "x\n{{ 'ab' * 100000 }}\n", None),
    "zero": ("Hi", "a\n{{ 1 / 0 }}\n", None),
    "include": ("Hi", "a\n{% include 'nope/body.txt' %}\n", None),
    "line_break": ("Hi\n{{ prospect.first_name }}", "x\n", None),
    "empty": ("{{ '' }}", "x\n", None),
    "recursion": ("Hi", "{% macro f() %}{{ f() }}{% endmacro %}\n{{ f() }}\n", None),
}


def test_a_batch_renders_and_fails_exactly_like_one_render_at_a_time(tmp_path: Path) -> None:
    root = tmp_path / "t"
    for name, (subject, body, html) in BATCH_CASES.items():
        make_template(root, name.replace("_", "-"), subject, body, html)
    make_template(root, "latin1", "Hi", "x")
    (root / "latin1" / "body.txt").write_bytes(b"caf\xe9\n")
    (root / "no-body").mkdir()
    (root / "no-body" / "subject.txt").write_text("Hi")
    names = [n.replace("_", "-") for n in BATCH_CASES] + ["latin1", "no-body", "missing", "../x"]
    batch = Renderer((root,), reload=False)
    for name in names:
        single = outcome(render_step, name, ctx(), (root,))
        for _ in range(3):  # the first use loads the files, the others reuse them
            assert outcome(batch.render, name, ctx()) == single, name
    assert outcome(batch.render, "ok", ctx()) == (
        "email",
        RenderedEmail("ok", "Hi Elena", "Dear Elena Petrova,\n", "<p>Pixel</p>"),
    )
    assert outcome(batch.render, "syntax", ctx())[2:4] == (
        2,
        "syntax error: Expected an expression, got 'end of statement block'",
    )


def test_a_batch_keeps_the_limits_of_each_render(tmp_path: Path) -> None:
    clock = FakeClock()
    root = make_template(tmp_path, "t", "Hi", "one\ntwo\n{{ slow.thing }}\nfour\n")
    batch = Renderer((root,), reload=False)
    for _ in range(2):
        with pytest.raises(RenderError, match=r"^t/body.txt:3: rendering took longer than 2.0s$"):
            batch.render("t", {"slow": Slow(clock)}, now=clock)
    make_template(root, "long", "Hi", "{{ prospect.first_name }}\n")
    with pytest.raises(RenderError, match="output is longer than 3 characters"):
        batch.render("long", ctx(), max_chars=3)
    assert batch.render("long", ctx()).text == "Elena\n"


def test_the_files_of_one_step_do_not_share_variables_in_a_batch(tmp_path: Path) -> None:
    root = make_template(
        tmp_path,
        "t",
        "{% set prospect = 'shadowed' %}{% set greeting = 'Yo' %}Hi",
        "{{ prospect.first_name }}\n{{ greeting }}\n",
    )
    for renderer in (Renderer((root,)), Renderer((root,), reload=False)):
        assert outcome(renderer.render, "t", ctx())[1:4] == (
            "t/body.txt",
            2,
            "undefined variable: 'greeting' is undefined",
        )
    make_template(root, "u", "{% set x = 1 %}Hi {{ range(2)|list|length }}", "{{ x is defined }}\n")
    assert Renderer((root,), reload=False).render("u", {}).subject == "Hi 2"
    assert Renderer((root,), reload=False).render("u", {}).text == "False\n"


def test_a_batch_prefers_the_override_dir_and_never_mixes_folders(tmp_path: Path) -> None:
    shipped = make_template(tmp_path / "shipped", "t", "Shipped", "shipped\n", "<p>shipped</p>")
    make_template(shipped, "only_shipped", "S", "s\n")
    override = make_template(tmp_path / "override", "t", "Override", "override\n")
    batch = Renderer(template_dirs(shipped, override), reload=False)
    for _ in range(2):
        email = batch.render("t", ctx())
        assert (email.subject, email.text, email.html) == ("Override", "override\n", None)
        assert batch.render("only_shipped", ctx()).subject == "S"


def bump(path: Path, text: str) -> None:
    """Rewrite ``path`` with a later modification time (file systems with coarse clocks)."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    import os

    os.utime(path, ns=(before, before + 10**9))


def test_render_step_sees_edits_a_batch_keeps_what_it_started_with(tmp_path: Path) -> None:
    root = make_template(tmp_path, "t", "One", "x\n")
    batch = Renderer((root,), reload=False)
    assert batch.render("t", {}).subject == "One"
    assert render_step("t", {}, (root,)).subject == "One"
    bump(root / "t" / "subject.txt", "Two")
    assert render_step("t", {}, (root,)).subject == "Two"  # a long-running worker sees edits
    assert Renderer((root,)).render("t", {}).subject == "Two"
    assert batch.render("t", {}).subject == "One"  # one batch renders one version
    assert Renderer((root,), reload=False).render("t", {}).subject == "Two"  # the next batch
    override = make_template(tmp_path / "override", "t", "Override", "o\n")
    assert render_step("t", {}, (override, root)).subject == "Override"
