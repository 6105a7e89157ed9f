"""Configuration: which registry, which token, where files live."""

from __future__ import annotations

from pathlib import Path

import pytest

from ppatch import config, constants
from ppatch.config import Config
from ppatch.errors import UsageError


def test_everything_lives_under_ppatch_home(isolated_environment: Path) -> None:
    home = isolated_environment / "ppatch-home"
    assert constants.data_dir() == home / "data"
    assert constants.cache_dir() == home / "cache"
    assert constants.config_file() == home / "config" / "config.toml"


def test_without_ppatch_home_the_xdg_directories_are_used(
    monkeypatch: pytest.MonkeyPatch, isolated_environment: Path
) -> None:
    monkeypatch.delenv("PPATCH_HOME")
    assert constants.data_dir() == isolated_environment / "xdg-data" / "ppatch"
    assert constants.cache_dir() == isolated_environment / "xdg-cache" / "ppatch"
    assert constants.config_dir() == isolated_environment / "xdg-config" / "ppatch"


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("0", False)])
def test_offline_flag(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("PPATCH_OFFLINE", value)
    assert constants.offline() is expected


def test_registry_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    config.save_config(Config(default_registry="https://from-config.example/"))
    assert config.resolve_registry() == "https://from-config.example"
    monkeypatch.setenv("PPATCH_REGISTRY", "https://from-env.example")
    assert config.resolve_registry() == "https://from-env.example"
    assert config.resolve_registry("http://explicit.example:8080") == "http://explicit.example:8080"


def test_registry_aliases_from_the_config_file() -> None:
    config.save_config(
        Config(registries={"corp": "https://ppatch.corp.example"}, default_registry="corp")
    )
    assert config.resolve_registry() == "https://ppatch.corp.example"
    with pytest.raises(UsageError, match=r"'other' is neither a URL nor a configured name"):
        config.resolve_registry("other")


def test_no_registry_says_how_to_set_one() -> None:
    with pytest.raises(UsageError, match="pass --registry URL, set PPATCH_REGISTRY"):
        config.resolve_registry()


@pytest.mark.parametrize(
    ("spelling", "normal"),
    [
        ("https://reg.example.org", "https://reg.example.org"),
        ("HTTPS://Reg.Example.ORG:443/", "https://reg.example.org"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("  https://reg.example.org/ppatch/  ", "https://reg.example.org/ppatch"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_one_registry_has_one_spelling(spelling: str, normal: str) -> None:
    assert config.normalize_registry_url(spelling) == normal


def test_one_registry_under_two_spellings_is_one_key_pin() -> None:
    from ppatch import trust

    trust.pin_keys("HTTP://Reg.Example.org:80/", "acme", {"ed25519:aa": "PEM"})
    assert trust.pinned_keys("http://reg.example.org", "acme") == {"ed25519:aa": "PEM"}
    trust.pin_keys("http://reg.example.org", "acme", {"ed25519:bb": "PEM2"})
    assert trust.pinned_keys("http://REG.example.org/", "acme") == {"ed25519:bb": "PEM2"}
    import tomllib

    from ppatch import constants

    pins = tomllib.loads(constants.known_keys_file().read_text())["registries"]
    assert list(pins) == ["http://reg.example.org"]


@pytest.mark.parametrize(
    "url",
    ["ftp://x.example", "http://", "https://x.example/?q=1", "x://y", "http://u:p@x.org",
     "http://x.org:99999"],
)  # fmt: skip
def test_bad_registry_urls_are_refused(url: str) -> None:
    with pytest.raises(UsageError, match="is not valid: expected an http"):
        config.resolve_registry(url)


def test_tokens_are_kept_apart_with_mode_0600(monkeypatch: pytest.MonkeyPatch) -> None:
    config.save_token("https://r.example/", "secret-1")
    config.save_token("https://other.example", "secret-2")
    assert config.load_token("https://r.example") == "secret-1"
    assert config.load_token("https://other.example") == "secret-2"
    assert config.load_token("https://unknown.example") is None
    assert constants.credentials_file().stat().st_mode & 0o777 == 0o600
    assert not constants.config_file().exists()
    monkeypatch.setenv("PPATCH_TOKEN", "from-env")
    assert config.load_token("https://r.example") == "from-env"


@pytest.mark.parametrize("token", ["", "   ", "two words"])
def test_bad_tokens_are_refused_and_nothing_written(token: str) -> None:
    with pytest.raises(UsageError, match="token is not valid"):
        config.save_token("https://r.example", token)
    assert not constants.credentials_file().exists()


def test_a_broken_config_file_is_named_in_the_error() -> None:
    constants.config_file().parent.mkdir(parents=True)
    constants.config_file().write_text("default_registry = [unclosed")
    with pytest.raises(UsageError, match=r"config\.toml.*not valid TOML"):
        config.load_config()


def test_a_config_file_of_the_wrong_shape_is_refused() -> None:
    constants.config_file().parent.mkdir(parents=True)
    constants.config_file().write_text("default_registry = 3\n")
    with pytest.raises(UsageError, match="default_registry must be a string"):
        config.load_config()
