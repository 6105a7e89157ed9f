"""The command table that lets `ppatch COMMAND` import only the module it needs."""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import subprocess
import sys
from typing import Any

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


def test_a_mistyped_command_gets_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main.main(["instal", "acme/toxicity"])
    assert exited.value.code == 2
    assert "did you mean 'install'?" in capsys.readouterr().err


def test_a_word_far_from_every_command_gets_no_guess(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main.main(["zzzzzz"])
    assert "did you mean" not in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from ppatch import __version__

    with pytest.raises(SystemExit) as exited:
        cli_main.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"ppatch {__version__}"


def test_global_options_come_before_the_command_and_pick_its_module() -> None:
    assert cli_main.command_of(["-q", "-v", "outdated", "--model", "m"]) == "outdated"
    assert cli_main.command_of(["--version"]) is None


def _run_with_handler(handler: Any, argv: list[str]) -> int:
    """`main` over a one-command parser whose handler is `handler` (global flags included)."""
    from ppatch.cli.help_text import walk

    parser = cli_main.build_parser("list")
    for path, child, _help in walk(parser):
        if path == ("list",):
            child.set_defaults(handler=handler)
    original = cli_main.build_parser
    cli_main.build_parser = lambda command=None: parser  # type: ignore[assignment]
    try:
        return cli_main.main(argv)
    finally:
        cli_main.build_parser = original


def test_quiet_silences_notes_and_warnings_but_not_results_or_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ppatch import verbosity
    from ppatch.errors import NotFoundError

    def talkative(_args: argparse.Namespace) -> int:
        verbosity.note("a note")
        verbosity.warn("a warning")
        verbosity.detail("a detail")
        print("the result")
        return 0

    for flags, shown in (
        ([], ["a note", "ppatch: warning: a warning"]),
        (["-q"], ["ppatch: warning: a warning"]),
        (["-qq"], []),
        (["-v"], ["a note", "ppatch: warning: a warning", "ppatch: a detail"]),
    ):
        assert _run_with_handler(talkative, [*flags, "list", "--model", "m"]) == 0
        captured = capsys.readouterr()
        assert captured.out == "the result\n"
        assert captured.err.splitlines() == shown, flags

    def failing(_args: argparse.Namespace) -> int:
        raise NotFoundError("no such thing")

    assert _run_with_handler(failing, ["-qq", "list", "--model", "m"]) == 4
    assert capsys.readouterr().err == "ppatch: error: no such thing\n"
    verbosity.set_level(0)


def test_json_failures_print_an_error_object_with_the_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ppatch.errors import NetworkError

    def offline(_args: argparse.Namespace) -> int:
        raise NetworkError("registry 'http://x' is unreachable")

    assert _run_with_handler(offline, ["list", "--model", "m", "--json"]) == 6
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {
        "error": {
            "code": "network",
            "exit_code": 6,
            "message": "registry 'http://x' is unreachable",
        }
    }
    assert captured.err == "ppatch: error: registry 'http://x' is unreachable\n"
    # Without --json, stdout stays empty.
    assert _run_with_handler(offline, ["list", "--model", "m"]) == 6
    assert capsys.readouterr().out == ""


def test_json_usage_errors_from_argparse_are_json_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main.main(["outdated", "--json"])  # --model is missing
    assert exited.value.code == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "usage" and error["exit_code"] == 2
    assert "--model" in error["message"]


@pytest.mark.parametrize("number", [errno.EROFS, errno.EACCES])
def test_an_unwritable_ppatch_home_names_the_folder_and_the_way_out(
    number: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from ppatch import constants

    part = constants.blobs_dir() / "tmp" / "download-moc10_x6.part"

    def write(_args: argparse.Namespace) -> int:
        raise OSError(number, os.strerror(number), str(part))

    assert _run_with_handler(write, ["list", "--model", "m"]) == 8
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"ppatch: error: cannot write to {str(constants.data_dir())!r}")
    assert "set PPATCH_HOME to a writable folder" in error
    assert "download-moc10_x6.part" not in error
    assert "\n" not in error


def test_other_os_errors_keep_their_own_message(capsys: pytest.CaptureFixture[str]) -> None:
    def write(_args: argparse.Namespace) -> int:
        raise OSError(errno.EROFS, "Read-only file system", "/somewhere/else.txt")

    assert _run_with_handler(write, ["list", "--model", "m"]) == 8
    assert "/somewhere/else.txt" in capsys.readouterr().err
