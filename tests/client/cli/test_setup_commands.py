"""`ppatch config list|get|set`: known keys only, URLs normalised, unknown keys warned about."""

from __future__ import annotations

import json
from typing import Any

from ppatch import config, constants


def test_set_get_and_list(ppatch: Any) -> None:
    result = ppatch("config", "set", "registries.local", "http://127.0.0.1:8080/")
    assert (result.code, result.out) == (0, "registries.local = http://127.0.0.1:8080\n")
    assert ppatch("config", "set", "default_registry", "local").code == 0
    assert ppatch("config", "get", "default_registry").out == "local\n"
    assert config.resolve_registry() == "http://127.0.0.1:8080"
    listed = ppatch("config", "list")
    assert listed.out == "default_registry = local\nregistries.local = http://127.0.0.1:8080\n"
    document = json.loads(ppatch("config", "list", "--json").out)
    assert document == {
        "settings": {"default_registry": "local", "registries.local": "http://127.0.0.1:8080"},
        "unknown": [],
    }


def test_unknown_keys_are_refused_with_a_suggestion(ppatch: Any) -> None:
    result = ppatch("config", "set", "default-registry", "http://x.org")
    assert result.code == 2
    assert "unknown setting 'default-registry'" in result.err
    assert "did you mean 'default_registry'?" in result.err
    assert not constants.config_file().exists()
    assert ppatch("config", "get", "registries").code == 2


def test_bad_values_are_refused_and_nothing_is_written(ppatch: Any) -> None:
    for key, value, fragment in (
        ("registries.local", "ftp://x", "not valid"),
        ("default_registry", "nowhere", "neither a URL nor a configured name"),
    ):
        result = ppatch("config", "set", key, value)
        assert result.code == 2 and fragment in result.err
    assert not constants.config_file().exists()


def test_get_of_an_unset_key_is_not_found(ppatch: Any) -> None:
    result = ppatch("config", "get", "default_registry")
    assert result.code == 4 and "is not set" in result.err


def test_list_warns_about_unknown_keys_in_the_file_and_set_keeps_them(ppatch: Any) -> None:
    path = constants.config_file()
    path.parent.mkdir(parents=True)
    path.write_text('default-registry = "http://typo.org"\ndefault_registry = "http://a.org"\n')
    result = ppatch("config", "list")
    assert result.out == "default_registry = http://a.org\n"
    assert "ppatch: warning: unknown setting 'default-registry'" in result.err
    assert ppatch("config", "set", "default_registry", "http://b.org").code == 0
    assert "default-registry" in path.read_text()
    assert ppatch("-qq", "config", "list").err == ""


def test_a_broken_config_file_is_a_usage_error(ppatch: Any) -> None:
    path = constants.config_file()
    path.parent.mkdir(parents=True)
    path.write_text("default_registry = [")
    result = ppatch("config", "list")
    assert result.code == 2 and "not valid TOML" in result.err
