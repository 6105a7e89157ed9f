"""Every `--json` output against the vocabulary of docs/cli.md ("JSON vocabulary").

Each command's document is checked against a small schema (its keys and their types), and every
document against the shared rules: a package `name` is always `namespace/name`; a list of
packages is always under `packages`; `model` is always the resolved absolute folder; fingerprints,
digests and yank fields have one form everywhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import Models, Registry, build_patch

pytestmark = pytest.mark.timeout(120)

FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")
SHA256 = re.compile(r"[0-9a-f]{64}")
OPTIONAL_STR = (str, type(None))

# Keys every document of a command must have, with their types (a tuple: any of them).
Schema = dict[str, Any]
PACKAGE_ROW: Schema = {"name": str, "version": str}
SCHEMAS: dict[str, Schema] = {
    "search": {"packages": [{"name": str, "namespace": str, "domain": str}]},
    "info": {"name": str, "namespace": str, "releases": [{"version": str, "yanked": bool}]},
    "install": {
        "dry_run": bool,
        "model": str,
        "fingerprint": str,
        "packages": [{**PACKAGE_ROW, "action": str, "yanked": bool, "warnings": list}],
    },
    "list": {"model": str, "fingerprint": str, "packages": [{**PACKAGE_ROW, "sha256": str}]},
    "outdated": {
        "model": str,
        "fingerprint": str,
        "outdated": bool,
        "packages": [{"name": str, "installed": str, "yanked": bool}],
    },
    "publish": {**PACKAGE_ROW, "fingerprint": str, "sha256": str, "created": bool},
    "yank": {**PACKAGE_ROW, "yanked": bool, "yanked_reason": OPTIONAL_STR, "changed": bool},
    "inspect": {"file": str, "sha256": str, "manifest": {"name": str, "version": str}},
    "fingerprint": {"model": str, "model_input": str, "fingerprint": str, "files": list},
    "config": {"settings": dict, "unknown": list},
    "error": {"error": {"code": str, "message": str, "exit_code": int}},
}
SCHEMAS["upgrade"] = SCHEMAS["install"]
SCHEMAS["unyank"] = SCHEMAS["yank"]


def check_schema(document: Any, schema: Any, where: str = "$") -> None:
    if isinstance(schema, dict):
        assert isinstance(document, dict), f"{where}: expected an object"
        for key, expected in schema.items():
            assert key in document, f"{where}: missing {key!r}"
            check_schema(document[key], expected, f"{where}.{key}")
    elif isinstance(schema, list):
        assert isinstance(document, list), f"{where}: expected a list"
        for position, item in enumerate(document):
            check_schema(item, schema[0], f"{where}[{position}]")
    else:
        assert isinstance(document, schema), f"{where}: {document!r} is not {schema}"


def check_vocabulary(document: Any, where: str = "$") -> None:
    """The rules shared by every command, wherever the keys appear."""
    if isinstance(document, list):
        for position, item in enumerate(document):
            check_vocabulary(item, f"{where}[{position}]")
        return
    if not isinstance(document, dict):
        return
    assert not {"patches", "results"} & set(document), f"{where}: lists are named 'packages'"
    for key, value in document.items():
        here = f"{where}.{key}"
        if (key == "name" and "version" in document) or (key == "name" and "namespace" in document):
            assert isinstance(value, str) and value.count("/") == 1, f"{here}: {value!r}"
        elif key == "model":
            assert isinstance(value, str) and Path(value).is_absolute(), f"{here}: {value!r}"
        elif key == "fingerprint" and value is not None:
            assert FINGERPRINT.fullmatch(value), f"{here}: {value!r}"
        elif key == "sha256" and value is not None:
            assert SHA256.fullmatch(value), f"{here}: {value!r}"
        elif key == "yanked":
            assert isinstance(value, bool), here
            assert "yanked_reason" in document or "releases" in where or "packages" in where
        check_vocabulary(value, here)


@pytest.fixture(autouse=True)
def use_registry(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("PPATCH_REGISTRY", registry.url)
    return registry


def test_every_json_command_speaks_the_one_vocabulary(
    ppatch: Any, registry: Registry, models: Models, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    patch_file = tmp_path / "vocab.ppatch"
    patch_file.write_bytes(
        build_patch("acme/vocab", "1.0.0", models.fingerprint_a, registry.keys["acme"])
    )
    model = str(models.a)
    runs: list[tuple[str, list[str], int]] = [
        ("search", ["search", "toxicity"], 0),
        ("info", ["info", "acme/toxicity"], 0),
        ("install", ["install", "acme/toxicity@1.2", "--model", model, "--dry-run"], 0),
        ("install", ["install", "acme/toxicity@1.2", "--model", model], 0),
        ("list", ["list", "--model", model], 0),
        ("outdated", ["outdated", "--model", model], 1),
        ("upgrade", ["upgrade", "--model", model, "--dry-run"], 0),
        ("inspect", ["inspect", str(patch_file)], 0),
        ("fingerprint", ["fingerprint", model], 0),
        ("config", ["config", "list"], 0),
        ("publish", ["publish", str(patch_file)], 0),
        ("yank", ["yank", "acme/vocab@1.0.0", "--reason", "test"], 0),
        ("unyank", ["unyank", "acme/vocab@1.0.0"], 0),
        ("error", ["info", "acme/no-such-package"], 4),
        ("error", ["install", "acme/harm", "acme/harm", "--model", model], 2),
    ]
    monkeypatch.setenv("PPATCH_TOKEN", registry.tokens["acme"])
    seen = set()
    for schema, argv, code in runs:
        result = ppatch(*argv, "--json")
        assert result.code == code, (argv, result.err)
        document = json.loads(result.out)
        check_schema(document, SCHEMAS[schema])
        check_vocabulary(document)
        seen.add(argv[0] if schema != "error" else "error")
    installed = json.loads(ppatch("list", "--model", model, "--json").out)
    assert installed["model"] == str(Path(model).resolve())
    assert seen == set(SCHEMAS) - {"config"} | {"config"}


def test_every_command_with_json_has_a_schema() -> None:
    from ppatch.cli.help_text import walk
    from ppatch.cli.main import build_parser

    with_json = {
        path[0]
        for path, child, _help in walk(build_parser())
        if any("--json" in action.option_strings for action in child._actions)
    }
    assert with_json <= set(SCHEMAS)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"packages": [{"name": "toxicity", "version": "1.0.0"}]}, "name"),
        ({"patches": []}, "packages"),
        ({"model": "./relative"}, "model"),
        ({"fingerprint": "abc"}, "fingerprint"),
    ],
)
def test_the_checker_catches_each_rule(document: dict[str, Any], problem: str) -> None:
    with pytest.raises(AssertionError, match=problem):
        check_vocabulary(document)
