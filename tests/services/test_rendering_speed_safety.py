"""The pre-launch render check renders in a batch, and in worker processes for large audiences:
it must find exactly what rendering one step at a time finds, in the same order, and drafting
(the long-running worker) must still see edited templates."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

from sequencer.core.drafts import render_for, render_sequence, renderer_for
from sequencer.core.model import Audience, CampaignSpec
from sequencer.core.render import SHIPPED_TEMPLATES
from sequencer.errors import RenderError
from sequencer.services import rendering
from sequencer.services.checking import check_campaign

EXAMPLE = Path(rendering.__file__).resolve().parents[1] / "example"
CFG = rendering.draft_config("test-secret", "https://refseq.example", SHIPPED_TEMPLATES)
UNDEFINED = "undefined variable: 'prospect' has no attribute 'nickname'"
ZERO = "division by zero (ZeroDivisionError)"
SYNTAX = "syntax error: Expected an expression, got 'end of statement block'"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    if before:  # a later modification time, even on a file system with a coarse clock
        os.utime(path, ns=(before, before + 10**9))


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    """The example campaign with an override folder: warm_intro and cold_follow_up (steps 2 of
    the cold and unnamed sequences) fail on line 3 for prospects in payments; unnamed_intro's
    HTML body does not parse (line 2)."""
    folder = tmp_path / "camp"
    shutil.copytree(EXAMPLE, folder)
    yaml = folder / "campaign.yaml"
    yaml.write_text(yaml.read_text(encoding="utf-8") + "templates: tpl\n", encoding="utf-8")
    tpl = folder / "tpl"
    write(tpl / "warm_intro" / "subject.txt", "Hi {{ prospect.first_name }}\n")
    write(
        tpl / "warm_intro" / "body.txt",
        "Hello,\n{% if prospect.industry == 'payments' %}\n{{ prospect.nickname }}\n{% endif %}\n"
        "Best, {{ rep.name }}\n",
    )
    write(tpl / "cold_follow_up" / "subject.txt", "Following up\n")
    write(
        tpl / "cold_follow_up" / "body.txt",
        "Hi,\n{% if prospect.industry == 'payments' %}\n{{ 1 / 0 }}\n{% endif %}\nBye\n",
    )
    write(tpl / "unnamed_intro" / "subject.txt", "Hello\n")
    write(tpl / "unnamed_intro" / "body.txt", "Hi {{ prospect.first_name }},\n")
    write(tpl / "unnamed_intro" / "body.html", "<p>Hi</p>\n{% if %}\n")
    return yaml


def load(yaml: Path) -> tuple[CampaignSpec, Audience]:
    check = check_campaign(yaml)
    assert check.spec is not None and check.audience is not None
    return check.spec, check.audience


def one_at_a_time(spec: CampaignSpec, audience: Audience) -> list[tuple[str, int, Any]]:
    """Every step of every enrollment through ``render_for`` alone (what drafting does)."""
    out: list[tuple[str, int, Any]] = []
    for _, enrollment in rendering.planned(spec, audience):
        for index in range(len(spec.sequences[enrollment.sequence])):
            try:
                result: Any = render_for(spec, enrollment, index, CFG)
            except RenderError as exc:
                result = (exc.template, exc.line, exc.message)
            out.append((enrollment.prospect_email, index, result))
    return out


def expected_problems(tpl: Path) -> list[str]:
    """Grouped by problem, in the order each was first met (prospects in file order)."""
    return [
        f"{tpl}/warm_intro/body.txt:3: {UNDEFINED}, for prospect john.reyes@ledgerline.example",
        f"{tpl}/cold_follow_up/body.txt:3: {ZERO}, for prospect marc.dubois@paysage.example",
        f"{tpl}/cold_follow_up/body.txt:3: {ZERO}, for prospect aiko.tanaka@kumo.example",
        f"{tpl}/unnamed_intro/body.html:2: {SYNTAX}, for prospect aiko.tanaka@kumo.example",
    ]


def test_the_batch_renders_every_email_exactly_as_one_render_at_a_time(campaign: Path) -> None:
    spec, audience = load(campaign)
    batch = renderer_for(spec, CFG, reload=False)
    rendered: list[tuple[str, int, Any]] = []
    for _, enrollment in rendering.planned(spec, audience):
        for index, result in enumerate(render_sequence(spec, enrollment, CFG, batch)):
            if isinstance(result, RenderError):
                result = (result.template, result.line, result.message)
            rendered.append((enrollment.prospect_email, index, result))
    reference = one_at_a_time(spec, audience)
    assert rendered == reference
    assert sum(isinstance(r, tuple) for _, _, r in reference) == 4  # the failures above
    assert sum(not isinstance(r, tuple) for _, _, r in reference) == 10  # real emails


@pytest.mark.parametrize("workers", [1, 2])
def test_processes_or_not_the_check_finds_the_same_problems_in_the_same_order(
    campaign: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rendering, "CHUNK", 2)  # several chunks, results taken in order
    in_processes = rendering._in_processes
    from_workers: list[bool] = []

    def spy(*args: Any) -> Any:
        for chunk, failures in in_processes(*args):
            from_workers.append(failures is not None)
            yield chunk, failures

    monkeypatch.setattr(rendering, "_in_processes", spy)
    spec, audience = load(campaign)
    done: list[int] = []
    problems = rendering.render_check(spec, audience, CFG, done.append, workers=workers)
    assert [p.render() for p in problems] == expected_problems(campaign.parent / "tpl")
    assert done == [2, 4, 6]
    assert from_workers == ([True] * 3 if workers > 1 else [])  # worker processes did render
    default = rendering.render_check(spec, audience, CFG)  # 6 prospects: no processes
    assert [p.render() for p in default] == [p.render() for p in problems]


@pytest.fixture(autouse=True)
def _no_limit_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in pool below runs the worker initializer in this process: it must not cap
    pytest's own address space (a later Chromium, which reserves many GB, would not start)."""
    monkeypatch.setattr(rendering, "limit_address_space", lambda extra=None: None)


