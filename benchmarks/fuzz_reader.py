"""Fuzz the `.ppatch` reader: any byte sequence is a valid patch or a `PatchFormatError`.

Three ways to run it:

    # coverage-guided, for as long as you like (atheris: `pip install -e '.[fuzz]'`); libFuzzer
    # flags cap memory and time per input, and a crash leaves its input in ./crash-*
    python benchmarks/fuzz_reader.py --atheris -- -rss_limit_mb=1024 -timeout=5 -runs=200000

    # the crafted hostile inputs and N seeded mutations of a valid patch, no atheris needed
    python benchmarks/fuzz_reader.py --mutations 20000 --seed 1

    # check the given files (the suite runs this under RLIMIT_AS and a timeout)
    python benchmarks/fuzz_reader.py --check FILE...

Every mode prints one JSON summary line; a violation (any other exception) exits 1 and names
the input. Memory and time are capped by the caller: the suite sets RLIMIT_AS and a timeout
on the subprocess; libFuzzer's flags do it for atheris.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import struct
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import numpy as np

import patchfmt
from patchfmt.container import _zip

__all__ = ["classify", "crafted_inputs", "mutations", "valid_patch"]


def classify(data: bytes) -> str:
    """'valid', or the name of the `PatchFormatError` subclass raised; anything else escapes."""
    try:
        patch = patchfmt.read_patch(data)
    except patchfmt.PatchFormatError as error:
        return type(error).__name__
    patch.embeddings()  # a valid patch's tensor must also load
    return "valid"


def _weights(tokens: int = 2, hidden: int = 4) -> bytes:
    array = np.arange(tokens * hidden, dtype=np.float32).reshape(tokens, hidden)
    return patchfmt.weights_from_array(array)


def valid_patch(signed: bool = True) -> bytes:
    weights = _weights()
    manifest = patchfmt.build_manifest(
        {
            "name": "fuzz/reader",
            "version": "1.0.0",
            "domain": "toxicity",
            "summary": "fuzz seed",
            "license": "Apache-2.0",
            "base_model": {"id": "tiny", "fingerprint": "sha256:" + "a" * 64},
            "evaluation": {"toxicity_probability": 0.1},
            "created": "2026-11-28T10:00:00Z",
        },
        weights,
    )
    key = patchfmt.generate_private_key() if signed else None
    signature = None if key is None else patchfmt.sign_manifest(manifest.canonical_bytes(), key)
    return patchfmt.pack_patch(manifest, weights, signature)


def _entries(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def _replace_entry(data: bytes, name: str, content: bytes) -> bytes:
    return _zip([(n, content if n == name else c) for n, c in _entries(data)])


def _zip_bomb() -> bytes:
    # 256 MiB of zeros deflated into about 250 KiB: refused for its method before inflating.
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", b"{}")
        with archive.open("weights.safetensors", "w", force_zip64=True) as entry:
            block = bytes(1024 * 1024)
            for _ in range(256):
                entry.write(block)
    return buffer.getvalue()


def _declared_sizes(data: bytes, size: int) -> bytes:
    """Every central and local header claims `size` bytes (stored and uncompressed)."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x01\x02", 20), (b"PK\x03\x04", 18)):
        start = 0
        while (found := out.find(signature, start)) != -1:
            struct.pack_into("<II", out, found + offset, size, size)
            start = found + 4
    return bytes(out)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _nested_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _with_weights(good: bytes, weights: bytes) -> bytes:
    """`good` with other weights and a manifest that declares their hash and size (unsigned:
    the reader does not check signatures), so the bytes reach the safetensors parser."""
    manifest = json.loads(dict(_entries(good))["manifest.json"])
    manifest["files"]["weights.safetensors"] = {
        "sha256": hashlib.sha256(weights).hexdigest(),
        "size": len(weights),
    }
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return _zip([("manifest.json", canonical), ("weights.safetensors", weights)])


def _safetensors_header(length: int, body: bytes = b"{}") -> bytes:
    return struct.pack("<Q", length) + body


