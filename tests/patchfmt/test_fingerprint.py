"""The base-model fingerprint: sharding-invariant, byte-sensitive, streamed, cached."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from patchfmt import (
    FingerprintMismatchError,
    InvalidWeightsError,
    Manifest,
    ModelNotFoundError,
    check_fingerprint,
    fingerprint_model,
    model_config_file,
    resolve_model_path,
)
from patchfmt import fingerprint as fingerprint_module

Tensors = dict[str, np.ndarray]
MakeModel = Callable[..., Path]

SAFETENSORS_DTYPES = {
    np.dtype(np.float16): "F16",
    np.dtype(np.float32): "F32",
    np.dtype(np.int64): "I64",
}


def reference_fingerprint(tensors: Tensors) -> str:
    """docs/format.md's layout, written out independently of the implementation."""
    leaves = []
    for name in sorted(tensors, key=lambda n: n.encode()):
        array = np.asarray(tensors[name])  # not ascontiguousarray: it turns scalars into 1-D
        dtype = SAFETENSORS_DTYPES[array.dtype].encode()
        data = array.astype(array.dtype.newbyteorder("<")).tobytes(order="C")
        shape = b"".join(struct.pack("<Q", d) for d in array.shape)
        prefix = b"ppatch-tensor/1\x00"
        prefix += struct.pack("<Q", len(name.encode())) + name.encode()
        prefix += struct.pack("<Q", len(dtype)) + dtype
        prefix += struct.pack("<Q", array.ndim) + shape
        prefix += struct.pack("<Q", len(data))
        leaves.append(hashlib.sha256(prefix + data).digest())
    root = b"ppatch-fingerprint/1\x00" + struct.pack("<Q", len(leaves)) + b"".join(leaves)
    return "sha256:" + hashlib.sha256(root).hexdigest()


def test_matches_the_documented_layout(
    tmp_path: Path, make_model: MakeModel, tensors: Tensors
) -> None:
    model = make_model(tmp_path / "m", tensors)
    assert fingerprint_model(model) == reference_fingerprint(tensors)


@pytest.mark.parametrize(
    ("shards", "index"),
    [
        (None, True),
        ([["lm_head.weight", "step"], ["model.embed_tokens.weight"], ["model.layers.0.mlp.weight",
          "model.layers.0.norm.weight", "model.layers.1.mlp.weight"]], True),
        ([["model.layers.1.mlp.weight", "lm_head.weight", "model.embed_tokens.weight"],
          ["step", "model.layers.0.norm.weight", "model.layers.0.mlp.weight"]], True),
        ([["model.layers.1.mlp.weight", "lm_head.weight", "model.embed_tokens.weight"],
          ["step", "model.layers.0.norm.weight", "model.layers.0.mlp.weight"]], False),
    ],
    ids=["one-file", "three-shards", "two-shards", "two-shards-no-index"],
)  # fmt: skip
def test_sharding_does_not_change_the_fingerprint(
    tmp_path: Path,
    make_model: MakeModel,
    tensors: Tensors,
    shards: list[list[str]] | None,
    index: bool,
) -> None:
    model = make_model(tmp_path / "m", tensors, shards, index=index)
    assert fingerprint_model(model) == reference_fingerprint(tensors)


