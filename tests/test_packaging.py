"""The distribution's layout: every package folder ships, under the name users import."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
FOLDER_TO_IMPORT = {
    "patchfmt": "patchfmt",
    "registry_server": "registry_server",
    "client": "ppatch",
}
FOLDER_FOR_IMPORT = {import_name: folder for folder, import_name in FOLDER_TO_IMPORT.items()}


def _package_folders() -> list[str]:
    names = []
    for folder, import_name in FOLDER_TO_IMPORT.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(ROOT / folder)
            names.append(".".join([import_name, *relative.parts]))
    return names


@pytest.mark.parametrize("package", _package_folders())
def test_every_package_folder_is_listed_for_the_wheel(package: str) -> None:
    assert package in PYPROJECT["tool"]["setuptools"]["packages"], (
        f"{package!r} has an __init__.py but is missing from [tool.setuptools] packages"
    )


def test_client_folder_installs_as_ppatch() -> None:
    import ppatch

    assert Path(ppatch.__file__).resolve().parent == ROOT / "client"


def test_registry_extra_never_pulls_torch() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    for requirement in PYPROJECT["project"]["dependencies"] + extras["server"]:
        assert not requirement.lower().startswith(("torch", "transformers", "peft")), requirement


def test_constraints_pin_the_cpu_torch_wheel() -> None:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in lines


def test_every_package_data_glob_matches_a_file() -> None:
    empty = [
        f"{package}: {pattern}"
        for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items()
        for pattern in patterns
        if not any((ROOT / FOLDER_FOR_IMPORT[package]).glob(pattern))
    ]
    assert empty == [], f"package-data globs that match nothing: {empty}"
