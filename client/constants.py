"""Environment variables and default paths, read at call time.

The one module that looks at `os.environ` for the client (huggingface_hub's `constants.py`
habit). Everything is a function rather than a module-level value so that a test's
`monkeypatch.setenv` takes effect without reloading anything.

Layout: with `PPATCH_HOME` set, everything lives under it (`data/`, `cache/`, `config/`).
Without it, installed state and blobs go to the XDG data directory, the index and fingerprint
caches to the XDG cache directory, and the configuration to the XDG config directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from ppatch.errors import UsageError

__all__ = [
    "APP_NAME",
    "DEFAULT_HTTP_RETRIES",
    "DEFAULT_HTTP_TIMEOUT",
    "DOWNLOAD_CHUNK_SIZE",
    "MAX_ANSWER_BYTES",
    "blob_mirrors",
    "blobs_dir",
    "cache_dir",
    "config_dir",
    "config_file",
    "credentials_file",
    "data_dir",
    "env_registry",
    "env_token",
    "fingerprint_cache_dir",
    "http_retries",
    "http_timeout",
    "index_cache_dir",
    "known_keys_file",
    "locks_dir",
    "models_dir",
    "offline",
    "tuf_root_file",
]

APP_NAME = "ppatch"
DEFAULT_HTTP_TIMEOUT = 10.0
DEFAULT_HTTP_RETRIES = 3
# Large chunks keep the per-chunk Python overhead negligible next to the copy itself
# (benchmarks/client.py compares install throughput against curl).
DOWNLOAD_CHUNK_SIZE = 1024 * 1024
# The most a JSON answer (an index, a search, the update check) may hold; reading stops there,
# so a hostile registry cannot make the client buffer an endless answer. A package index with
# thousands of releases is well under 1 MiB.
MAX_ANSWER_BYTES = 16 * 1024 * 1024

_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def _home() -> Path | None:
    value = os.environ.get("PPATCH_HOME")
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    """Installed state and downloaded blobs: what `ppatch list` shows must survive cache wipes."""
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    """Things that can be rebuilt: cached registry indexes, model fingerprints."""
    home = _home()
    return home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME))


def config_dir() -> Path:
    home = _home()
    return home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME))


def config_file() -> Path:
    return config_dir() / "config.toml"


def credentials_file() -> Path:
    """Tokens live apart from the config so the config can be shared and the tokens kept 0600."""
    return config_dir() / "credentials.toml"


def known_keys_file() -> Path:
    """Pinned namespace keys, like SSH's known_hosts."""
    return config_dir() / "known_keys.toml"


def blobs_dir() -> Path:
    return data_dir() / "blobs"


def models_dir() -> Path:
    return data_dir() / "models"


def locks_dir() -> Path:
    return data_dir() / "locks"


def index_cache_dir() -> Path:
    return cache_dir() / "index"


def fingerprint_cache_dir() -> Path:
    return cache_dir() / "fingerprints"


def env_registry() -> str | None:
    return os.environ.get("PPATCH_REGISTRY") or None


def env_token() -> str | None:
    return os.environ.get("PPATCH_TOKEN") or None


def blob_mirrors() -> list[str]:
    """Origins other than the registry's that blobs may come from (`PPATCH_MIRRORS`, commas)."""
    raw = os.environ.get("PPATCH_MIRRORS", "")
    return [item.strip() for item in raw.split(",") if item.strip()]


def tuf_root_file() -> Path | None:
    """A registry root the operator distributes (`PPATCH_TUF_ROOT`), pinned instead of the
    registry's first answer."""
    raw = os.environ.get("PPATCH_TUF_ROOT")
    return Path(raw).expanduser() if raw else None


def offline() -> bool:
    return os.environ.get("PPATCH_OFFLINE", "").strip().lower() in _TRUE_WORDS


def _number(variable: str, default: float, *, minimum: float) -> float:
    raw = os.environ.get(variable)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise UsageError(f"{variable}={raw!r} is not valid: expected a number >= {minimum:g}")
    return value


def http_timeout() -> float:
    """Seconds to wait for the registry to connect or send the next bytes."""
    return _number("PPATCH_HTTP_TIMEOUT", DEFAULT_HTTP_TIMEOUT, minimum=0.001)


def http_retries() -> int:
    """Extra attempts after a connection error or 5xx on an idempotent request."""
    return int(_number("PPATCH_HTTP_RETRIES", DEFAULT_HTTP_RETRIES, minimum=0))