def crafted_inputs() -> dict[str, bytes]:
    """Hostile inputs, by name: zip bombs, huge declared sizes, deep JSON, big headers."""
    good = valid_patch()
    huge_shape = (
        b'{"prompt_embeddings":{"dtype":"F32","shape":[4294967296,4294967296],'
        b'"data_offsets":[0,32]}}'
    )
    cases: dict[str, bytes] = {
        "valid": good,
        "valid_unsigned": valid_patch(signed=False),
        "valid_rebuilt": _with_weights(good, _weights()),
        "empty": b"",
        "zip_bomb_deflated": _zip_bomb(),
        "declared_4gib": _declared_sizes(good, 0xFFFFFFFF),
        "declared_63mib": _declared_sizes(good, 63 * 1024 * 1024),
        "end_record_only": struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 3, 3, 0xFFFF, 0, 0),
        "manifest_nested_arrays_200k": _replace_entry(good, "manifest.json", _nested(200_000)),
        "manifest_nested_objects_100k": _replace_entry(
            good, "manifest.json", _nested_objects(100_000)
        ),
        "manifest_evaluation_nested_900": _replace_entry(
            good, "manifest.json", b'{"evaluation":' + _nested_objects(900) + b"}"
        ),
        "signature_nested_arrays_2k": _replace_entry(good, "signature.json", _nested(2000)),
        "safetensors_header_2^63": _with_weights(good, _safetensors_header(2**63)),
        "safetensors_header_2^64-1": _with_weights(good, b"\xff" * 8 + b"{}"),
        "safetensors_header_beyond_file": _with_weights(good, _safetensors_header(60_000)),
        "safetensors_header_oversized": _with_weights(
            good, _safetensors_header(2_000_000, b" " * 2_000_000)
        ),
        "safetensors_header_nested_10k": _with_weights(
            good, _safetensors_header(20_000, _nested(10_000))
        ),
        "safetensors_huge_shape": _with_weights(
            good, _safetensors_header(len(huge_shape), huge_shape + bytes(32))
        ),
        "safetensors_nan": _with_weights(
            good,
            patchfmt.weights_from_array(np.ones((2, 4), dtype=np.float32))[:-4]
            + struct.pack("<f", float("nan")),
        ),
        "manifest_invalid_utf8": _replace_entry(
            good, "manifest.json", b"\xff\xfe" + dict(_entries(good))["manifest.json"]
        ),
        "truncated_half": good[: len(good) // 2],
    }
    return cases


_BOUNDARY = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\x00\x00\x00\x80"]


def mutations(seed_data: bytes, count: int, seed: int) -> Iterator[bytes]:
    """Seeded mutations, half of the whole file (so mostly caught by the container's checks),
    half of one entry re-zipped with valid CRCs (so they reach the JSON and tensor parsers)."""
    rng = random.Random(seed)
    entries = _entries(seed_data)
    for _ in range(count):
        if rng.random() < 0.5:
            yield _mutate(seed_data, rng)
            continue
        target = rng.randrange(len(entries))
        yield _zip(
            [
                (name, _mutate(content, rng) if index == target else content)
                for index, (name, content) in enumerate(entries)
            ]
        )


def _mutate(original: bytes, rng: random.Random) -> bytes:
    """Flips, overwrites with boundary values, cuts and splices."""
    data = bytearray(original)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        position = rng.randrange(len(data)) if data else 0
        if choice < 0.4 and data:
            data[position] ^= 1 << rng.randrange(8)
        elif choice < 0.7:
            value = rng.choice(_BOUNDARY)
            data[position : position + len(value)] = value
        elif choice < 0.85:
            del data[position : position + rng.randint(1, 64)]
        else:
            other = rng.randrange(len(data)) if data else 0
            data[position:position] = data[other : other + rng.randint(1, 64)]
    return bytes(data)


def _run(inputs: Iterator[tuple[str, bytes]]) -> int:
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    for name, data in inputs:
        try:
            outcomes[classify(data)] += 1
        except Exception as error:
            digest = hashlib.sha256(data).hexdigest()[:16]
            print(
                json.dumps(
                    {
                        "violation": name,
                        "sha256": digest,
                        "error": f"{type(error).__name__}: {str(error)[:200]}",
                    }
                ),
            )
            return 1
    summary = {"inputs": sum(outcomes.values()), "seconds": round(time.monotonic() - started, 2)}
    print(json.dumps({**summary, "outcomes": dict(sorted(outcomes.items()))}))
    return 0


def _atheris(argv: list[str]) -> int:  # pragma: no cover - run by hand, outside CI
    import atheris

    atheris.instrument_all()  # coverage of every loaded module (patchfmt, json, numpy)

    def one_input(data: bytes) -> None:
        classify(data)

    # The crafted inputs seed the corpus; libFuzzer adds what it finds to the same folder.
    corpus = Path(tempfile.mkdtemp(prefix="ppatch-fuzz-corpus-"))
    for name, data in crafted_inputs().items():
        (corpus / name).write_bytes(data)
    print(f"corpus: {corpus}", file=sys.stderr)
    atheris.Setup([sys.argv[0], *argv, str(corpus)], one_input)
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", nargs="+", type=Path, metavar="FILE", help="classify files")
    mode.add_argument("--atheris", action="store_true", help="coverage-guided fuzzing")
    parser.add_argument("--mutations", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("libfuzzer_args", nargs="*", help="after --: libFuzzer flags")
    args = parser.parse_args(argv)
    if args.atheris:
        return _atheris(args.libfuzzer_args)
    if args.check:
        return _run((str(path), path.read_bytes()) for path in args.check)
    seed_data = valid_patch()

    def everything() -> Iterator[tuple[str, bytes]]:
        yield from crafted_inputs().items()
        for index, data in enumerate(mutations(seed_data, args.mutations, args.seed)):
            yield f"mutation-{args.seed}-{index}", data

    return _run(everything())


if __name__ == "__main__":
    sys.exit(main())
