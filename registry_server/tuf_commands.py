"""`ppatch-registry tuf ...` and `ppatch-registry export`: the signed index's admin commands.

`tuf init` makes the root keys (written to a directory the operator then takes offline), the
online key the server signs with, and root version 1. `tuf keygen` makes one more root key;
`tuf rotate-root` replaces the root keys, signed by the old and the new ones. `export DIR`
writes the signed metadata and every blob as static files, for a mirror or a CDN origin.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry_server import tuf_repo
from registry_server.config import Settings
from registry_server.db import session_factory
from registry_server.errors import ErrorCode, RegistryError
from registry_server.models import Artifact, TufMetadata

__all__ = ["register"]

Handler = Callable[[argparse.Namespace, Settings], int]


def _with_session(settings: Settings, action: Callable[[Session], str]) -> int:
    from registry_server.cli import ready_engine  # cli imports this module to register it

    engine = ready_engine(settings)
    try:
        with session_factory(engine)() as session:
            message = action(session)
    finally:
        engine.dispose()
    print(message)
    return 0


def _online_signer(settings: Settings, *, create: bool) -> CryptoSigner:
    path = settings.resolved_tuf_online_key
    if create and not path.exists():
        tuf_repo.write_signer(path, tuf_repo.generate_signer())
    return tuf_repo.load_signer(path)


def _root_fingerprint(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _init(args: argparse.Namespace, settings: Settings) -> int:
    key_dir = Path(args.key_dir)
    if key_dir.exists() and any(key_dir.iterdir()):
        raise RegistryError(
            ErrorCode.INVALID_REQUEST,
            f"{str(key_dir)!r} is not empty: root keys go to a new directory",
        )
    lifetimes = tuf_repo.Lifetimes.from_settings(settings)

    def act(session: Session) -> str:
        if tuf_repo.latest(session, "root") is not None:
            raise RegistryError(
                ErrorCode.CONFLICT,
                "this registry already has a TUF root; rotate it with "
                "`ppatch-registry tuf rotate-root`",
            )
        signers = [tuf_repo.generate_signer() for _ in range(args.root_keys)]
        online = _online_signer(settings, create=True)
        tuf_repo.initial_root(session, signers, args.threshold, online.public_key, lifetimes)
        for position, signer in enumerate(signers, start=1):
            tuf_repo.write_signer(key_dir / f"root-{position}.pem", signer)
        row = tuf_repo.stored(session, "root", 1)
        assert row is not None
        return (
            f"created TUF root version 1 ({args.threshold} of {len(signers)} root keys), "
            f"fingerprint {_root_fingerprint(row.body.encode('utf-8'))}\n"
            f"root keys written to {key_dir}: move them offline now\n"
            f"online key: {settings.resolved_tuf_online_key}"
        )

    return _with_session(settings, act)


def _keygen(args: argparse.Namespace, _settings: Settings) -> int:
    path = Path(args.file)
    if path.exists():
        raise RegistryError(ErrorCode.CONFLICT, f"{str(path)!r} exists; not overwriting a key")
    signer = tuf_repo.generate_signer()
    tuf_repo.write_signer(path, signer)
    print(f"wrote root key {signer.public_key.keyid} to {path}")
    return 0


def _rotate_root(args: argparse.Namespace, settings: Settings) -> int:
    old = [tuf_repo.load_signer(Path(item)) for item in args.old_key]
    new = [tuf_repo.load_signer(Path(item)) for item in args.new_key]
    lifetimes = tuf_repo.Lifetimes.from_settings(settings)

    def act(session: Session) -> str:
        online = _online_signer(settings, create=False)
        metadata = tuf_repo.next_root(
            session, old, new, args.threshold, online.public_key, lifetimes
        )
        row = tuf_repo.stored(session, "root", metadata.signed.version)
        assert row is not None
        return (
            f"created TUF root version {metadata.signed.version} ({args.threshold} of "
            f"{len(new)} root keys), fingerprint {_root_fingerprint(row.body.encode('utf-8'))}"
        )

    return _with_session(settings, act)


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from registry_server.storage import open_storage

    out = Path(args.directory)
    lifetimes = tuf_repo.Lifetimes.from_settings(settings)
    storage = open_storage(
        settings.resolved_storage, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region
    )

    def act(session: Session) -> str:
        tuf_repo.current_metadata(session, _online_signer(settings, create=False), lifetimes)
        metadata_dir = out / "tuf"
        metadata_dir.mkdir(parents=True, exist_ok=True)
        written = 0
        for row in session.scalars(select(TufMetadata).order_by(TufMetadata.id)):
            name = f"{row.version}.{row.role}.json"
            (metadata_dir / name).write_text(row.body, "utf-8")
            written += 1
        timestamp = tuf_repo.latest(session, "timestamp")
        assert timestamp is not None
        # Written last: a mirror serving the directory mid-export points only at files
        # already there.
        blobs = out / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        count = 0
        for digest in session.scalars(select(Artifact.sha256).order_by(Artifact.sha256)):
            target = blobs / digest
            if not target.exists():
                partial = target.with_suffix(".partial")
                with partial.open("wb") as handle:
                    for chunk in storage.read(digest):
                        handle.write(chunk)
                partial.replace(target)
            count += 1
        temporary = metadata_dir / "timestamp.json.partial"
        temporary.write_text(timestamp.body, "utf-8")
        temporary.replace(metadata_dir / "timestamp.json")
        return f"exported {written} metadata files and {count} blobs to {out}"

    return _with_session(settings, act)


def register(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    tuf = commands.add_parser("tuf", help="the signed index (TUF)").add_subparsers(
        metavar="ACTION", required=True, parser_class=parser_class
    )
    init = tuf.add_parser("init", help="create root keys, the online key and root version 1")
    init.add_argument("--key-dir", required=True, help="new directory for the root keys")
    init.add_argument("--root-keys", type=int, default=3, help="how many root keys (default 3)")
    init.add_argument(
        "--threshold", type=int, default=2, help="root keys needed to sign a root (default 2)"
    )
    init.set_defaults(handler=_init)
    keygen = tuf.add_parser("keygen", help="write a new root key (PEM) to FILE")
    keygen.add_argument("file")
    keygen.set_defaults(handler=_keygen)
    rotate = tuf.add_parser("rotate-root", help="replace the root keys (root version N+1)")
    rotate.add_argument(
        "--old-key", action="append", required=True, help="a current root key (repeat)"
    )
    rotate.add_argument("--new-key", action="append", required=True, help="a new root key (repeat)")
    rotate.add_argument("--threshold", type=int, required=True)
    rotate.set_defaults(handler=_rotate_root)
    export = commands.add_parser("export", help="write signed metadata and blobs as static files")
    export.add_argument("directory")
    export.set_defaults(handler=_export)
