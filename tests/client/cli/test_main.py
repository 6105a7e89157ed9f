"""The command table that lets `ppatch COMMAND` import only the module it needs."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from ppatch.cli import main as cli_main


def _registered_by(module_name: str) -> set[str]:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    importlib.import_module(module_name).register(subparsers)
    return set(subparsers.choices)


@pytest.mark.parametrize("module_name", cli_main.COMMAND_MODULES)
def test_owner_table_matches_what_each_module_registers(module_name: str) -> None:
    owned = {name for name, owner in cli_main.COMMAND_OWNERS.items() if owner == module_name}
    assert owned == _registered_by(module_name)


def test_every_owner_is_a_command_module() -> None:
    assert set(cli_main.COMMAND_OWNERS.values()) == set(cli_main.COMMAND_MODULES)


def test_a_registry_command_loads_only_the_registry_module() -> None:
    probe = (
        "import sys\n"
        "from ppatch.cli.main import build_parser; build_parser('outdated')\n"
        "print(sorted(m for m in sys.modules if m.startswith('ppatch.cli.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert "ppatch.cli.registry_commands" in result.stdout
    for other in ("build_commands", "apply_commands", "format_commands", "demo_command"):
        assert other not in result.stdout


def test_unknown_command_is_a_usage_error_listing_the_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main.main(["frobnicate"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "invalid choice: 'frobnicate'" in error and "outdated" in error


def test_a_closed_pipe_ends_quietly() -> None:
    probe = (
        "import argparse, sys\n"
        "from ppatch.cli import main as cli\n"
        "def handler(args):\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "def build(command=None):\n"
        "    parser = argparse.ArgumentParser()\n"
        "    parser.set_defaults(handler=handler)\n"
        "    return parser\n"
        "cli.build_parser = build\n"
        "sys.exit(cli.main([]))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == cli_main.BROKEN_PIPE_EXIT
    assert result.stderr == ""
