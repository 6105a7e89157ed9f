"""patchfmt/fingerprint.py decision by decision: where a model is looked for, each refusal of a
damaged safetensors folder (asserted whole: a person reads it), the bounds of the header
checks, the thread pool, the cache's place and names, and that nothing is ever downloaded.

The expected fingerprints are written from docs/format.md (6.2) with hashlib and struct here,
not with the code under test."""

from __future__ import annotations

import difflib
import hashlib
import http.server
import json
import os
import struct
import sys
import threading
from collections.abc import Iterator
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
from patchfmt.fingerprint import default_cache_dir

Entry = tuple[str, str, tuple[int, ...], bytes]  # name, dtype, shape, stored bytes


def documented_fingerprint(entries: list[Entry]) -> str:
    """docs/format.md 6.2, written out by hand."""
    leaves = []
    for name, dtype, shape, data in sorted(entries, key=lambda e: e[0].encode()):
        prefix = b"ppatch-tensor/1\x00"
        prefix += struct.pack("<Q", len(name.encode())) + name.encode()
        prefix += struct.pack("<Q", len(dtype)) + dtype.encode()
        prefix += struct.pack("<Q", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        prefix += struct.pack("<Q", len(data)) + data
        leaves.append(hashlib.sha256(prefix).digest())
    root = b"ppatch-fingerprint/1\x00" + struct.pack("<Q", len(leaves)) + b"".join(leaves)
    return "sha256:" + hashlib.sha256(root).hexdigest()


def write_raw(path: Path, header: bytes, data: bytes = b"", *, declared: int | None = None) -> Path:
    """A safetensors file from its parts: u64 header length (or `declared`), header, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    length = len(header) if declared is None else declared
    path.write_bytes(struct.pack("<Q", length) + header + data)
    return path


def one_tensor(folder: Path, entry: object, data: bytes = b"") -> Path:
    header = json.dumps({"t": entry}).encode()
    return write_raw(folder / "model.safetensors", header, data)


def small_model(folder: Path, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).standard_normal((4, 8)).astype(np.float32)
    save_file({"w": array}, str(folder / "model.safetensors"))
    return folder


# -- where a model is looked for -------------------------------------------------------------


@pytest.fixture
def in_a_folder_with_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder holds one sub-folder, `models`, and nothing close to the names typed
    below (so no "did you mean" hint)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return tmp_path


NOT_CACHED = (
    "is neither a local directory nor a repo id in the local Hugging Face cache (ppatch never "
    "downloads models; fetch it first, e.g. 'hf download {}')"
)

NOT_A_REPO_ID = (
    "is neither a local directory nor a Hugging Face repo id (org/name or org/name@revision)"
)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        # A leading '.', '/' or '~', a backslash, or two slashes: a path, never a repo id.
        (".hidden-model", "model folder '.hidden-model' does not exist"),
        ("/model-that-is-not-here", "model folder '/model-that-is-not-here' does not exist"),
        ("~/no-such-model", "model folder '~/no-such-model' does not exist"),
        ("models\\tiny", "model folder 'models\\\\tiny' does not exist"),
        ("a/b/c", "model folder 'a/b/c' does not exist (nor does its folder 'a/b')"),
        # One slash: a path when the part before it is a folder here, else a repo id.
        ("models/tiny", "model folder 'models/tiny' does not exist"),
        ("nomodels/tiny", "model 'nomodels/tiny' " + NOT_CACHED.format("nomodels/tiny")),
        ("tiny", "model 'tiny' " + NOT_CACHED.format("tiny")),
        # An unknown user's home: refused as a missing folder, not a RuntimeError.
        ("~nosuchuser-ppatch/x",
         "model folder '~nosuchuser-ppatch/x' does not exist (nor does its folder "
         "'~nosuchuser-ppatch')"),
        # Not a repo id, with or without what looks like a revision.
        ("bad repo!@v1", "model 'bad repo!@v1' " + NOT_A_REPO_ID),
        ("acme/tiny@", "model 'acme/tiny@' " + NOT_A_REPO_ID),
        ("acme/tiny@v1",
         "model 'acme/tiny@v1' is neither a local directory nor a repo id at revision 'v1' in "
         "the local Hugging Face cache (ppatch never downloads models; fetch it first, e.g. "
         "'hf download acme/tiny')"),
    ],
)  # fmt: skip
def test_a_missing_model_is_named_as_a_path_or_a_repo_id(
    in_a_folder_with_models: Path, typed: str, message: str
) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model_path(typed)
    assert str(caught.value) == message
    assert caught.value.model == typed


def test_a_file_that_is_not_gguf_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"")
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model_path(str(path))
    assert str(caught.value) == (
        f"model {str(path)!r} is a file but not a .gguf file; expected a directory in Hugging "
        "Face layout or a GGUF file"
    )
    assert caught.value.model == str(path)


def test_a_typo_suggests_the_two_closest_folders(in_a_folder_with_models: Path) -> None:
    for name in ("base-model1", "base-model2", "base-model3"):
        (in_a_folder_with_models / name).mkdir()
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model_path("./base-model")
    # difflib ranks the three equally close names by name, last first; two are shown.
    assert str(caught.value) == (
        "model folder './base-model' does not exist; did you mean 'base-model3' or 'base-model2'?"
    )


def test_a_folder_only_somewhat_alike_is_not_suggested(in_a_folder_with_models: Path) -> None:
    (in_a_folder_with_models / "abcdefgxyz").mkdir()
    # Between difflib's default cutoff (0.6) and the one used (0.75): too far to suggest.
    assert 0.6 <= difflib.SequenceMatcher(None, "abcdefghij", "abcdefgxyz").ratio() < 0.75
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model_path("./abcdefghij")
    assert str(caught.value) == "model folder './abcdefghij' does not exist"


def test_a_suggestion_in_another_folder_is_given_with_its_folder(tmp_path: Path) -> None:
    (tmp_path / "base-model").mkdir()
    typed = str(tmp_path / "base-modle")
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model_path(typed)
    assert str(caught.value) == (
        f"model folder {typed!r} does not exist; did you mean {str(tmp_path / 'base-model')!r}?"
    )


def _hub_snapshot(repo_id: str) -> Path:
    hub = Path(os.environ["HF_HOME"]) / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (hub / "refs").mkdir(parents=True)
    (hub / "refs" / "main").write_text(commit)
    return small_model(hub / "snapshots" / commit)


def test_an_empty_revision_is_not_read_as_main(in_a_folder_with_models: Path) -> None:
    _hub_snapshot("acme/tiny-lm")
    assert resolve_model_path("acme/tiny-lm").name == "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model_path("acme/tiny-lm@")
    assert str(caught.value) == "model 'acme/tiny-lm@' " + NOT_A_REPO_ID


class _RecordingHub(http.server.BaseHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        self.send_response(404)
        self.end_headers()

    do_HEAD = do_GET  # noqa: N815 (http.server's name)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def reachable_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """huggingface_hub pointed at a local server (bound to port 0, read back) that records
    every request, with its offline switch off: a download attempt would reach it."""
    import huggingface_hub.constants

    requests: list[str] = []
    handler = type("Hub", (_RecordingHub,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(
        huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}"
    )
    try:
        yield requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_repo_id_never_reaches_the_hub(
    in_a_folder_with_models: Path, reachable_hub: list[str]
) -> None:
    for typed in ("acme/not-cached", "acme/not-cached@v1"):
        with pytest.raises(ModelNotFoundError):
            resolve_model_path(typed)
    _hub_snapshot("acme/tiny-lm")
    assert resolve_model_path("acme/tiny-lm").is_dir()
    assert reachable_hub == []


# -- the files of a folder -------------------------------------------------------------------


def _index(folder: Path, weight_map: object) -> Path:
    path = folder / "model.safetensors.index.json"
    path.write_text(json.dumps({"weight_map": weight_map}))
    return path


EXPECTED_MAP = "expected an object with 'weight_map' mapping tensor names to file names"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"[]", EXPECTED_MAP),
        (b"{}", EXPECTED_MAP),
        (b'{"weight_map": []}', EXPECTED_MAP),
        (b'{"weight_map": {"w": 7}}', EXPECTED_MAP),
        (b'{"weight_map": {"w": "model.safetensors", "v": 7}}', EXPECTED_MAP),
        (b'{"weight_map": {"w": "sub/model.safetensors"}}',
         "shard name 'sub/model.safetensors' must be a plain file name in the model folder"),
        (b'{"weight_map": {"w": "sub\\\\model.safetensors"}}',
         "shard name 'sub\\\\model.safetensors' must be a plain file name in the model folder"),
        (b'{"weight_map": {"w": ".model.safetensors"}}',
         "shard name '.model.safetensors' must be a plain file name in the model folder"),
        (b'{"weight_map": {"w": ""}}',
         "shard name '' must be a plain file name in the model folder"),
    ],
)  # fmt: skip
def test_an_index_that_is_not_a_weight_map_of_plain_names_is_refused(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    model = small_model(tmp_path / "m")
    index = model / "model.safetensors.index.json"
    index.write_bytes(content)
    with pytest.raises(InvalidWeightsError) as caught:
        fingerprint_model(model, cache_dir=tmp_path / "cache")
    assert str(caught.value) == f"{index}: {problem}"


def test_an_index_of_exactly_the_size_limit_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = small_model(tmp_path / "m")
    index = _index(model, {"w": "model.safetensors"})
    size = index.stat().st_size
    monkeypatch.setattr(fingerprint_module, "MAX_INDEX_BYTES", size)
    fingerprint_model(model, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(fingerprint_module, "MAX_INDEX_BYTES", size - 1)
    with pytest.raises(InvalidWeightsError) as caught:
        fingerprint_model(model, cache_dir=tmp_path / "other-cache")
    assert str(caught.value) == f"{index}: is {size} bytes; at most {size - 1}"


def test_every_missing_shard_is_named(tmp_path: Path) -> None:
    model = small_model(tmp_path / "m")
    index = _index(
        model,
        {"w": "model.safetensors", "a": "b-missing.safetensors", "c": "a-missing.safetensors"},
    )
    with pytest.raises(ModelNotFoundError) as caught:
        fingerprint_model(model)
    assert str(caught.value) == (
        f"{index}: lists shards that are missing: a-missing.safetensors, b-missing.safetensors"
    )
    assert caught.value.model == str(model)


def test_a_folder_of_other_checkpoints_says_to_convert(tmp_path: Path) -> None:
    for name in ("pytorch_model.bin", "model.gguf.part", "model.ckpt", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ModelNotFoundError) as caught:
        fingerprint_model(tmp_path)
    assert str(caught.value) == (
        f"no *.safetensors weights in {str(tmp_path)!r} (found model.ckpt, pytorch_model.bin); "
        "ppatch fingerprints safetensors models only (convert the checkpoint to safetensors "
        "first)"
    )
    assert caught.value.model == str(tmp_path)


def test_an_empty_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        fingerprint_model(tmp_path)
    assert str(caught.value) == (
        f"model folder {str(tmp_path)!r} is empty: it has no weights and no config.json"
    )


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (6, "f1.json, f2.json, f3.json, f4.json, f5.json, f6.json"),
        (7, "f1.json, f2.json, f3.json, f4.json, f5.json, f6.json and 1 more"),
        (9, "f1.json, f2.json, f3.json, f4.json, f5.json, f6.json and 3 more"),
    ],
)
def test_a_folder_without_weights_shows_its_first_six_files(
    tmp_path: Path, count: int, shown: str
) -> None:
    for number in range(1, count + 1):
        (tmp_path / f"f{number}.json").write_text("{}")
    with pytest.raises(ModelNotFoundError) as caught:
        fingerprint_model(tmp_path)
    assert str(caught.value) == (
        f"model folder {str(tmp_path)!r} has no weights, only {shown}; a model folder needs its "
        "*.safetensors files (was the download interrupted or filtered?)"
    )


def test_a_folder_without_config_json_is_named_whole(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        model_config_file(tmp_path)
    assert str(caught.value) == (
        f"model folder {str(tmp_path)!r} has no config.json; a Hugging Face model folder holds "
        "config.json next to its weights"
    )
    assert caught.value.model == str(tmp_path)


# -- one shard's header ----------------------------------------------------------------------


def test_a_header_of_exactly_the_rest_of_the_file_is_read(tmp_path: Path) -> None:
    # Declared length == file size - 8: the whole rest is header (an empty object: no tensor).
    write_raw(tmp_path / "m" / "model.safetensors", b"{}")
    with pytest.raises(InvalidWeightsError) as caught:
        fingerprint_model(tmp_path / "m")
    assert str(caught.value) == f"{str(tmp_path / 'm')!r}: the safetensors files hold no tensors"


@pytest.mark.parametrize("declared", [3, 2**63, 2**64 - 1])
def test_a_header_longer_than_the_file_is_refused(tmp_path: Path, declared: int) -> None:
    path = write_raw(tmp_path / "m" / "model.safetensors", b"{}", declared=declared)
    with pytest.raises(InvalidWeightsError) as caught:
        fingerprint_model(tmp_path / "m")
    assert str(caught.value) == (
        f"{path}: header declares {declared} bytes, more than the file or the 104857600-byte "
        "limit allows"
    )


def test_a_short_file_is_not_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "m" / "model.safetensors"
    path.parent.mkdir()
    path.write_bytes(bytes(7))
    with pytest.raises(InvalidWeightsError) as caught:
        fingerprint_model(tmp_path / "m")
    assert str(caught.value) == f"{path}: is 7 bytes; not a safetensors file"


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (b"[]", "header must be a JSON object"),
        (b'{"t": 7}', "tensor 't': entry must be an object"),
    ],
)
def test_a_header_that_is_not_an_object_of_objects_is_refused(
    tmp_path: Path, header: bytes, problem: str
) -> None:
    path = write_raw(tmp_path / "m" / "model.safetensors", header)
    with pytest.raises(InvalidWeightsError) as caught:
        fingerprint_model(tmp_path / "m")
    assert str(caught.value) == f"{path}: {problem}"


def test_a_tensor_name_with_a_lone_surrogate_is_refused(tmp_path: Path) -> None:
    # Valid JSON (an escaped surrogate) but no UTF-8 form to hash: refused, not a traceback.
    header = b'{"\\ud800": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'
    path = write_raw(tmp_path / "m" / "model.safetensors", header)
    with pytest.raises(InvalidWeightsError) as caught:
        fingerprint_model(tmp_path / "m")
    assert str(caught.value) == f"{path}: tensor '\\ud800': the name is not valid UTF-8 text"


U64 = 2**64


@pytest.mark.parametrize(
    ("entry", "data", "problem"),
    [
        ({"dtype": "f32", "shape": [1], "data_offsets": [0, 4]}, bytes(4),
         "dtype 'f32' is not a safetensors dtype"),
        ({"dtype": 7, "shape": [1], "data_offsets": [0, 4]}, bytes(4),
         "dtype 7 is not a safetensors dtype"),
        ({"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}, bytes(16),
         "shape 4 must be a list of integers from 0 to 2**64 - 1"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}, b"",
         "shape [-1] must be a list of integers from 0 to 2**64 - 1"),
        ({"dtype": "F32", "shape": [0, U64], "data_offsets": [0, 0]}, b"",
         f"shape [0, {U64}] must be a list of integers from 0 to 2**64 - 1"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}, bytes(8),
         "data_offsets [0, 4, 8] must be [begin, end] within the 8-byte data section"),
        ({"dtype": "F32", "shape": [1], "data_offsets": None}, bytes(4),
         "data_offsets None must be [begin, end] within the 4-byte data section"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}, bytes(8),
         "data_offsets [8, 4] must be [begin, end] within the 8-byte data section"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [0, 9]}, bytes(8),
         "data_offsets [0, 9] must be [begin, end] within the 8-byte data section"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}, bytes(4),
         "4 bytes do not hold shape [2] of F32 (8 bytes)"),
    ],
)  # fmt: skip
def test_a_tensor_entry_that_is_not_well_formed_is_refused(
    tmp_path: Path, entry: dict[str, Any], data: bytes, problem: str
) -> None:
    path = one_tensor(tmp_path / "m", entry, data)
    with pytest.raises(InvalidWeightsError) as caught:
        fingerprint_model(tmp_path / "m")
    assert str(caught.value) == f"{path}: tensor 't': {problem}"


@pytest.mark.parametrize(
    ("dtype", "shape", "data"),
    [
        ("F32", (0,), b""),  # an empty tensor: begin == end is allowed
        ("F32", (0, 2**63), b""),  # the largest dimensions still fit a u64
        ("F32", (2, 1), bytes(range(8))),
        ("Q9_SOMETHING", (3,), bytes(range(5))),  # an unknown dtype: its size is not checked
    ],
)
def test_well_formed_edge_tensors_are_hashed_as_documented(
    tmp_path: Path, dtype: str, shape: tuple[int, ...], data: bytes
) -> None:
    entry = {"dtype": dtype, "shape": list(shape), "data_offsets": [0, len(data)]}
    one_tensor(tmp_path / "m", entry, data)
    assert fingerprint_model(tmp_path / "m") == documented_fingerprint([("t", dtype, shape, data)])


# -- the tensors of the folder ---------------------------------------------------------------


def test_an_index_placing_a_tensor_in_another_shard_is_refused_naming_both(tmp_path: Path) -> None:
    model = tmp_path / "m"
    array = np.zeros(2, dtype=np.float32)
    model.mkdir()
    save_file({"a": array}, str(model / "one.safetensors"))
    save_file({"b": array}, str(model / "two.safetensors"))
    index = _index(model, {"a": "two.safetensors", "b": "two.safetensors", "c": "one.safetensors"})
    with pytest.raises(InvalidWeightsError) as caught:
        fingerprint_model(model)
    assert str(caught.value) == (
        f"{index}: maps tensor 'a' to 'two.safetensors' but it is in 'one.safetensors'"
    )


def test_an_index_naming_absent_tensors_lists_the_first_five(tmp_path: Path) -> None:
    model = small_model(tmp_path / "m")
    ghosts = ["g6", "g2", "g4", "g1", "g5", "g3"]
    index = _index(model, dict.fromkeys(["w", *ghosts], "model.safetensors"))
    with pytest.raises(InvalidWeightsError) as caught:
        fingerprint_model(model)
    assert str(caught.value) == f"{index}: lists tensors no shard holds: g1, g2, g3, g4, g5"


def test_a_file_that_shrinks_while_it_is_hashed_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(range(256)) * 4
    path = one_tensor(
        tmp_path / "m", {"dtype": "U8", "shape": [1024], "data_offsets": [0, 1024]}, data
    )
    monkeypatch.setattr(fingerprint_module, "CHUNK_BYTES", 100)

    whole = path.stat().st_size

    def truncate_after_the_first_chunk(count: int) -> None:
        with path.open("r+b") as stream:  # the last 512 data bytes go (again: idempotent)
            stream.truncate(whole - 512)

    with pytest.raises(InvalidWeightsError) as caught:
        fingerprint_model(tmp_path / "m", workers=1, progress=truncate_after_the_first_chunk)
    assert str(caught.value) == f"{path}: ended while reading tensor 't'"


# -- threads ---------------------------------------------------------------------------------


def _thread_names(model: Path, cache: Path, workers: int) -> set[str]:
    names: set[str] = set()
    lock = threading.Lock()

    def record(count: int) -> None:
        with lock:
            names.add(threading.current_thread().name)

    fingerprint_model(model, workers=workers, cache_dir=cache, progress=record)
    return names


def _model_of(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / f"model-{count}"
    folder.mkdir()
    tensors = {f"t{i}": np.full(8 + i, i, dtype=np.float32) for i in range(count)}
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def test_one_worker_or_one_tensor_hashes_in_the_calling_thread(tmp_path: Path) -> None:
    caller = threading.current_thread().name
    assert _thread_names(_model_of(tmp_path, 6), tmp_path / "c1", workers=1) == {caller}
    assert _thread_names(_model_of(tmp_path, 1), tmp_path / "c2", workers=4) == {caller}


@pytest.mark.parametrize("workers", [2, 4])
def test_several_workers_hash_on_named_pool_threads(tmp_path: Path, workers: int) -> None:
    names = _thread_names(_model_of(tmp_path, 6), tmp_path / "cache", workers=workers)
    assert names and all(name.startswith("ppatch-hash_") for name in names)


def test_no_more_tensors_are_hashed_at_once_than_workers(tmp_path: Path) -> None:
    # Each tensor's first chunk waits at a barrier for one more thread than allowed: with the
    # pool bounded to 2, a third never comes and the barrier breaks after its timeout.
    barrier = threading.Barrier(3, timeout=1.0)
    met: list[bool] = []

    def wait_for_a_third(count: int) -> None:
        try:
            barrier.wait()
            met.append(True)
        except threading.BrokenBarrierError:
            pass

    model = _model_of(tmp_path, 6)
    fingerprint_model(model, workers=2, cache_dir=tmp_path / "cache", progress=wait_for_a_third)
    assert met == []


def test_the_default_is_one_worker_per_usable_core_at_most_16(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for cores, workers in [(1, 1), (3, 3), (16, 16), (17, 16), (64, 16)]:
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert fingerprint_module._default_workers() == workers
    # Without sched_getaffinity (not Linux): os.cpu_count(), which may not know (None).
    monkeypatch.delattr(os, "sched_getaffinity")
    for count, workers in [(None, 1), (1, 1), (5, 5), (32, 16)]:
        monkeypatch.setattr(os, "cpu_count", lambda n=count: n)
        assert fingerprint_module._default_workers() == workers


# -- the cache -------------------------------------------------------------------------------


def test_the_default_cache_is_under_xdg_cache_home_else_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ppatch" / "fingerprints"
    home_cache = tmp_path / "home" / ".cache" / "ppatch" / "fingerprints"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # set but empty: as if unset (XDG's rule)
    assert default_cache_dir() == home_cache
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == home_cache


def test_each_model_has_its_own_cache_file_named_by_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first, second = small_model(tmp_path / "a", seed=1), small_model(tmp_path / "b", seed=2)
    fingerprints = [fingerprint_model(model, cache_dir=cache) for model in (first, second)]
    names = sorted(p.name for p in cache.iterdir())
    assert names == sorted(
        hashlib.sha256(str(model.resolve()).encode()).hexdigest()[:32] + ".json"
        for model in (first, second)
    )

    def refuse(*args: object) -> bytes:
        raise AssertionError("hashed again: the cache was lost")

    monkeypatch.setattr(fingerprint_module, "_tensor_digest", refuse)
    assert [fingerprint_model(model, cache_dir=cache) for model in (first, second)] == fingerprints


# -- the manifest's check --------------------------------------------------------------------


def test_a_mismatch_lists_the_compatible_fingerprints_too(manifest: Manifest) -> None:
    compatible = ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
    base = manifest.base_model.model_copy(update={"compatible_fingerprints": compatible})
    other = "sha256:" + "0" * 64
    with pytest.raises(FingerprintMismatchError) as caught:
        check_fingerprint(manifest.model_copy(update={"base_model": base}), other)
    assert caught.value.compatible == compatible
    assert str(caught.value) == (
        f"the patch is built for base model 'acme/tiny-lm' {manifest.base_model.fingerprint} "
        f"(or compatible {compatible[0]}, {compatible[1]}) but the model's fingerprint is {other}"
    )


# -- a GGUF file -----------------------------------------------------------------------------


def test_a_gguf_file_without_tensors_is_refused(tmp_path: Path) -> None:
    from tests.patchfmt.test_fingerprint_gguf import write_gguf

    path = tmp_path / "model.gguf"
    write_gguf(path, {})
    with pytest.raises(InvalidWeightsError) as caught:
        fingerprint_model(path, cache_dir=tmp_path / "cache")
    assert str(caught.value) == f"{path}: the GGUF file holds no tensors"


def test_a_gguf_file_without_the_gguf_package_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.patchfmt.test_fingerprint_gguf import write_gguf

    path = tmp_path / "model.gguf"
    write_gguf(path, {"w": np.ones(32, dtype=np.float32)})
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now raises ImportError
    with pytest.raises(InvalidWeightsError) as caught:
        fingerprint_model(path, cache_dir=tmp_path / "cache")
    assert str(caught.value) == (
        f"{path}: reading a GGUF model needs the 'gguf' package (pip install gguf)"
    )
