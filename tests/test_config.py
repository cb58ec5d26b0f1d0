"""Configuration: strict loading, one-line errors naming file and key, env overrides."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from hushbrief.backend.settings import BackendSettings, load_backend_settings
from hushbrief.backend.settings import known_keys as backend_keys
from hushbrief.bot.config import Config, ConfigError, known_keys, load_config
from hushbrief.bot.policy import ConsentMode, Policy, Processing, Who

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hushbrief.toml"
    path.write_text(text)
    return path


def test_example_documents_every_key_with_its_default() -> None:
    doc = tomllib.loads(EXAMPLE.read_text())
    backend = doc.pop("backend")
    assert {s: list(t) for s, t in doc.items()} == known_keys()
    assert tuple(backend) == backend_keys()
    assert load_backend_settings(EXAMPLE, environ={}) == BackendSettings()
    loaded = load_config(EXAMPLE, environ={})
    defaults = Config()
    for section in known_keys():
        if section == "storage":
            continue  # data_dir is resolved and expanded; compared below
        assert getattr(loaded, section) == getattr(defaults, section), section
    assert loaded.storage.data_dir == Path("~/.local/share/hushbrief").expanduser()


def test_no_file_gives_defaults() -> None:
    config = load_config(None, environ={})
    assert config.processing.mode is Processing.PRIVATE
    assert config.policy_defaults == Policy()
    assert config.storage.resolved_database_url().startswith("sqlite:///")


def test_values_are_parsed(tmp_path: Path) -> None:
    path = write(tmp_path, """
[storage]
data_dir = "state"
database_url = "postgresql://u@127.0.0.1/db"
[processing]
mode = "local"
relay_url = "https://relay.example.net/"
[policy_defaults]
who = "admins"
consent = "require-all"
max_span = "6h"
buffer_ttl = 7200
redact = true
""")
    config = load_config(path, environ={})
    assert config.storage.data_dir == tmp_path / "state"
    assert config.storage.resolved_database_url() == "postgresql://u@127.0.0.1/db"
    assert config.policy_defaults.who is Who.ADMINS
    assert config.policy_defaults.consent is ConsentMode.REQUIRE_ALL
    assert config.policy_defaults.max_span == 6 * 3600
    assert config.policy_defaults.buffer_ttl == 7200
    assert config.default_policy().processing is Processing.LOCAL
    assert config.processing.relay_url == "https://relay.example.net"


@pytest.mark.parametrize(("text", "expected"), [
    ("[storage]\ndata_dri = 'x'\n", r"unknown key \[storage\] data_dri; known keys: data_dir"),
    ("[stroage]\n", r"unknown section \[stroage\]"),
    ("[processing]\nmode = 'cloud'\n", r'\[processing\] mode must be one of "local", "private"'),
    ("[window]\nmax_chats = 0\n", r"\[window\] max_chats must be a whole number from 1 to"),
    ("[window]\nmax_chats = '12'\n", r"\[window\] max_chats"),
    ("[telegram]\nenabled = 'sometimes'\n", r"\[telegram\] enabled must be true or false"),
    ("[policy_defaults]\nlength = 5\n", r"\[policy_defaults\] length must be a whole number"),
    ("[policy_defaults]\nmax_span = 'forever'\n", r"\[policy_defaults\] max_span must be a dur"),
    ("[policy_defaults]\nwho = 3\n", r"\[policy_defaults\] who must be one of"),
    ("[storage]\nidentifier_key = 'abc'\n", r"\[storage\] identifier_key must be empty, or"),
    ("[storage]\ndatabase_url = 'mysql://x'\n", r"\[storage\] database_url must be empty, or"),
    ("storage = 3\n", r"storage must be a \[storage\] table"),
    ("[storage\n", r"not valid TOML"),
])
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert message.startswith(str(path) + ": ")
    assert re.search(expected, message), message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml", environ={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[telegram]\ntoken = 'from-file'\n")
    config = load_config(path, environ={
        "HUSHBRIEF_TELEGRAM_TOKEN": "from-env",
        "HUSHBRIEF_TELEGRAM_ENABLED": "true",
        "HUSHBRIEF_POLICY_DEFAULTS_LENGTH": "80",
        "HUSHBRIEF_STORAGE_IDENTIFIER_KEY": "ab" * 32,
        "HUSHBRIEF_UNRELATED": "ignored: no section of that name",
    })
    assert config.telegram.token == "from-env" and config.telegram.enabled
    assert config.policy_defaults.length == 80
    assert config.storage.identifier_key == "ab" * 32


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^environment: HUSHBRIEF_WINDOW_MAX_CHATS must be"):
        load_config(None, environ={"HUSHBRIEF_WINDOW_MAX_CHATS": "lots"})
    with pytest.raises(ConfigError, match=r"unknown key HUSHBRIEF_MATRIX_PASSWD"):
        load_config(None, environ={"HUSHBRIEF_MATRIX_PASSWD": "x"})


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    secret = "zz-not-hex-secret-value"
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={"HUSHBRIEF_STORAGE_IDENTIFIER_KEY": secret})
    assert secret not in str(info.value)
