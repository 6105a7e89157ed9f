"""The registry's signed index: TUF metadata (python-tuf) built from the database.

Roles (TUF specification 1.0, consistent snapshots):

- root: keys and thresholds, signed offline by a threshold of root keys. Created and rotated
  by `ppatch-registry tuf init` / `tuf rotate-root`; the server never holds a root key.
- targets: one target per release artifact (`packages/{ns}/{name}/{version}/{fp}.ppatch`, with
  its length and sha256 and, in `custom`, namespace, name, version, fingerprint, blob URL,
  yank state and reason) and one per namespace (`keys/{ns}.json`, its vendor keys with their
  active or revoked state in `custom`). Signed online.
- snapshot and timestamp: signed online; the timestamp expires soonest (1 day by default).

Every metadata version is a row of `tuf_metadata`, never changed afterwards, so all server
processes serve the same bytes for a version whichever database backs them. New versions are
made lazily when metadata is asked for: targets when the audit log (which every change to
releases, yanks and keys writes) has moved on, or when half of its lifetime has passed;
snapshot and timestamp when what they point to changed or half their lifetime has passed. Two
processes making the same version race on the table's unique key; the loser reads the
winner's row.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from securesystemslib.signer import CryptoSigner, Key, Signer
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from registry_server.config import Settings
from registry_server.errors import ErrorCode, RegistryError
from registry_server.models import (
    Artifact,
    AuditEvent,
    Namespace,
    Package,
    Release,
    SigningKey,
    TufMetadata,
)

__all__ = [
    "Lifetimes",
    "TufNotInitializedError",
    "current_metadata",
    "generate_signer",
    "initial_root",
    "latest",
    "load_signer",
    "next_root",
    "stored",
    "targets_content",
    "write_signer",
]

ONLINE_ROLES = ("targets", "snapshot", "timestamp")
_SERIALIZER = JSONSerializer(compact=True)


class TufNotInitializedError(RegistryError):
    def __init__(self) -> None:
        super().__init__(
            ErrorCode.NOT_FOUND,
            "this registry does not sign its index: run `ppatch-registry tuf init`",
        )


@dataclass(frozen=True)
class Lifetimes:
    """How long each role's metadata stays valid."""

    root: dt.timedelta = dt.timedelta(days=365)
    targets: dt.timedelta = dt.timedelta(days=30)
    snapshot: dt.timedelta = dt.timedelta(days=7)
    timestamp: dt.timedelta = dt.timedelta(days=1)

    @classmethod
    def from_settings(cls, settings: Settings) -> Lifetimes:
        return cls(
            root=dt.timedelta(seconds=settings.tuf_root_expiry),
            targets=dt.timedelta(seconds=settings.tuf_targets_expiry),
            snapshot=dt.timedelta(seconds=settings.tuf_snapshot_expiry),
            timestamp=dt.timedelta(seconds=settings.tuf_timestamp_expiry),
        )


# -- keys -------------------------------------------------------------------------------------


def generate_signer() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


