"""`ppatch demo`: the whole flow runs to its evaluation table and always stops its registry."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from ppatch.cli.demo import RegistryProcess, run_demo
from ppatch.cli.main import main


def _port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_demo_runs_end_to_end(
    tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    world_root = Path(request.config.cache.mkdir("ppatch-miniature"))
    user_home = Path(os.environ["PPATCH_HOME"])
    report = run_demo(tmp_path / "demo", world_root=world_root)

    printed = capsys.readouterr().out
    assert "installed demo/toxicity 1.0.0" in printed
    assert "update available: 1.0.1" in printed
    assert "upgraded demo/toxicity 1.0.1 (was 1.0.0)" in printed
    assert "without patch:" in printed and "with patch:" in printed
    toxicity = json.loads((report / "toxicity" / "report.json").read_text())
    assert (report / "toxicity" / "report.md").is_file()
    assert list((report / "toxicity").glob("*.png"))
    assert (report / "fluency" / "report.json").is_file()
    assert "toxicity" in json.dumps(toxicity)
    # The demo kept its installs, keys and tokens in its workspace, not in the user's home.
    assert os.environ["PPATCH_HOME"] == str(user_home)
    assert not any(user_home.iterdir())
    assert (tmp_path / "demo" / "home").is_dir()


def test_registry_stops_when_the_demo_is_interrupted(tmp_path: Path) -> None:
    registry = RegistryProcess(tmp_path / "registry")
    with pytest.raises(KeyboardInterrupt), registry:
        assert _port_is_open(registry.port)
        raise KeyboardInterrupt
    assert not _port_is_open(registry.port)


def test_registry_stops_when_a_step_fails(tmp_path: Path) -> None:
    registry = RegistryProcess(tmp_path / "registry")
    with pytest.raises(RuntimeError, match="step failed"), registry:
        raise RuntimeError("step failed")
    assert not _port_is_open(registry.port)


def test_demo_refuses_a_file_as_its_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert main(["demo", "--dir", str(not_a_folder)]) == 2
    error = capsys.readouterr().err
    assert error.strip() == f"ppatch: error: --dir {str(not_a_folder)!r} exists and is not a folder"
    assert not_a_folder.read_text() == "x"
