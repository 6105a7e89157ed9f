"""Lockfiles: the exact installed set of a model, reproducible offline from the blob cache.

`ppatch freeze` writes one; `ppatch install -r FILE --model M` installs it, taking each file
from the local cache when its sha256 is there and downloading (then verifying) it otherwise.
TOML, so that people can read and review it:

    format = "ppatch-lock/1"
    model_fingerprint = "sha256:..."

    [[patches]]
    name = "acme/toxicity"
    version = "1.2.1"
    sha256 = "<64 hex>"
    size = 1234
    registry = "https://registry.example.org"
    url = "/blobs/sha256/<64 hex>"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tomli_w

from patchfmt.blob_paths import is_sha256_hex
from ppatch.errors import UsageError
from ppatch.store import InstalledPatch, InstalledSet

__all__ = ["LOCK_FORMAT", "InvalidLockfileError", "LockEntry", "Lockfile", "dumps", "loads"]

LOCK_FORMAT = "ppatch-lock/1"


class InvalidLockfileError(UsageError):
    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"lockfile {source!r} is not valid: {'; '.join(problems)}")
        self.source = source
        self.problems = problems


@dataclass(frozen=True)
class LockEntry:
    name: str
    version: str
    sha256: str
    size: int | None
    registry: str | None
    url: str | None

    def as_installed(self) -> InstalledPatch:
        return InstalledPatch(
            name=self.name,
            version=self.version,
            sha256=self.sha256,
            size=self.size,
            registry=self.registry,
            url=self.url,
        )


@dataclass(frozen=True)
class Lockfile:
    fingerprint: str
    entries: tuple[LockEntry, ...]


def dumps(state: InstalledSet) -> str:
    patches = []
    for patch in state.patches:
        entry: dict[str, Any] = {
            "name": patch.name,
            "version": patch.version,
            "sha256": patch.sha256,
        }
        for key in ("size", "registry", "url"):
            value = getattr(patch, key)
            if value is not None:
                entry[key] = value
        patches.append(entry)
    header = "# Written by 'ppatch freeze'; install with 'ppatch install -r FILE --model MODEL'.\n"
    body = {"format": LOCK_FORMAT, "model_fingerprint": state.fingerprint, "patches": patches}
    return header + tomli_w.dumps(body)


def _entry(raw: Any, position: int, problems: list[str]) -> LockEntry | None:
    where = f"patches[{position}]"
    if not isinstance(raw, Mapping):
        problems.append(f"{where} is not a table")
        return None
    name, version, sha256 = raw.get("name"), raw.get("version"), raw.get("sha256")
    size, registry, url = raw.get("size"), raw.get("registry"), raw.get("url")
    start = len(problems)
    if not isinstance(name, str) or not _is_package_name(name):
        problems.append(f"{where}.name {name!r} is not 'namespace/name'")
    if not isinstance(version, str) or not version:
        problems.append(f"{where}.version {version!r} is not a version string")
    if not is_sha256_hex(sha256):
        problems.append(f"{where}.sha256 {sha256!r} is not 64 lowercase hex digits")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        problems.append(f"{where}.size {size!r} is not a byte count")
    for key, value in (("registry", registry), ("url", url)):
        if value is not None and not isinstance(value, str):
            problems.append(f"{where}.{key} {value!r} is not a string")
    if len(problems) > start:
        return None
    return LockEntry(
        name=str(name),
        version=str(version),
        sha256=str(sha256),
        size=size,
        registry=registry,
        url=url,
    )


def loads(text: str, source: str) -> Lockfile:
    """Parse a lockfile, collecting every problem before raising `InvalidLockfileError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InvalidLockfileError(source, [f"not TOML ({error})"]) from error
    problems: list[str] = []
    if data.get("format") != LOCK_FORMAT:
        problems.append(f"format {data.get('format')!r} is not {LOCK_FORMAT!r}")
    fingerprint = data.get("model_fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint.startswith("sha256:"):
        problems.append(f"model_fingerprint {fingerprint!r} is not 'sha256:<hex>'")
    raw_patches = data.get("patches", [])
    if not isinstance(raw_patches, list):
        problems.append("patches is not an array of tables")
        raw_patches = []
    entries = [_entry(raw, position, problems) for position, raw in enumerate(raw_patches)]
    names = [entry.name for entry in entries if entry is not None]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"packages listed twice: {', '.join(duplicates)}")
    if problems:
        raise InvalidLockfileError(source, problems)
    return Lockfile(
        fingerprint=str(fingerprint),
        entries=tuple(entry for entry in entries if entry is not None),
    )


def _is_package_name(text: str) -> bool:
    # patchfmt.names is imported here, not at the top: it pulls in the version library, which
    # the CLI's start-up path (`ppatch outdated`) does not need.
    from patchfmt.names import is_name_part

    namespace, slash, name = text.partition("/")
    return bool(slash) and is_name_part(namespace) and is_name_part(name)
