"""`ppatch serve`: the OpenAI-compatible server for a local model and its installed patches.

The server's libraries (FastAPI, uvicorn, prometheus-client, torch, transformers) are imported
only inside the handler, after checking they are installed: without them the command says in
one line which extra to install.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import socket
import sys
from typing import Any

from ppatch.errors import ExitCode, PpatchError, UsageError

__all__ = ["SERVE_MODULES", "MissingExtraError", "missing_modules", "register"]

# What `ppatch serve` imports, and the distributions the `serve` extra installs for them.
SERVE_MODULES = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "prometheus_client": "prometheus-client",
    "torch": "torch",
    "transformers": "transformers",
}


class MissingExtraError(PpatchError):
    """A library the command needs is not installed."""


def missing_modules(modules: dict[str, str] = SERVE_MODULES) -> list[str]:
    """The distributions of `modules` that cannot be imported here."""
    return [dist for module, dist in modules.items() if importlib.util.find_spec(module) is None]


def _check_serve_extra() -> None:
    missing = missing_modules()
    if missing:
        raise MissingExtraError(
            f"ppatch serve needs the 'serve' extra ({', '.join(missing)} missing): "
            "pip install 'ppatch[serve]'"
        )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 1 and 65535")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _check_address(host: str, port: int) -> None:
    """Refuse an address that cannot be listened on before spending time loading the model."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    family, kind, protocol, _, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise UsageError(f"cannot listen on {host}:{port}: {error.strerror}") from None


def _serve(args: argparse.Namespace) -> int:
    _check_serve_extra()
    _check_address(args.host, args.port)
    import uvicorn

    from ppatch.serve.app import create_app
    from ppatch.serve.server import ServeOptions, load_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = ServeOptions(
        window_seconds=args.batch_window_ms / 1000,
        max_batch_rows=args.max_batch,
        auto_upgrade_seconds=args.auto_upgrade,
        registry=args.registry,
        served_name=args.served_name,
    )
    server = load_server(args.model, options, device=args.device, dtype=args.dtype)
    print(
        f"serving {server.base_id} ({server.state.current.default.header or 'no patches'}) "
        f"on http://{args.host}:{args.port}/v1",
        file=sys.stderr,
    )
    uvicorn.run(create_app(server), host=args.host, port=args.port, log_level="warning")
    return int(ExitCode.OK)


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve the model and its installed patches over an OpenAI-compatible API",
        description="Serve MODEL with its installed patches at /v1/models, /v1/completions and "
        "/v1/chat/completions. A change of the installed set (ppatch install, upgrade or "
        "remove from any process, or --auto-upgrade) is swapped in without a restart; "
        "requests in flight finish on the set they started with.",
    )
    serve.add_argument("--model", required=True, help="a model directory or cached repo id")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8000, help="port to listen on")
    serve.add_argument(
        "--auto-upgrade",
        type=_seconds,
        metavar="SECONDS",
        help="check the registry for upgrades every SECONDS and swap them in",
    )
    serve.add_argument("--registry", help="registry URL for --auto-upgrade (default: config)")
    serve.add_argument("--served-name", help="the model id clients use (default: folder name)")
    serve.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when available)")
    serve.add_argument("--dtype", help="float32, bfloat16, float16 (default: the checkpoint's)")
    serve.add_argument(
        "--batch-window-ms",
        type=float,
        default=5.0,
        help="how long the scheduler waits for more requests to batch (default 5)",
    )
    serve.add_argument(
        "--max-batch", type=_port, default=32, help="most rows in one batch (default 32)"
    )
    serve.set_defaults(handler=_serve)