def write_signer(path: Path, signer: CryptoSigner) -> None:
    """The private key as unencrypted PKCS#8 PEM, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = load_pem_private_key(signer.private_bytes, None).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    path.touch(mode=0o600, exist_ok=False)
    path.write_bytes(pem)


def load_signer(path: Path) -> CryptoSigner:
    try:
        private = load_pem_private_key(path.read_bytes(), None)
    except FileNotFoundError as error:
        raise RegistryError(
            ErrorCode.NOT_FOUND, f"TUF key file {str(path)!r} is missing"
        ) from error
    except ValueError as error:
        raise RegistryError(
            ErrorCode.INVALID_REQUEST, f"{str(path)!r} is not a PEM private key: {error}"
        ) from error
    return CryptoSigner(private)


# -- storage ----------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def latest(session: Session, role: str) -> TufMetadata | None:
    return session.scalar(
        select(TufMetadata).where(TufMetadata.role == role).order_by(TufMetadata.version.desc())
    )


def stored(session: Session, role: str, version: int) -> TufMetadata | None:
    return session.scalar(
        select(TufMetadata).where(TufMetadata.role == role, TufMetadata.version == version)
    )


def _insert(session: Session, metadata: Metadata[Any], role: str, marker: str = "") -> bool:
    """Store one new version; False when another process stored that version first."""
    row = TufMetadata(
        role=role,
        version=metadata.signed.version,
        marker=marker,
        body=metadata.to_bytes(_SERIALIZER).decode("utf-8"),
        expires=metadata.signed.expires,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


def _parsed(row: TufMetadata) -> Metadata[Any]:
    return Metadata.from_bytes(row.body.encode("utf-8"))


# -- root -------------------------------------------------------------------------------------


def _root_with(
    version: int,
    root_keys: Sequence[Key],
    threshold: int,
    online: Key,
    lifetimes: Lifetimes,
) -> Root:
    if not 1 <= threshold <= len(root_keys):
        raise RegistryError(
            ErrorCode.INVALID_REQUEST,
            f"a root threshold of {threshold} needs between 1 and {len(root_keys)} root keys",
        )
    root = Root(version=version, expires=_now() + lifetimes.root, consistent_snapshot=True)
    for key in root_keys:
        root.add_key(key, "root")
    root.roles["root"].threshold = threshold
    for role in ONLINE_ROLES:
        root.add_key(online, role)
    return root


def initial_root(
    session: Session,
    root_signers: Sequence[Signer],
    threshold: int,
    online: Key,
    lifetimes: Lifetimes,
) -> Metadata[Root]:
    """Root version 1, signed by every root key; refused when a root already exists."""
    if latest(session, "root") is not None:
        raise RegistryError(
            ErrorCode.CONFLICT,
            "this registry already has a TUF root; rotate it with "
            "`ppatch-registry tuf rotate-root`",
        )
    keys = [signer.public_key for signer in root_signers]
    metadata = Metadata(_root_with(1, keys, threshold, online, lifetimes))
    for signer in root_signers:
        metadata.sign(signer, append=True)
    if not _insert(session, metadata, "root"):
        raise RegistryError(ErrorCode.CONFLICT, "another process created the TUF root first")
    return metadata


def next_root(
    session: Session,
    old_signers: Sequence[Signer],
    new_signers: Sequence[Signer],
    threshold: int,
    online: Key,
    lifetimes: Lifetimes,
) -> Metadata[Root]:
    """Root version N+1 with the new root keys, signed by old and new keys (TUF 5.3.4): a
    client holding root N checks it against N's threshold, then against its own."""
    row = latest(session, "root")
    if row is None:
        raise TufNotInitializedError()
    previous: Metadata[Root] = _parsed(row)
    keys = [signer.public_key for signer in new_signers]
    metadata = Metadata(_root_with(row.version + 1, keys, threshold, online, lifetimes))
    signed_by: set[str] = set()
    for signer in [*old_signers, *new_signers]:
        if signer.public_key.keyid not in signed_by:
            metadata.sign(signer, append=True)
            signed_by.add(signer.public_key.keyid)
    # Both thresholds are checked here already, so a wrong key file is refused now, not by
    # every client later.
    try:
        previous.signed.verify_delegate("root", metadata.signed_bytes, metadata.signatures)
        metadata.signed.verify_delegate("root", metadata.signed_bytes, metadata.signatures)
    except Exception as error:  # tuf raises UnsignedMetadataError; any failure is the same
        raise RegistryError(
            ErrorCode.INVALID_SIGNATURE,
            f"the new root is not signed by a threshold of the old and of the new root keys: "
            f"{error}",
        ) from None
    if not _insert(session, metadata, "root"):
        raise RegistryError(ErrorCode.CONFLICT, "another process rotated the TUF root first")
    return metadata


# -- targets, snapshot, timestamp -------------------------------------------------------------


def _marker(session: Session) -> str:
    """The state of the audit log (append-only, written by every change to the index).

    The count as well as the highest id: PostgreSQL may commit ids out of order."""
    highest, count = session.execute(
        select(func.max(AuditEvent.id), func.count(AuditEvent.id))
    ).one()
    return f"{highest or 0}:{count}"


def _keys_document(namespace: str, keys: Sequence[SigningKey]) -> list[dict[str, Any]]:
    return [
        {"key_id": key.key_id, "public_key": key.public_key_pem, "active": key.revoked_at is None}
        for key in keys
    ]


def keys_target_bytes(namespace: str, keys: list[dict[str, Any]]) -> bytes:
    """The bytes of `keys/{ns}.json`: what the target's length and hash cover."""
    document = {"namespace": namespace, "keys": keys}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def targets_content(session: Session) -> dict[str, TargetFile]:
    """Every artifact and every namespace's keys, as TUF targets."""
    targets: dict[str, TargetFile] = {}
    rows = session.execute(
        select(Namespace.name, Package.name, Release, Artifact)
        .join(Package, Package.namespace_id == Namespace.id)
        .join(Release, Release.package_id == Package.id)
        .join(Artifact, Artifact.release_id == Release.id)
    ).all()
    for namespace, name, release, artifact in rows:
        short = artifact.fingerprint.removeprefix("sha256:")
        path = f"packages/{namespace}/{name}/{release.version}/{short}.ppatch"
        targets[path] = TargetFile(
            length=artifact.size,
            hashes={"sha256": artifact.sha256},
            path=path,
            unrecognized_fields={
                "custom": {
                    "namespace": namespace,
                    "name": name,
                    "version": release.version,
                    "fingerprint": artifact.fingerprint,
                    "url": f"/blobs/sha256/{artifact.sha256}",
                    "key_id": artifact.key_id,
                    "yanked": bool(release.yanked),
                    "yanked_reason": release.yanked_reason,
                }
            },
        )
    for owner in session.scalars(select(Namespace).order_by(Namespace.name)):
        query = select(SigningKey).where(SigningKey.namespace_id == owner.id)
        keys = session.scalars(query.order_by(SigningKey.id)).all()
        document = _keys_document(owner.name, keys)
        path = f"keys/{owner.name}.json"
        target = TargetFile.from_data(path, keys_target_bytes(owner.name, document))
        target.unrecognized_fields["custom"] = {"namespace": owner.name, "keys": document}
        targets[path] = target
    return targets


