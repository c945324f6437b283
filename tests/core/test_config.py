from pathlib import Path

import pytest

from sequencer.config import Settings, env_bool, env_int, env_secret
from sequencer.errors import ConfigError


def test_it_defaults_to_a_sqlite_file_and_embedded_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.database_url == f"sqlite:///{tmp_path / 'refseq.db'}"
    assert s.embedded and s.secret_key_file == tmp_path / "secret.key"  # generated on first use
    assert s.base_url == "http://127.0.0.1:8000" and s.loopback_links


def test_it_normalises_postgres_urls_to_psycopg():
    s = Settings.from_env(
        {
            "REFSEQ_DATABASE_URL": "postgres://u@h/db",
            "REFSEQ_BROKER_URL": "redis://r",
            "REFSEQ_SECRET_KEY": "a-key-of-twenty-chars",
        }
    )
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert not s.embedded


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"REFSEQ_DATABASE_URL": "mysql://x"},
            "REFSEQ_DATABASE_URL='mysql://x': use sqlite:///path.db",
        ),
        (
            {"REFSEQ_BASE_URL": "refseq.example"},
            "REFSEQ_BASE_URL='refseq.example' must start with http",
        ),
        ({"REFSEQ_SECRET_KEY": "short"}, "REFSEQ_SECRET_KEY must be at least 16 characters"),
    ],
)
def test_a_bad_variable_is_named_in_the_error(env, message):
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert str(err.value).startswith(message)


def test_typed_helpers_name_the_variable(tmp_path: Path):
    assert env_bool({"X": "yes"}, "X", False) is True
    with pytest.raises(ConfigError, match="X='maybe' is not a boolean"):
        env_bool({"X": "maybe"}, "X", False)
    with pytest.raises(ConfigError, match="N='ten' is not an integer"):
        env_int({"N": "ten"}, "N", 1)
    with pytest.raises(ConfigError, match="N=0 must be at least 1"):
        env_int({"N": "0"}, "N", 1, minimum=1)
    secret = tmp_path / "key"
    secret.write_text("from-a-file-0123456789\n")
    assert env_secret({"K_FILE": str(secret)}, "K") == "from-a-file-0123456789"
    with pytest.raises(ConfigError, match="set either K or K_FILE, not both"):
        env_secret({"K": "a", "K_FILE": str(secret)}, "K")
