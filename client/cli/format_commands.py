"""Commands that make and check `.ppatch` files: keygen, pack, sign, inspect, verify,
fingerprint.

They work on local files only (no registry, no torch). Handlers raise typed errors; `main`
turns them into one line and an exit code. Output files are written atomically, so a failed
command leaves nothing new behind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import patchfmt
from ppatch.errors import ConflictError, NotFoundError
from ppatch.fingerprints import model_fingerprint
from ppatch.output_paths import check_parent_creatable
from ppatch.progress import progress

__all__ = ["register"]

MAX_KEY_BYTES = 16 * 1024


def register(subparsers: Any) -> None:
    keygen = subparsers.add_parser(
        "keygen",
        help="create an ed25519 signing key pair",
        description="Write a private key KEY (mode 0600) and its public key KEY.pub.",
    )
    keygen.add_argument("-o", "--output", required=True, type=Path, metavar="KEY")
    keygen.add_argument("--force", action="store_true", help="replace an existing key")
    keygen.set_defaults(handler=run_keygen)

    pack = subparsers.add_parser(
        "pack",
        help="build a .ppatch file from weights and a manifest",
        description="Build a deterministic .ppatch: the manifest file (JSON or TOML) gives the "
        "human fields; 'files' and 'patch' come from the weights, and the base model's "
        "fingerprint from --model when given.",
    )
    pack.add_argument("--weights", required=True, type=Path, metavar="W")
    pack.add_argument("--manifest", required=True, type=Path, metavar="M")
    pack.add_argument("--model", metavar="MODEL", help="base model folder or cached repo id")
    pack.add_argument("--key", type=Path, metavar="KEY", help="private key to sign with")
    pack.add_argument("-o", "--output", required=True, type=Path, metavar="FILE")
    pack.set_defaults(handler=run_pack)

    sign = subparsers.add_parser(
        "sign",
        help="sign a .ppatch file (or replace its signature)",
        description="Sign FILE's manifest with the private KEY, in place or into -o OUT. "
        "The manifest and weights are kept byte for byte, so the file's content is unchanged; "
        "only its signature entry is added or replaced. Registries accept only signed files.",
    )
    sign.add_argument("file", type=Path, metavar="FILE")
    sign.add_argument("--key", required=True, type=Path, metavar="KEY", help="private key (PEM)")
    sign.add_argument(
        "-o", "--output", type=Path, metavar="OUT", help="write here instead of over FILE"
    )
    sign.set_defaults(handler=run_sign)

    inspect = subparsers.add_parser(
        "inspect", help="show a .ppatch file's manifest", description="Check and describe FILE."
    )
    inspect.add_argument("file", type=Path, metavar="FILE")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(handler=run_inspect)

    verify = subparsers.add_parser(
        "verify",
        help="check a .ppatch file, its signature and its base model",
        description="Check FILE's structure, hashes and tensor. Without --public-key a "
        "signature is reported but not checked; with it, the file must be signed by that key. "
        "With --model, the model's fingerprint must be one the patch accepts.",
    )
    verify.add_argument("file", type=Path, metavar="FILE")
    verify.add_argument("--model", metavar="MODEL")
    verify.add_argument("--public-key", type=Path, metavar="PUB")
    verify.set_defaults(handler=run_verify)

    fingerprint = subparsers.add_parser(
        "fingerprint",
        help="print a model's fingerprint",
        description="Digest of a safetensors model's tensors, independent of sharding.",
    )
    fingerprint.add_argument("model", metavar="MODEL")
    fingerprint.add_argument("--json", action="store_true", help="machine-readable output")
    fingerprint.set_defaults(handler=run_fingerprint)


# -- helpers ---------------------------------------------------------------------------------


def _read_input(path: Path, what: str, limit: int) -> bytes:
    if not path.is_file():
        raise NotFoundError(f"{what} {str(path)!r} does not exist or is not a file")
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"{what} {str(path)!r} is {size} bytes; at most {limit}")
    return path.read_bytes()


def _check_output_folder(path: Path, *, make_folders: bool = False) -> None:
    """With `make_folders` (pack), missing folders above `path` are fine: the caller makes
    them right before it writes. keygen still wants the folder of a private key to exist."""
    if make_folders:
        check_parent_creatable(path)
    elif not path.parent.is_dir():
        raise NotFoundError(
            f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist"
        )
    if path.is_dir():
        raise ConflictError(f"cannot write {str(path)!r}: it is a directory")


def _manifest_fields(path: Path) -> dict[str, Any]:
    from patchfmt.canonical import loads_strict
    from patchfmt.manifest import MAX_MANIFEST_BYTES

    data = _read_input(path, "manifest file", MAX_MANIFEST_BYTES)
    try:
        if path.suffix.lower() == ".toml":
            parsed: Any = tomllib.loads(data.decode("utf-8"))
        else:
            parsed = loads_strict(data)
    except ValueError as error:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise patchfmt.InvalidManifestError(
            [f"not valid {kind} ({error})"], source=str(path)
        ) from None
    if not isinstance(parsed, dict):
        raise patchfmt.InvalidManifestError(
            [f"must be an object/table, found {type(parsed).__name__}"], source=str(path)
        )
    created = parsed.get("created")
    if isinstance(created, datetime) and created.utcoffset() == timedelta(0):
        # An unquoted TOML date-time; the manifest stores it as RFC 3339 text in UTC.
        parsed["created"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    return parsed


@dataclass(frozen=True)
class _Fingerprinted:
    path: Path
    files: list[Path]
    size: int
    fingerprint: str


def _fingerprint_with_bar(model: str) -> _Fingerprinted:
    path = patchfmt.resolve_model_path(model)
    files = patchfmt.model_weight_files(path)
    size = sum(file.stat().st_size for file in files)
    with progress("Fingerprinting", size, unit="bytes") as advance:
        fingerprint = model_fingerprint(path, progress=advance)
    return _Fingerprinted(path=path, files=files, size=size, fingerprint=fingerprint)


# -- handlers --------------------------------------------------------------------------------


def run_keygen(args: argparse.Namespace) -> int:
    private_path: Path = args.output
    public_path = private_path.with_name(private_path.name + ".pub")
    _check_output_folder(private_path)
    existing = [str(p) for p in (private_path, public_path) if p.exists()]
    if existing and not args.force:
        raise ConflictError(
            f"{' and '.join(repr(p) for p in existing)} already exist(s); pass --force to "
            "replace the key (anything signed with the old key stays signed by it)"
        )
    from patchfmt.atomic import atomic_write_bytes

    key = patchfmt.generate_private_key()
    atomic_write_bytes(private_path, patchfmt.private_key_to_pem(key), mode=0o600)
    try:
        atomic_write_bytes(public_path, patchfmt.public_key_to_pem(key), mode=0o644)
    except BaseException:
        private_path.unlink(missing_ok=True)
        raise
    print(f"wrote {private_path} (private, keep it secret) and {public_path}")
    print(f"key id: {patchfmt.key_id(key)}")
    return 0


def run_pack(args: argparse.Namespace) -> int:
    _check_output_folder(args.output, make_folders=True)
    fields = _manifest_fields(args.manifest)
    raw_weights = _read_input(args.weights, "weights file", patchfmt.ReadLimits().max_weights_bytes)
    weights = patchfmt.canonical_weights(raw_weights, source=str(args.weights))
    private_key = None
    if args.key is not None:
        pem = _read_input(args.key, "private key", MAX_KEY_BYTES)
        private_key = patchfmt.load_private_key(pem, source=str(args.key))
    if args.model is not None:
        fingerprint = _fingerprint_with_bar(args.model).fingerprint
        base_model = fields.get("base_model", {})
        if isinstance(base_model, dict):
            fields["base_model"] = {"id": str(args.model), **base_model, "fingerprint": fingerprint}
    manifest = patchfmt.build_manifest(fields, weights, source=str(args.manifest))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    patchfmt.write_patch(args.output, manifest, weights, private_key)
    signed = (
        f", signed by {patchfmt.key_id(private_key)}" if private_key is not None else ", unsigned"
    )
    print(f"wrote {args.output}: {manifest.name} {manifest.version}{signed}")
    return 0


def run_sign(args: argparse.Namespace) -> int:
    output: Path = args.output if args.output is not None else args.file
    _check_output_folder(output, make_folders=True)
    patch = patchfmt.read_patch(args.file)
    pem = _read_input(args.key, "private key", MAX_KEY_BYTES)
    private_key = patchfmt.load_private_key(pem, source=str(args.key))
    signer = patchfmt.key_id(private_key)
    output.parent.mkdir(parents=True, exist_ok=True)
    patchfmt.write_patch(output, patch.manifest, patch.weights, private_key)
    before = patch.signature.key_id if patch.signature is not None else None
    if before is None:
        history = "was unsigned"
    elif before == signer:
        history = "was already signed by this key"
    else:
        history = f"replaces the signature by {before}"
    print(
        f"wrote {output}: {patch.manifest.name} {patch.manifest.version}, signed by {signer} "
        f"({history})"
    )
    return 0


def _describe_file(path: Path) -> dict[str, Any]:
    patch = patchfmt.read_patch(path)
    data = path.read_bytes()
    return {
        "file": str(path),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "manifest": patch.manifest.model_dump(mode="json"),
        "signature": None if patch.signature is None else patch.signature.model_dump(),
    }


def run_inspect(args: argparse.Namespace) -> int:
    described = _describe_file(args.file)
    if args.json:
        print(json.dumps(described, indent=2, sort_keys=True))
        return 0
    manifest = described["manifest"]
    base = manifest["base_model"]
    patch = manifest["patch"]
    signature = described["signature"]
    lines = [
        f"{manifest['name']} {manifest['version']}  ({manifest['domain']})",
        f"  summary:      {manifest['summary']}",
        f"  license:      {manifest['license']}",
        f"  base model:   {base['id']}" + (f" @ {base['revision']}" if base["revision"] else ""),
        f"  fingerprint:  {base['fingerprint']}",
        *(f"  compatible:   {fp}" for fp in base["compatible_fingerprints"]),
        f"  patch:        {patch['kind']}, {patch['num_virtual_tokens']} virtual tokens x "
        f"{patch['hidden_size']}, {patch['dtype']}",
        f"  created:      {manifest['created']}",
        f"  requires:     ppatch >= {manifest['requires']}",
        f"  signed by:    {signature['key_id'] if signature else '(unsigned)'}",
        f"  file:         {described['size']} bytes, sha256 {described['sha256']}",
    ]
    for section in ("training", "evaluation"):
        for key, value in sorted(manifest[section].items()):
            lines.append(f"  {section}.{key}: {json.dumps(value, sort_keys=True)}")
    print("\n".join(lines))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    patch = patchfmt.read_patch(args.file)
    manifest = patch.manifest
    print(f"{args.file}: {manifest.name} {manifest.version}")
    print("  structure, sha256 of every file, tensor shape and values: ok")
    if args.public_key is not None:
        pem = _read_input(args.public_key, "public key", MAX_KEY_BYTES)
        public_key = patchfmt.load_public_key(pem, source=str(args.public_key))
        verified = patchfmt.verify_patch(patch, {patchfmt.key_id(public_key): public_key})
        print(f"  signature: ok, signed by {verified}")
    elif patch.signature is not None:
        print(
            f"  signature: signed by {patch.signature.key_id} (not checked against a trusted "
            "key; pass --public-key to check it)"
        )
    else:
        print("  signature: none (unsigned)")
    if args.model is not None:
        fingerprint = _fingerprint_with_bar(args.model).fingerprint
        patchfmt.check_fingerprint(manifest, fingerprint)
        print(f"  base model: ok, fingerprint {fingerprint}")
    return 0


def run_fingerprint(args: argparse.Namespace) -> int:
    result = _fingerprint_with_bar(args.model)
    if args.json:
        described = {
            "model": str(result.path),
            "model_input": args.model,
            "fingerprint": result.fingerprint,
            "files": [file.name for file in result.files],
            "size": result.size,
        }
        print(json.dumps(described, indent=2, sort_keys=True))
    else:
        print(result.fingerprint)
    return 0
