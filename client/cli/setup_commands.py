"""Commands about ppatch itself: `config` (list, get, set) and `completion` (shell scripts).

Local and light: no registry, no model, no torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ppatch import config, constants, verbosity
from ppatch.errors import ExitCode, NotFoundError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config",
        help="show or change settings in config.toml",
        description="Read and write the settings file (config/config.toml under PPATCH_HOME, "
        "or the XDG config folder): default_registry and registries.NAME aliases. Tokens are "
        "kept apart, by 'ppatch login'.",
    )
    actions = parser.add_subparsers(metavar="ACTION", required=True, parser_class=type(parser))
    listing = actions.add_parser("list", help="print every setting as KEY = VALUE")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_config_list)
    getter = actions.add_parser("get", help="print one setting's value")
    getter.add_argument("key", metavar="KEY", help="default_registry or registries.NAME")
    getter.set_defaults(handler=_config_get)
    setter = actions.add_parser("set", help="change one setting")
    setter.add_argument("key", metavar="KEY", help="default_registry or registries.NAME")
    setter.add_argument("value", metavar="VALUE", help="a registry URL (or alias)")
    setter.set_defaults(handler=_config_set)

    completion = subparsers.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script for bash, zsh or fish, generated from this "
        "version's commands and flags.",
    )
    from ppatch.cli.completion import SHELLS

    completion.add_argument("shell", choices=SHELLS, metavar="SHELL", help=", ".join(SHELLS))
    completion.set_defaults(handler=_completion)


def _config_list(args: argparse.Namespace) -> int:
    settings, unknown = config.list_settings()
    for key in unknown:
        verbosity.warn(
            f"unknown setting {key!r} in {str(constants.config_file())!r} is ignored "
            f"(known: {', '.join(config.KNOWN_KEYS)})"
        )
    if args.json:
        document = {"settings": settings, "unknown": unknown}
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        return int(ExitCode.OK)
    for key, value in sorted(settings.items()):
        print(f"{key} = {value}")
    return int(ExitCode.OK)


def _config_get(args: argparse.Namespace) -> int:
    value = config.get_setting(args.key)
    if value is None:
        raise NotFoundError(f"{args.key!r} is not set (set it with 'ppatch config set')")
    print(value)
    return int(ExitCode.OK)


def _config_set(args: argparse.Namespace) -> int:
    stored = config.set_setting(args.key, args.value)
    print(f"{args.key} = {stored}")
    return int(ExitCode.OK)


def _completion(args: argparse.Namespace) -> int:
    from ppatch.cli.completion import completion_script
    from ppatch.cli.main import build_parser

    sys.stdout.write(completion_script(build_parser(), args.shell))
    return int(ExitCode.OK)
