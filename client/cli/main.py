"""The `ppatch` command: argument parsing, dispatch, and the one place errors become exit codes.

Each group of commands lives in its own module that exposes `register(subparsers)`; a command's
parser sets `handler`, a function from the parsed arguments to an exit code. Command modules
import only light modules at the top: torch and transformers are imported inside the handlers
that touch a model, so registry-facing commands start fast (tests/client/test_startup.py).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ppatch import __version__, verbosity
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
    "ppatch.cli.setup_commands",
)

# Which module registers each command, so that `ppatch outdated` in a cron job imports only the
# registry commands' module, not the train, eval and apply modules' dependencies.
# tests/client/cli/test_main.py checks this table against what the modules register.
COMMAND_OWNERS: dict[str, str] = {
    **dict.fromkeys(
        ("keygen", "pack", "sign", "inspect", "verify", "fingerprint"),
        "ppatch.cli.format_commands",
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
    **dict.fromkeys(("config", "completion"), "ppatch.cli.setup_commands"),
}

DEBUG_VARIABLE = "PPATCH_DEBUG"
# What a shell reports for a process ended by SIGPIPE (128 + 13).
BROKEN_PIPE_EXIT = 141


# Errors whose errno means "this folder cannot be written", reported with the folder's name
# and how to choose another instead of Python's "[Errno 30] ...: '<temporary file>'".
_UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})


class _Parser(argparse.ArgumentParser):
    """argparse's parser, exiting with our usage code and a one-line message; a mistyped
    command gets "did you mean", and under --json the error is also a JSON object on stdout."""

    json_errors = False

    def error(self, message: str) -> None:  # type: ignore[override]
        message += _suggestion(message)
        if _Parser.json_errors:
            _print_json_error(ExitCode.USAGE, message)
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message}\n")


def _suggestion(message: str) -> str:
    """argparse says "invalid choice: 'instal' (choose from ...)"; add the closest choice."""
    marker = "invalid choice: "
    if marker not in message or "(choose from " not in message:
        return ""
    typed = message.split(marker, 1)[1].split(" (choose from ", 1)[0].strip("'\"")
    choices_text = message.split("(choose from ", 1)[1].rstrip(")")
    choices = [part.strip().strip("'\"") for part in choices_text.split(",")]
    import difflib  # only on this error path: the cron job's start-up does not pay for it

    close = difflib.get_close_matches(typed, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _print_json_error(code: int, message: str) -> None:
    """The `--json` failure document (docs/cli.md): programs read stdout, people stderr."""
    document = {
        "error": {
            "code": _ERROR_CODES.get(code, "failed"),
            "message": message,
            "exit_code": int(code),
        }
    }
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


_ERROR_CODES: dict[int, str] = {
    ExitCode.USAGE: "usage",
    ExitCode.VERIFICATION: "verification",
    ExitCode.NOT_FOUND: "not_found",
    ExitCode.CONFLICT: "conflict",
    ExitCode.NETWORK: "network",
    ExitCode.PERMISSION: "permission",
    ExitCode.FAILED: "failed",
    ExitCode.INTERRUPTED: "interrupted",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or, given a known command name, one with just that command's group."""
    from ppatch.cli.help_text import HelpFormatter, decorate

    parser = _Parser(
        prog="ppatch",
        description="Install, apply, build and publish safety patches for language models.",
        epilog="Run 'ppatch COMMAND --help' for a command's flags, exit codes and examples; "
        "docs/cli.md has the whole contract.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ppatch {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="say more: -v which registry and model fingerprint, -vv tracebacks of failures",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0,
        help="say less: -q no notes or progress bars, -qq no warnings either (results and "
        "errors are always printed)",
    )
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=_Parser, required=True
    )
    owner = COMMAND_OWNERS.get(command or "")
    modules = [owner] if owner in COMMAND_MODULES else COMMAND_MODULES
    for module_name in modules:
        importlib.import_module(module_name).register(subparsers)
    decorate(parser)
    return parser


def command_of(arguments: Sequence[str]) -> str | None:
    """The command word of a command line: the first argument that is not a global option."""
    for argument in arguments:
        if not argument.startswith("-"):
            return argument
    return None


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


def _unwritable_state_folder(error: OSError) -> Path | None:
    """The ppatch state folder (under PPATCH_HOME or the XDG folders) that `error` failed to
    write, or None when the error is about something else."""
    if error.errno not in _UNWRITABLE or not error.filename:
        return None
    from ppatch import constants

    failed = Path(os.fsdecode(error.filename)).absolute()
    for folder in (constants.data_dir(), constants.cache_dir(), constants.config_dir()):
        folder = folder.absolute()
        if failed == folder or folder in failed.parents:
            return folder
    return None


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError):
        folder = _unwritable_state_folder(error)
        if folder is not None:
            reason = error.strerror or "cannot be written"
            return (
                f"cannot write to {str(folder)!r} ({reason.lower()}): make it writable, or "
                "set PPATCH_HOME to a writable folder (e.g. PPATCH_HOME=~/.ppatch)"
            )
    return _one_line(error)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in arguments
    _Parser.json_errors = as_json
    parser = build_parser(command_of(arguments))
    args = parser.parse_args(arguments)
    verbosity.set_level(int(getattr(args, "verbose", 0)) - int(getattr(args, "quiet", 0)))
    debug = bool(os.environ.get(DEBUG_VARIABLE)) or verbosity.level() >= 2
    try:
        code = int(args.handler(args))
    except KeyboardInterrupt:
        print("ppatch: interrupted", file=sys.stderr)
        if as_json:
            _print_json_error(ExitCode.INTERRUPTED, "interrupted")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`ppatch list | head`): stop quietly, as piped Unix tools do, and
        # keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_EXIT
    except (PpatchError, OSError, ValueError) as error:
        if debug:
            raise
        message, exit_code = _describe(error), _exit_code_for(error)
        print(f"ppatch: error: {message}", file=sys.stderr)
        if as_json and getattr(args, "json", False):
            _print_json_error(exit_code, message)
        return exit_code
    return code


if __name__ == "__main__":
    sys.exit(main())
