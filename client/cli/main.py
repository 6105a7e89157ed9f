"""The `ppatch` command: argument parsing, dispatch, and the one place errors become exit codes.

Each group of commands lives in its own module that exposes `register(subparsers)`; a command's
parser sets `handler`, a function from the parsed arguments to an exit code. Command modules
import only light modules at the top: torch and transformers are imported inside the handlers
that touch a model, so registry-facing commands start fast (tests/client/test_startup.py).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ppatch import __version__
from ppatch.errors import ExitCode, PpatchError
from ppatch.terminal_text import printable

__all__ = ["build_parser", "main"]

# Order here is the order of `ppatch --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "ppatch.cli.format_commands",
    "ppatch.cli.registry_commands",
    "ppatch.cli.apply_commands",
    "ppatch.cli.build_commands",
    "ppatch.cli.demo_command",
    "ppatch.cli.serve_command",
)

# Which module registers each command, so that `ppatch outdated` in a cron job imports only the
# registry commands' module, not the train, eval and apply modules' dependencies.
# tests/client/cli/test_main.py checks this table against what the modules register.
COMMAND_OWNERS: dict[str, str] = {
    **dict.fromkeys(
        ("keygen", "pack", "inspect", "verify", "fingerprint"), "ppatch.cli.format_commands"
    ),
    **dict.fromkeys(
        (
            "search",
            "info",
            "install",
            "remove",
            "list",
            "freeze",
            "outdated",
            "upgrade",
            "publish",
            "yank",
            "unyank",
            "login",
            "trust",
        ),
        "ppatch.cli.registry_commands",
    ),
    **dict.fromkeys(("generate", "import-peft", "export-peft"), "ppatch.cli.apply_commands"),
    **dict.fromkeys(("train", "eval", "miniature"), "ppatch.cli.build_commands"),
    "demo": "ppatch.cli.demo_command",
    "serve": "ppatch.cli.serve_command",
}

DEBUG_VARIABLE = "PPATCH_DEBUG"
# What a shell reports for a process ended by SIGPIPE (128 + 13).
BROKEN_PIPE_EXIT = 141


class _Parser(argparse.ArgumentParser):
    """argparse's parser, exiting with our usage code and a one-line message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or, given a known command name, one with just that command's group."""
    parser = _Parser(
        prog="ppatch",
        description="Install, apply, build and publish safety patches for language models.",
    )
    parser.add_argument("--version", action="version", version=f"ppatch {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=_Parser, required=True
    )
    owner = COMMAND_OWNERS.get(command or "")
    modules = [owner] if owner in COMMAND_MODULES else COMMAND_MODULES
    for module_name in modules:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _exit_code_for(error: BaseException) -> int:
    """Map an expected error to its exit code; `None`-like 0 never comes from here."""
    if isinstance(error, PpatchError):
        return int(error.exit_code)
    # The format library knows nothing of exit codes; its errors are verification failures,
    # except a missing file or model, which is "not found".
    from patchfmt.errors import PatchFormatError

    if isinstance(error, PatchFormatError):
        if isinstance(error, FileNotFoundError):
            return int(ExitCode.NOT_FOUND)
        return int(ExitCode.VERIFICATION)
    if isinstance(error, FileNotFoundError):
        return int(ExitCode.NOT_FOUND)
    return int(ExitCode.FAILED)


def _one_line(error: BaseException) -> str:
    # Error messages may quote a registry's answer: printed without control characters.
    text = printable(" ".join(str(error).split("\n")).strip()) or type(error).__name__
    return text


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(arguments[0] if arguments else None)
    args = parser.parse_args(arguments)
    debug = bool(os.environ.get(DEBUG_VARIABLE))
    try:
        code = int(args.handler(args))
    except KeyboardInterrupt:
        print("ppatch: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`ppatch list | head`): stop quietly, as piped Unix tools do, and
        # keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_EXIT
    except (PpatchError, OSError, ValueError) as error:
        if debug:
            raise
        print(f"ppatch: error: {_one_line(error)}", file=sys.stderr)
        return _exit_code_for(error)
    return code


if __name__ == "__main__":
    sys.exit(main())