@pytest.mark.parametrize(
    "name",
    ["model.embed_tokens.weight", "model.layers.0.norm.weight", "lm_head.weight", "step"],
)
def test_any_changed_byte_changes_the_fingerprint(
    tmp_path: Path, make_model: MakeModel, tensors: Tensors, name: str
) -> None:
    original = fingerprint_model(make_model(tmp_path / "a", tensors))
    changed = dict(tensors)
    raw = bytearray(np.ascontiguousarray(tensors[name]).tobytes())
    raw[len(raw) // 2] ^= 0x01
    changed[name] = np.frombuffer(bytes(raw), dtype=tensors[name].dtype).reshape(
        tensors[name].shape
    )
    assert fingerprint_model(make_model(tmp_path / "b", changed)) != original


@pytest.mark.parametrize(
    "change",
    [
        lambda t: {("renamed" if k == "step" else k): v for k, v in t.items()},
        lambda t: t | {"model.layers.0.mlp.weight": t["model.layers.0.mlp.weight"].reshape(4, 16)},
        lambda t: t | {"lm_head.weight": t["lm_head.weight"].view(np.int16)},
        lambda t: t | {"extra": np.zeros(1, dtype=np.float32)},
        lambda t: {k: v for k, v in t.items() if k != "step"},
    ],
    ids=["rename", "reshape", "same-bytes-other-dtype", "extra-tensor", "missing-tensor"],
)
def test_names_shapes_and_dtypes_count(
    tmp_path: Path, make_model: MakeModel, tensors: Tensors, change: Callable[[Tensors], Tensors]
) -> None:
    original = fingerprint_model(make_model(tmp_path / "a", tensors))
    assert fingerprint_model(make_model(tmp_path / "b", change(tensors))) != original


def test_file_metadata_does_not_count(tmp_path: Path, tensors: Tensors) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_file(tensors, str(tmp_path / "a" / "model.safetensors"))
    save_file(tensors, str(tmp_path / "b" / "model.safetensors"), metadata={"format": "pt"})
    assert fingerprint_model(tmp_path / "a") == fingerprint_model(tmp_path / "b")


def test_threads_and_chunks_do_not_change_the_result(
    tmp_path: Path, make_model: MakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    tensors = {f"t{i}": rng.standard_normal(3000 + i).astype(np.float32) for i in range(6)}
    model = make_model(tmp_path / "m", tensors)
    monkeypatch.setattr(fingerprint_module, "CHUNK_BYTES", 1000)  # several chunks per tensor
    serial = fingerprint_model(model, workers=1, cache_dir=tmp_path / "c1")
    parallel = fingerprint_model(model, workers=4, cache_dir=tmp_path / "c2")
    assert serial == parallel == reference_fingerprint(tensors)


def test_progress_reports_every_tensor_byte(
    tmp_path: Path, make_model: MakeModel, tensors: Tensors
) -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def advance(count: int) -> None:
        with lock:
            seen.append(count)

    fingerprint_model(make_model(tmp_path / "m", tensors), progress=advance, workers=3)
    assert sum(seen) == sum(array.nbytes for array in tensors.values())


# -- cache -----------------------------------------------------------------------------------


def _forbid_hashing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def refuse(tensor: Any, progress: Any) -> bytes:
        calls.append(tensor.name)
        raise AssertionError("hashed again")

    monkeypatch.setattr(fingerprint_module, "_tensor_digest", refuse)
    return calls


def test_second_call_on_an_unchanged_model_reads_no_tensor(
    tmp_path: Path, make_model: MakeModel, tensors: Tensors, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model(tmp_path / "m", tensors, [["step"], [n for n in tensors if n != "step"]])
    first = fingerprint_model(model)
    cache_files = list((Path(os.environ["XDG_CACHE_HOME"]) / "ppatch" / "fingerprints").iterdir())
    assert [p.suffix for p in cache_files] == [".json"]
    _forbid_hashing(monkeypatch)
    assert fingerprint_model(model) == first
    assert fingerprint_model(str(model)) == first


def test_a_changed_file_is_hashed_again(
    tmp_path: Path, make_model: MakeModel, tensors: Tensors
) -> None:
    model = make_model(tmp_path / "m", tensors)
    first = fingerprint_model(model)
    changed = tensors | {"step": np.array(4, dtype=np.int64)}
    save_file(changed, str(model / "model.safetensors"))
    assert fingerprint_model(model) == reference_fingerprint(changed) != first


def test_same_size_and_mtime_but_new_inode_is_hashed_again(
    tmp_path: Path, make_model: MakeModel, tensors: Tensors
) -> None:
    model = make_model(tmp_path / "m", tensors)
    fingerprint_model(model)
    target = model / "model.safetensors"
    stat = target.stat()
    changed = tensors | {"step": np.array(4, dtype=np.int64)}  # same size
    save_file(changed, str(tmp_path / "new.safetensors"))
    (tmp_path / "new.safetensors").replace(target)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint_model(model) == reference_fingerprint(changed)


def test_an_in_place_edit_with_the_mtime_restored_is_hashed_again(
    tmp_path: Path, make_model: MakeModel, tensors: Tensors
) -> None:
    model = make_model(tmp_path / "m", tensors)
    cache = tmp_path / "cache"
    fingerprint_model(model, cache_dir=cache)
    target = model / "model.safetensors"
    stat = target.stat()
    changed = tensors | {"step": np.array(4, dtype=np.int64)}  # same size
    save_file(changed, str(tmp_path / "new.safetensors"))
    # The kernel's ctime clock is coarse (a few ms): step past one tick before the edit.
    time.sleep(0.05)
    with target.open("r+b") as handle:  # same inode, same size
        handle.write((tmp_path / "new.safetensors").read_bytes())
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_ino == stat.st_ino
    assert fingerprint_model(model, cache_dir=cache) == reference_fingerprint(changed)


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"format": "other"}'])
def test_a_damaged_cache_is_ignored(
    tmp_path: Path, make_model: MakeModel, tensors: Tensors, content: bytes
) -> None:
    model = make_model(tmp_path / "m", tensors)
    cache = tmp_path / "cache"
    fingerprint_model(model, cache_dir=cache)
    [entry] = cache.iterdir()
    entry.write_bytes(content)
    assert fingerprint_model(model, cache_dir=cache) == reference_fingerprint(tensors)
    assert json.loads(entry.read_bytes())["fingerprint"] == reference_fingerprint(tensors)


def test_an_unwritable_cache_only_costs_time(
    tmp_path: Path, make_model: MakeModel, tensors: Tensors
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    model = make_model(tmp_path / "m", tensors)
    assert fingerprint_model(model, cache_dir=blocker / "sub") == reference_fingerprint(tensors)


# -- locating models and refusing bad ones ---------------------------------------------------


def _hub_snapshot(repo_id: str) -> Path:
    hub = Path(os.environ["HF_HOME"]) / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (hub / "refs").mkdir(parents=True)
    (hub / "refs" / "main").write_text(commit)
    snapshot = hub / "snapshots" / commit
    snapshot.mkdir(parents=True)
    return snapshot


def test_repo_id_in_the_local_hugging_face_cache(
    tmp_path: Path, make_model: MakeModel, tensors: Tensors
) -> None:
    snapshot = _hub_snapshot("acme/tiny-lm")
    make_model(snapshot, tensors)
    assert resolve_model_path("acme/tiny-lm") == snapshot.resolve()
    assert fingerprint_model("acme/tiny-lm") == reference_fingerprint(tensors)


@pytest.mark.parametrize("model", ["acme/not-cached", "no-such-dir"])
def test_unknown_repo_ids_are_not_downloaded(model: str) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model_path(model)
    assert repr(model) in str(caught.value)
    assert "never downloads" in str(caught.value)
    assert f"hf download {model}" in str(caught.value)
    assert caught.value.model == model


@pytest.mark.parametrize("model", ["../nowhere/at/all", "./base-model", "/no/such/model"])
def test_a_missing_path_is_not_sent_to_the_hub(model: str) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model_path(model)
    message = str(caught.value)
    assert f"model folder {model!r} does not exist" in message
    assert "hf download" not in message and "Hugging Face" not in message


def test_a_typo_in_a_local_folder_suggests_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "base-model").mkdir()
    monkeypatch.chdir(tmp_path)
    for typed in ("./base-modle", "base-modle"):
        with pytest.raises(ModelNotFoundError) as caught:
            resolve_model_path(typed)
        assert "did you mean 'base-model'?" in str(caught.value)
        assert "hf download" not in str(caught.value)
    (tmp_path / "world" / "base-model").mkdir(parents=True)
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model_path(str(tmp_path / "world" / "base-modle"))
    assert f"did you mean {str(tmp_path / 'world' / 'base-model')!r}?" in str(caught.value)


def test_repo_at_revision_finds_that_snapshot(
    tmp_path: Path, make_model: MakeModel, tensors: Tensors
) -> None:
    snapshot = _hub_snapshot("acme/tiny-lm")
    make_model(snapshot, tensors)
    hub = snapshot.parent.parent
    (hub / "refs" / "v1").write_text(snapshot.name)
    assert resolve_model_path("acme/tiny-lm@v1") == snapshot.resolve()
    assert resolve_model_path(f"acme/tiny-lm@{snapshot.name}") == snapshot.resolve()
    with pytest.raises(ModelNotFoundError, match="at revision 'v2'"):
        resolve_model_path("acme/tiny-lm@v2")


def test_a_file_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"is a file but not a \.gguf file"):
        fingerprint_model(path)


def test_pytorch_bin_only_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(ModelNotFoundError) as caught:
        fingerprint_model(tmp_path)
    assert "no *.safetensors weights" in str(caught.value)
    assert "pytorch_model.bin" in str(caught.value)


def test_a_folder_of_config_files_says_it_has_no_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelNotFoundError) as caught:
        fingerprint_model(tmp_path)
    message = str(caught.value)
    assert "has no weights, only config.json, tokenizer.json" in message
    assert "convert" not in message