def _stale(
    row: TufMetadata | None, lifetime: dt.timedelta, now: dt.datetime, signer: Signer
) -> bool:
    """No row yet, less than half of its lifetime left, or signed by another online key than
    the current one (after a rotation, everything online is signed again)."""
    if row is None or signer.public_key.keyid not in _parsed(row).signatures:
        return True
    expires = row.expires if row.expires.tzinfo else row.expires.replace(tzinfo=dt.UTC)
    return expires - now < lifetime / 2


def _refresh_targets(
    session: Session, signer: Signer, lifetimes: Lifetimes, now: dt.datetime
) -> TufMetadata:
    for _attempt in range(5):
        row = latest(session, "targets")
        marker = _marker(session)
        unchanged = row is not None and row.marker == marker
        if unchanged and not _stale(row, lifetimes.targets, now, signer):
            assert row is not None
            return row
        version = 1 if row is None else row.version + 1
        metadata = Metadata(
            Targets(
                version=version, expires=now + lifetimes.targets, targets=targets_content(session)
            )
        )
        metadata.sign(signer)
        _insert(session, metadata, "targets", marker)
    raise RegistryError(ErrorCode.CONFLICT, "the signed index is changing too fast; retry")


def _refresh_snapshot(
    session: Session, signer: Signer, lifetimes: Lifetimes, now: dt.datetime, targets: TufMetadata
) -> TufMetadata:
    for _attempt in range(5):
        row = latest(session, "snapshot")
        if row is not None and not _stale(row, lifetimes.snapshot, now, signer):
            meta = _parsed(row).signed.meta.get("targets.json")
            if meta is not None and meta.version >= targets.version:
                return row
        version = 1 if row is None else row.version + 1
        body = targets.body.encode("utf-8")
        meta = MetaFile.from_data(targets.version, body, ["sha256"])
        metadata = Metadata(
            Snapshot(version=version, expires=now + lifetimes.snapshot, meta={"targets.json": meta})
        )
        metadata.sign(signer)
        _insert(session, metadata, "snapshot")
    raise RegistryError(ErrorCode.CONFLICT, "the signed index is changing too fast; retry")


def _refresh_timestamp(
    session: Session, signer: Signer, lifetimes: Lifetimes, now: dt.datetime, snapshot: TufMetadata
) -> TufMetadata:
    for _attempt in range(5):
        row = latest(session, "timestamp")
        if row is not None and not _stale(row, lifetimes.timestamp, now, signer):
            pointed = _parsed(row).signed.snapshot_meta.version
            if pointed >= snapshot.version:
                return row
        version = 1 if row is None else row.version + 1
        meta = MetaFile.from_data(snapshot.version, snapshot.body.encode("utf-8"), ["sha256"])
        metadata = Metadata(
            Timestamp(version=version, expires=now + lifetimes.timestamp, snapshot_meta=meta)
        )
        metadata.sign(signer)
        _insert(session, metadata, "timestamp")
    raise RegistryError(ErrorCode.CONFLICT, "the signed index is changing too fast; retry")


def current_metadata(
    session: Session, signer: Signer, lifetimes: Lifetimes, now: dt.datetime | None = None
) -> TufMetadata:
    """The current timestamp row, making new targets, snapshot and timestamp versions first
    where the database or the clock moved on."""
    root_row = latest(session, "root")
    if root_row is None:
        raise TufNotInitializedError()
    root: Root = _parsed(root_row).signed
    for role in ONLINE_ROLES:
        if signer.public_key.keyid not in root.roles[role].keyids:
            raise RegistryError(
                ErrorCode.INTERNAL,
                f"the online TUF key {signer.public_key.keyid[:16]} is not the {role} key of "
                f"root version {root.version}",
            )
    moment = now or _now()
    targets = _refresh_targets(session, signer, lifetimes, moment)
    snapshot = _refresh_snapshot(session, signer, lifetimes, moment, targets)
    return _refresh_timestamp(session, signer, lifetimes, moment, snapshot)
