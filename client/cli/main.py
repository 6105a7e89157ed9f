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

__all__ = ["build_parser", "main"]

# Order here is the order of `ppatch --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "ppatch.cli.format_commands",
    "ppatch.cli.registry_commands",
    "ppatch.cli.apply_commands",
    "ppatch.cli.build_commands",
    "ppatch.cli.demo_command",
)

DEBUG_VARIABLE = "PPATCH_DEBUG"


class _Parser(argparse.ArgumentParser):
    """argparse's parser, exiting with our usage code and a one-line message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ppatch",
        description="Install, apply, build and publish safety patches for language models.",
    )
    parser.add_argument("--version", action="version", version=f"ppatch {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=_Parser, required=True
    )
    for module_name in COMMAND_MODULES:
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
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split("\n")) if "\n" in text else text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(os.environ.get(DEBUG_VARIABLE))
    try:
        code = int(args.handler(args))
    except KeyboardInterrupt:
        print("ppatch: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except (PpatchError, OSError, ValueError) as error:
        if debug:
            raise
        print(f"ppatch: error: {_one_line(error)}", file=sys.stderr)
        return _exit_code_for(error)
    return code


if __name__ == "__main__":
    sys.exit(main())
