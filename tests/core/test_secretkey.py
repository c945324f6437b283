"""The secret key: generated per data directory (0600, race-free), public keys refused."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from sequencer.config import Settings, is_loopback_url, require_public_links
from sequencer.errors import ConfigError
from sequencer.secretkey import load_or_create

OLD_DEV_KEY = "refseq-development-key-change-me"  # what refseq used when no key was set
OLD_DEMO_KEY = "refseq-demo-secret-key"


def test_without_a_key_each_data_directory_generates_its_own_private_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = Settings.from_env({})
    assert first.secret_key != OLD_DEV_KEY
    key_file = tmp_path / "secret.key"
    assert first.secret_key_file == key_file
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() == first.secret_key and len(first.secret_key) >= 43
    assert Settings.from_env({}).secret_key == first.secret_key  # kept, not regenerated
    other = tmp_path / "other"
    second = Settings.from_env({"REFSEQ_DATA_DIR": str(other)})
    assert second.secret_key != first.secret_key and second.secret_key_file == other / "secret.key"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files


@pytest.mark.parametrize("public", [OLD_DEV_KEY, OLD_DEMO_KEY])
def test_a_published_key_is_refused_even_when_set_explicitly(public: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="REFSEQ_SECRET_KEY is a published development key"):
        Settings.from_env({"REFSEQ_SECRET_KEY": public, "REFSEQ_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="published development key"):
        Settings("sqlite://", None, public, "https://x.example")
    (tmp_path / "secret.key").write_text(public + "\n")
    (tmp_path / "secret.key").chmod(0o600)
    with pytest.raises(ConfigError, match=r"secret\.key is a published development key"):
        Settings.from_env({"REFSEQ_DATA_DIR": str(tmp_path)})


def test_a_key_file_others_can_read_is_refused_with_what_to_do(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    (tmp_path / "secret.key").chmod(0o644)
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"REFSEQ_DATA_DIR": str(tmp_path)})
    assert "can be read by others (mode 0644): run `chmod 600" in str(err.value)


def test_a_database_server_without_a_key_or_shared_data_dir_is_refused() -> None:
    with pytest.raises(ConfigError, match="REFSEQ_SECRET_KEY is not set: with a database server"):
        Settings.from_env({"REFSEQ_DATABASE_URL": "postgresql://u@h/db"})


def _race(
    directory: str, start: multiprocessing.synchronize.Event, out: multiprocessing.Queue[str]
) -> None:
    start.wait()
    out.put(load_or_create(Path(directory))[0])


def test_processes_starting_at_once_all_get_the_same_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path / "d"), start, out)) for _ in range(8)]
    for p in procs:
        p.start()
    start.set()
    keys = {out.get(timeout=30) for _ in procs}
    for p in procs:
        p.join(10)
    assert len(keys) == 1 and all(p.exitcode == 0 for p in procs)
    assert os.listdir(tmp_path / "d") == ["secret.key"]


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://127.1.2.3", True),
        ("http://[::1]:8000", True),
        ("http://app.localhost", True),
        ("http://0.0.0.0:8000", True),
        ("https://refseq.acme.example", False),
        ("http://10.0.0.5:8000", False),
    ],
)
def test_loopback_base_urls_are_recognised(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback
    settings = Settings("sqlite://", None, "k" * 20, url)
    if loopback:
        with pytest.raises(ConfigError, match="no prospect could opt out"):
            require_public_links(settings, dev=False)
        require_public_links(settings, dev=True)
    else:
        require_public_links(settings, dev=False)