def test_an_empty_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="is empty"):
        fingerprint_model(tmp_path)


def test_a_folder_without_config_json_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"has no config\.json"):
        model_config_file(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert model_config_file(tmp_path) == tmp_path / "config.json"


def _index(folder: Path, weight_map: dict[str, str]) -> None:
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def _header_only(path: Path, header: bytes, data: bytes = b"") -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


BadModel = Callable[[Path, MakeModel, Tensors], None]


def _missing_shard(folder: Path, make_model: MakeModel, tensors: Tensors) -> None:
    make_model(folder, tensors, [["step"], [n for n in tensors if n != "step"]])
    (folder / "model-00001-of-00002.safetensors").unlink()


def _duplicate_tensor(folder: Path, make_model: MakeModel, tensors: Tensors) -> None:
    make_model(folder, tensors, [["step"], list(tensors)], index=False)


def _index_disagrees(folder: Path, make_model: MakeModel, tensors: Tensors) -> None:
    make_model(folder, tensors, [["step"], [n for n in tensors if n != "step"]])
    # Both shards are listed, but every tensor is said to be in the other one.
    wrong = {n: f"model-0000{1 if n != 'step' else 2}-of-00002.safetensors" for n in tensors}
    _index(folder, wrong)


def _index_lists_absent_tensor(folder: Path, make_model: MakeModel, tensors: Tensors) -> None:
    make_model(folder, tensors)
    _index(folder, dict.fromkeys([*tensors, "ghost"], "model.safetensors"))


def _index_escapes(folder: Path, make_model: MakeModel, tensors: Tensors) -> None:
    make_model(folder, tensors)
    _index(folder, {"step": "../model.safetensors"})


def _index_not_json(folder: Path, make_model: MakeModel, tensors: Tensors) -> None:
    make_model(folder, tensors)
    (folder / "model.safetensors.index.json").write_text("{")


def _header_too_long(folder: Path, make_model: MakeModel, tensors: Tensors) -> None:
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", 10**9) + b"{}")


def _header_not_json(folder: Path, make_model: MakeModel, tensors: Tensors) -> None:
    folder.mkdir()
    _header_only(folder / "model.safetensors", b"{nope")


def _offsets_outside(folder: Path, make_model: MakeModel, tensors: Tensors) -> None:
    folder.mkdir()
    header = b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    _header_only(folder / "model.safetensors", header, bytes(8))


def _size_mismatch(folder: Path, make_model: MakeModel, tensors: Tensors) -> None:
    folder.mkdir()
    header = b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}'
    _header_only(folder / "model.safetensors", header, bytes(8))


