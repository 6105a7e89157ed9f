"""`ppatch demo`: the whole system on embedded defaults, in a few minutes on a CPU."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ppatch.errors import UsageError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train, publish, install, apply, upgrade and evaluate a patch, end to end",
        description=(
            "Build a miniature base model and a safer reference, train a toxicity patch, "
            "publish it to a local registry, install and apply it, publish and install an "
            "update, and evaluate. Runs in a new temporary workspace unless --dir is given."
        ),
    )
    parser.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="workspace to use (created if needed; a reused one keeps its models and key)",
    )
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from ppatch.cli.demo import run_demo

    if args.dir is not None and args.dir.exists() and not args.dir.is_dir():
        raise UsageError(f"--dir {str(args.dir)!r} exists and is not a folder")
    run_demo(args.dir)
    return 0