class _BreaksAfter:
    """A stand-in process pool whose workers 'die' after ``good`` chunks."""

    def __init__(self, good: int, **kwargs: Any) -> None:
        self.good = good
        self.initializer, self.initargs = kwargs["initializer"], kwargs["initargs"]
        self.shut = False

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        if fn is rendering._ready:
            self.initializer(*self.initargs)
            future.set_result(None)
        elif self.good > 0:
            self.good -= 1
            future.set_result(fn(*args))
        else:
            future.set_exception(BrokenProcessPool("a worker died"))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self.shut = True


@pytest.mark.parametrize("good", [0, 1, 2])
def test_when_worker_processes_fail_the_rest_is_rendered_here(
    campaign: Path, good: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools: list[_BreaksAfter] = []

    def pool(**kwargs: Any) -> _BreaksAfter:
        pools.append(_BreaksAfter(good, **kwargs))
        return pools[-1]

    monkeypatch.setattr(rendering, "ProcessPoolExecutor", pool)
    monkeypatch.setattr(rendering, "CHUNK", 2)
    spec, audience = load(campaign)
    done: list[int] = []
    problems = rendering.render_check(spec, audience, CFG, done.append, workers=2)
    assert [p.render() for p in problems] == expected_problems(campaign.parent / "tpl")
    assert done == [2, 4, 6]
    assert pools and pools[0].shut


def test_when_processes_cannot_start_the_check_runs_here(
    campaign: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_processes(**kwargs: Any) -> Any:
        raise OSError("no processes here")

    monkeypatch.setattr(rendering, "ProcessPoolExecutor", no_processes)
    spec, audience = load(campaign)
    problems = rendering.render_check(spec, audience, CFG, workers=2)
    assert [p.render() for p in problems] == expected_problems(campaign.parent / "tpl")


def test_a_rendering_bug_is_raised_as_without_processes(
    campaign: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rendering, "ProcessPoolExecutor", lambda **kw: _BreaksAfter(9, **kw))

    def bug(*args: Any) -> Any:
        raise KeyError("bug")

    monkeypatch.setattr(rendering, "render_sequence", bug)
    spec, audience = load(campaign)
    with pytest.raises(KeyError, match="bug"):
        rendering.render_check(spec, audience, CFG, workers=2)


@pytest.mark.parametrize("workers", [1, 2])
def test_each_check_sees_the_templates_as_they_are_now(campaign: Path, workers: int) -> None:
    spec, audience = load(campaign)
    assert rendering.render_check(spec, audience, CFG, workers=workers)  # warms every cache
    tpl = campaign.parent / "tpl"
    write(tpl / "warm_intro" / "body.txt", "Hello,\n{{ prospect.first_name }}\n")
    write(tpl / "cold_follow_up" / "body.txt", "Hi,\nBye\n")
    write(tpl / "unnamed_intro" / "body.html", "<p>Hi</p>\n")
    assert rendering.render_check(spec, audience, CFG, workers=workers) == []
    write(tpl / "cold_follow_up" / "body.txt", "Hi,\n{{ 1 / 0 }}\n")
    problems = rendering.render_check(spec, audience, CFG, workers=workers)
    assert [p.render() for p in problems] == [
        f"{tpl}/cold_follow_up/body.txt:2: {ZERO}, for prospect {e}"
        for e in (
            "priya.nair@fintrust.example",
            "marc.dubois@paysage.example",
            "aiko.tanaka@kumo.example",
        )
    ]


def test_drafting_picks_up_an_edited_template(campaign: Path) -> None:
    """The worker drafts with ``render_for`` (no batch): each call sees the files as they are."""
    spec, audience = load(campaign)
    enrollment = next(e for _, e in rendering.planned(spec, audience) if e.sequence == "warm")
    assert render_for(spec, enrollment, 0, CFG).text == "Hello,\nBest, Dana Whitfield\n"
    rendering.render_check(spec, audience, CFG)  # a batch in between changes nothing
    write(campaign.parent / "tpl" / "warm_intro" / "body.txt", "Edited {{ prospect.first_name }}\n")
    assert render_for(spec, enrollment, 0, CFG).text == "Edited Elena\n"
    shutil.rmtree(campaign.parent / "tpl" / "warm_intro")  # the shipped one takes over
    assert "Elena" in render_for(spec, enrollment, 0, CFG).text
    assert render_for(spec, enrollment, 0, CFG).subject != "Hi Elena"