def _no_tensors(folder: Path, make_model: MakeModel, tensors: Tensors) -> None:
    folder.mkdir()
    _header_only(folder / "model.safetensors", b'{"__metadata__":{}}')


def _truncated(folder: Path, make_model: MakeModel, tensors: Tensors) -> None:
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\x01\x00")


BAD_MODELS: list[tuple[str, BadModel, type[Exception], str]] = [
    ("missing-shard", _missing_shard, ModelNotFoundError, "lists shards that are missing"),
    ("duplicate", _duplicate_tensor, InvalidWeightsError, "appears in both"),
    ("index-disagrees", _index_disagrees, InvalidWeightsError, "maps tensor"),
    ("index-ghost", _index_lists_absent_tensor, InvalidWeightsError, "no shard holds: ghost"),
    ("index-escapes", _index_escapes, InvalidWeightsError, "must be a plain file name"),
    ("index-json", _index_not_json, InvalidWeightsError, "not valid JSON"),
    ("header-length", _header_too_long, InvalidWeightsError, "header declares 1000000000"),
    ("header-json", _header_not_json, InvalidWeightsError, "header is not valid JSON"),
    ("offsets", _offsets_outside, InvalidWeightsError, "within the 8-byte data section"),
    ("size", _size_mismatch, InvalidWeightsError, "do not hold shape [4]"),
    ("empty", _no_tensors, InvalidWeightsError, "hold no tensors"),
    ("truncated", _truncated, InvalidWeightsError, "not a safetensors file"),
]


@pytest.mark.parametrize(
    ("build", "error", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_MODELS],
)
def test_bad_models_are_refused(
    tmp_path: Path,
    make_model: MakeModel,
    tensors: Tensors,
    build: BadModel,
    error: type[Exception],
    fragment: str,
) -> None:
    folder = tmp_path / "model"
    build(folder, make_model, tensors)
    with pytest.raises(error) as caught:
        fingerprint_model(folder)
    assert fragment in str(caught.value)


# -- checking a manifest against a model -----------------------------------------------------


def test_check_fingerprint(manifest: Manifest) -> None:
    check_fingerprint(manifest, manifest.base_model.fingerprint)
    other = "sha256:" + "0" * 64
    with pytest.raises(FingerprintMismatchError) as caught:
        check_fingerprint(manifest, other)
    assert (caught.value.expected, caught.value.actual) == (manifest.base_model.fingerprint, other)
    assert manifest.base_model.fingerprint in str(caught.value)
    assert other in str(caught.value)
    # The id a person recognises, not only two hashes.
    assert repr(manifest.base_model.id) in str(caught.value)
    assert caught.value.base_model_id == manifest.base_model.id


def test_check_fingerprint_accepts_listed_compatible_models(manifest: Manifest) -> None:
    compatible = "sha256:" + "1" * 64
    base = manifest.base_model.model_copy(update={"compatible_fingerprints": [compatible]})
    check_fingerprint(manifest.model_copy(update={"base_model": base}), compatible)
