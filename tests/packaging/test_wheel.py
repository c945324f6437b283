"""The wheel is complete: built with pip, installed into a fresh venv, `refseq init` and
`refseq demo` run to the end from it, and its web pages load.

The fresh venv is outside the repository and has the wheel installed with ``--no-deps``; its
dependencies come from the running interpreter's site-packages through a ``.pth`` path line
(which adds the folder but not the ``.pth`` files in it, so the editable install there is not
seen). The checks below first prove that ``sequencer`` is imported from the fresh venv.
"""

from __future__ import annotations

import email
import mailbox
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from email import policy
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
#: What the wheel is built from: the project files, not caches or earlier builds.
SOURCES = ("pyproject.toml", "README.md", "sequencer", "workers", "templates")
JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")


def _run(args: list[str | Path], cwd: Path, timeout: float = 120) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFSEQ_", "PYTHON"))}
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _shipped_files(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def _copy_sources(to: Path) -> Path:
    to.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, to / name, ignore=JUNK)
        else:
            shutil.copy2(ROOT / name, to / name)
    return to


def _fresh_venv(env_dir: Path, *install: str | Path) -> Path:
    """bin/ of a new venv with ``pip install --no-deps *install`` and the deps of this one."""
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps"]
    _run([*pip, *install], env_dir, 300)
    # After the install, so pip sees no refseq from the deps folder (it only lists, never touches).
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env_dir
    )
    deps = "\n".join(site.getsitepackages())
    (Path(purelib.strip()) / "zz_refseq_test_deps.pth").write_text(deps + "\n")
    return env_dir / "bin"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = _copy_sources(work / "src")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work, src], work, 300)
    (built,) = work.glob("referral_sequencer-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv (outside the repo) with only the wheel installed into it."""
    return _fresh_venv(tmp_path_factory.mktemp("venv"), "--no-index", wheel)


def test_the_wheel_holds_every_module_template_and_example_file(wheel: Path):
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    expected = {f"sequencer/templates/{n}" for n in _shipped_files(ROOT / "templates")}
    expected |= {f"sequencer/{n}" for n in _shipped_files(ROOT / "sequencer")}
    expected |= {f"workers/{n}" for n in _shipped_files(ROOT / "workers")}
    assert "sequencer/templates/email/warm_intro/body.html" in expected  # the walk found them
    assert "sequencer/example/campaign.yaml" in expected
    assert expected - names == set()
    assert not any(n.startswith("templates/") for n in names)  # no stray top-level package


def test_init_validate_and_demo_run_from_the_wheel(installed: Path, tmp_path: Path):
    (where,) = _run(
        [installed / "python", "-c", "import sequencer; print(sequencer.__file__)"], tmp_path
    ).split()
    assert Path(where).is_relative_to(installed.parent), where  # the wheel, not the checkout

    refseq = installed / "refseq"
    out = _run([refseq, "init", tmp_path / "camp"], tmp_path)
    assert "wrote" in out
    assert (tmp_path / "camp" / "campaign.yaml").is_file()

    demo = tmp_path / "demo"
    out = _run([refseq, "demo", "--dir", demo, "--start", "2026-11-30T13:00:00+00:00"], tmp_path)
    assert "Ran " in out
    # The mail it sent was rendered from the shipped templates: read back without refseq.
    box = mailbox.mbox(str(demo / "sent.mbox"))
    try:
        sent = [email.message_from_bytes(m.as_bytes(), policy=policy.default) for m in box]
    finally:
        box.close()
    assert len(sent) >= 7
    htmls = [m for m in sent if m.get_body(("html",)) is not None]
    assert htmls, "no message carries the HTML part of the shipped intro templates"
    assert all(m.get_body(("plain",)).get_content().strip() for m in sent)
    # and the example campaign `refseq init` wrote checks clean against those templates
    _run([refseq, "validate", tmp_path / "camp" / "campaign.yaml"], tmp_path)


def test_the_web_pages_and_static_files_come_from_the_wheel(installed: Path, tmp_path: Path):
    code = (
        "from sequencer.adapters.web.app import TEMPLATES_DIR, _templates\n"
        "env = _templates(TEMPLATES_DIR).env\n"
        "names = env.list_templates()\n"
        "assert 'queue.html' in names and 'static/app.css' in names, names\n"
        "[env.get_template(n) for n in names if n.endswith('.html')]\n"
        "print(TEMPLATES_DIR)\n"
        "from sequencer import resources\n"
        "print(resources.email_templates_dir()); print(resources.example_dir())\n"
    )
    where = _run([installed / "python", "-c", code], tmp_path).split()
    assert len(where) == 3
    assert all(Path(p).is_relative_to(installed.parent) for p in where), where


def test_an_editable_install_reads_the_templates_from_the_source_folder(tmp_path: Path):
    """What `make setup` does (pip install -e .), on a copy of the checkout."""
    src = _copy_sources(tmp_path / "src")
    bin_dir = _fresh_venv(tmp_path / "venv", "-e", src)
    code = (
        "from sequencer import resources\n"
        "from sequencer.adapters.web.app import TEMPLATES_DIR\n"
        "print(resources.email_templates_dir()); print(TEMPLATES_DIR)\n"
    )
    email_dir, web_dir = _run([bin_dir / "python", "-c", code], tmp_path).split()
    assert (Path(email_dir), Path(web_dir)) == (src / "templates/email", src / "templates/web")
    out = _run([bin_dir / "refseq", "init", tmp_path / "camp"], tmp_path)
    assert "wrote" in out
    _run([bin_dir / "refseq", "validate", tmp_path / "camp" / "campaign.yaml"], tmp_path)


def test_a_missing_resource_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch):
    from sequencer import resources

    monkeypatch.setattr(resources, "TEMPLATES_PACKAGE", "sequencer.no_such_templates")
    with pytest.raises(RuntimeError, match=r"pip install -e \."):
        resources.templates_dir()


def test_this_checkout_reads_its_own_templates_folder():
    from sequencer import resources

    assert resources.templates_dir() == ROOT / "templates"
    assert (resources.email_templates_dir() / "warm_intro" / "body.txt").is_file()
    assert (resources.web_templates_dir() / "static" / "app.css").is_file()
