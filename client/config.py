"""The user's configuration: registries, the default one, and tokens.

`config.toml` holds registries (an alias table) and the default registry; `credentials.toml`
holds tokens keyed by registry URL and is written with mode 0600 so the config file itself can
be shared or committed without leaking secrets. Both are TOML, read with `tomllib` and written
atomically with `tomli_w`.

Which registry a command talks to: `--registry` (a URL or an alias), then `PPATCH_REGISTRY`,
then `default_registry` from the config file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

from patchfmt.atomic import atomic_write_text
from ppatch import constants
from ppatch.errors import UsageError

__all__ = [
    "KNOWN_KEYS",
    "Config",
    "get_setting",
    "list_settings",
    "load_config",
    "load_token",
    "normalize_registry_url",
    "resolve_registry",
    "save_config",
    "save_token",
    "set_setting",
]

CREDENTIALS_MODE = 0o600
# What `ppatch config` reads and writes; `registries.NAME` stands for any alias.
KNOWN_KEYS = ("default_registry", "registries.NAME")


@dataclass
class Config:
    registries: dict[str, str] = field(default_factory=dict)
    default_registry: str | None = None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {str(path)!r}: not valid TOML ({error})") from error


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_registry_url(url: str) -> str:
    """One spelling per registry: `scheme://host[:port][/path]` with the scheme and host in
    lower case, no default port (80, 443), no trailing slash. Tokens, key pins, the installed
    set's `registry` and the index cache are keyed by it, so `HTTPS://Reg.example.org:443/`
    and `https://reg.example.org` are one registry. Anything but http(s) is refused."""
    text = url.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
        or port == -1
    ):
        raise UsageError(
            f"registry {url!r} is not valid: expected an http:// or https:// URL "
            "such as 'https://registry.example.org'"
        )
    host = parts.hostname
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def load_config() -> Config:
    path = constants.config_file()
    data = _read_toml(path)
    registries = data.get("registries", {})
    default = data.get("default_registry")
    if not isinstance(registries, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in registries.items()
    ):
        raise UsageError(f"{str(path)!r}: [registries] must map names to URL strings")
    if default is not None and not isinstance(default, str):
        raise UsageError(f"{str(path)!r}: default_registry must be a string, got {default!r}")
    return Config(registries=dict(registries), default_registry=default)


def save_config(config: Config) -> None:
    data: dict[str, Any] = {}
    if config.default_registry is not None:
        data["default_registry"] = config.default_registry
    if config.registries:
        data["registries"] = dict(sorted(config.registries.items()))
    atomic_write_text(constants.config_file(), tomli_w.dumps(data), mode=None, make_parents=True)


def resolve_registry(explicit: str | None = None, config: Config | None = None) -> str:
    """The registry URL a command should use, or a `UsageError` saying how to set one."""
    chosen = explicit or constants.env_registry()
    if chosen is None:
        config = config if config is not None else load_config()
        chosen = config.default_registry
    if chosen is None:
        raise UsageError(
            "no registry configured: pass --registry URL, set PPATCH_REGISTRY, "
            "or run 'ppatch login --registry URL'"
        )
    if "://" not in chosen:
        config = config if config is not None else load_config()
        if chosen not in config.registries:
            known = ", ".join(sorted(config.registries)) or "none configured"
            raise UsageError(
                f"registry {chosen!r} is neither a URL nor a configured name (known: {known})"
            )
        chosen = config.registries[chosen]
    return normalize_registry_url(chosen)


def load_token(registry_url: str) -> str | None:
    """`PPATCH_TOKEN` if set, else the token stored by `ppatch login` for this registry."""
    token = constants.env_token()
    if token:
        return token
    tokens = _read_toml(constants.credentials_file()).get("tokens", {})
    value = tokens.get(normalize_registry_url(registry_url)) if isinstance(tokens, dict) else None
    return value if isinstance(value, str) and value else None


def save_token(registry_url: str, token: str) -> None:
    if not token.strip() or any(character.isspace() for character in token.strip()):
        raise UsageError("token is not valid: expected one word with no spaces")
    path = constants.credentials_file()
    data = _read_toml(path)
    tokens = data.get("tokens", {})
    if not isinstance(tokens, dict):
        tokens = {}
    tokens[normalize_registry_url(registry_url)] = token.strip()
    data["tokens"] = dict(sorted(tokens.items()))
    atomic_write_text(path, tomli_w.dumps(data), mode=CREDENTIALS_MODE, make_parents=True)


def list_settings() -> tuple[dict[str, str], list[str]]:
    """Every setting in the config file as `key -> value`, and the keys ppatch does not know
    (a typo such as `default-registry` that would otherwise be silently ignored)."""
    data = _read_toml(constants.config_file())
    load_config()  # refuse a file whose known keys have the wrong types
    settings: dict[str, str] = {}
    unknown: list[str] = []
    for key, value in data.items():
        if key == "default_registry":
            settings[key] = str(value)
        elif key == "registries":
            settings.update({f"registries.{name}": url for name, url in value.items()})
        else:
            unknown.append(key)
    return settings, sorted(unknown)


def _check_key(key: str) -> None:
    if key == "default_registry":
        return
    group, dot, name = key.partition(".")
    if group == "registries" and dot and name and "." not in name:
        return
    import difflib

    close = difflib.get_close_matches(key, ["default_registry", "registries"], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UsageError(f"unknown setting {key!r}: known settings are {', '.join(KNOWN_KEYS)}{hint}")


def get_setting(key: str) -> str | None:
    """The value of `key` in the config file, or None when it is not set."""
    _check_key(key)
    return list_settings()[0].get(key)


def set_setting(key: str, value: str) -> str:
    """Write `key = value` to the config file and return the value as stored; a registry URL
    is normalised, and `default_registry` must be a URL or a configured alias."""
    _check_key(key)
    data = _read_toml(constants.config_file())
    config = load_config()
    if key == "default_registry":
        if "://" in value:
            value = normalize_registry_url(value)
        elif value not in config.registries:
            known = ", ".join(sorted(config.registries)) or "none configured"
            raise UsageError(
                f"default_registry {value!r} is neither a URL nor a configured name "
                f"(known: {known})"
            )
        data["default_registry"] = value
    else:
        value = normalize_registry_url(value)
        registries = dict(data.get("registries", {}))
        registries[key.partition(".")[2]] = value
        data["registries"] = dict(sorted(registries.items()))
    atomic_write_text(constants.config_file(), tomli_w.dumps(data), mode=None, make_parents=True)
    return value
