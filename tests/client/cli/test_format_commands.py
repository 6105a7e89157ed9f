"""`ppatch keygen|pack|sign|inspect|verify|fingerprint`: exit codes, messages, no half-writes."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from patchfmt import read_patch
from ppatch.cli import main as cli_main

FIELDS: dict[str, Any] = {
    "name": "acme/toxicity",
    "version": "1.2.0",
    "domain": "toxicity",
    "summary": "Steers the model away from toxic completions",
    "license": "Apache-2.0",
    "base_model": {"id": "acme/tiny-lm"},
    "training": {"method": "sft+dpo"},
    "created": "2026-11-28T10:00:00Z",
}
TOML = """\
name = "acme/toxicity"
version = "1.2.0"
domain = "toxicity"
summary = "Steers the model away from toxic completions"
license = "Apache-2.0"
created = "2026-11-28T10:00:00Z"

[base_model]
id = "acme/tiny-lm"

[training]
method = "sft+dpo"
"""


# A TOML date-time without an offset: not a UTC time, so not accepted as `created`.
LOCAL_TIME_TOML = TOML.replace('"2026-11-28T10:00:00Z"', "2026-11-28T10:00:00").encode()


@pytest.fixture(autouse=True)
def only_format_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests exercise this module alone, whatever state the other command groups are in.
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("ppatch.cli.format_commands",))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def work(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    model = tmp_path / "model"
    model.mkdir()
    save_file(
        {
            "embed.weight": rng.standard_normal((16, 8)).astype(np.float32),
            "head.weight": rng.standard_normal((16, 8)).astype(np.float16),
        },
        str(model / "model.safetensors"),
    )
    other = tmp_path / "other-model"
    other.mkdir()
    save_file({"embed.weight": np.zeros((16, 8), np.float32)}, str(other / "model.safetensors"))
    embeddings = rng.standard_normal((4, 8)).astype(np.float32)
    save_file({"prompt_embeddings": embeddings}, str(tmp_path / "weights.safetensors"))
    (tmp_path / "manifest.json").write_text(json.dumps(FIELDS))
    (tmp_path / "manifest.toml").write_text(TOML)
    return tmp_path


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def key(work: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, _, _ = run(capsys, "keygen", "-o", work / "key")
    assert code == 0
    return work / "key"


@pytest.fixture
def packed(work: Path, key: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, _, err = run(
        capsys, "pack", "--weights", work / "weights.safetensors", "--manifest",
        work / "manifest.json", "--model", work / "model", "--key", key, "-o", work / "p.ppatch",
    )  # fmt: skip
    assert code == 0, err
    return work / "p.ppatch"


# -- keygen ----------------------------------------------------------------------------------


def test_keygen_writes_a_private_and_a_public_key(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "keygen", "-o", work / "k")
    assert code == 0
    assert stat.S_IMODE((work / "k").stat().st_mode) == 0o600
    assert (work / "k").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert (work / "k.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert "key id: ed25519:" in out


def test_keygen_refuses_to_overwrite(key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = key.read_bytes(), Path(f"{key}.pub").read_bytes()
    code, _, err = run(capsys, "keygen", "-o", key)
    assert code == 5
    assert "already exist" in err
    assert "--force" in err
    assert (key.read_bytes(), Path(f"{key}.pub").read_bytes()) == before


def test_keygen_force_replaces(key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = key.read_bytes()
    code, _, _ = run(capsys, "keygen", "-o", key, "--force")
    assert code == 0
    assert key.read_bytes() != before


def test_keygen_into_a_missing_folder(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "keygen", "-o", work / "absent" / "k")
    assert code == 4
    assert "does not exist" in err
    assert not (work / "absent").exists()


# -- pack ------------------------------------------------------------------------------------


def test_pack_signs_and_fills_the_fingerprint(
    packed: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patch = read_patch(packed)
    code, out, _ = run(capsys, "fingerprint", work / "model")
    assert code == 0
    assert patch.manifest.base_model.fingerprint == out.strip()
    assert patch.signature is not None
    assert (patch.manifest.patch.num_virtual_tokens, patch.manifest.patch.hidden_size) == (4, 8)


@pytest.mark.parametrize("manifest_name", ["manifest.json", "manifest.toml"])
def test_pack_is_deterministic_from_json_or_toml(
    work: Path, capsys: pytest.CaptureFixture[str], manifest_name: str
) -> None:
    outputs = []
    for number in range(2):
        out = work / f"out{number}.ppatch"
        code, _, err = run(
            capsys, "pack", "--weights", work / "weights.safetensors", "--manifest",
            work / manifest_name, "--model", work / "model", "-o", out,
        )  # fmt: skip
        assert code == 0, err
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert read_patch(outputs[0]).signature is None


def test_pack_makes_the_missing_folders_of_its_output(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = work / "dist" / "patches" / "out.ppatch"
    code, _, err = run(capsys, *_pack_args(work, **{"-o": output}))
    assert code == 0, err
    assert read_patch(output).manifest.name == "acme/toxicity"
    assert files_in(output.parent) == ["out.ppatch"]  # no temporary file left beside it


def test_pack_accepts_an_unquoted_toml_date_time(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = TOML.replace('created = "2026-11-28T10:00:00Z"', "created = 2026-11-28T10:00:00Z")
    manifest = _write(work / "dated.toml", toml.encode())
    code, _, err = run(capsys, *_pack_args(work, **{"--manifest": manifest}))
    assert code == 0, err
    assert read_patch(work / "out.ppatch").manifest.created == "2026-11-28T10:00:00Z"


def _pack_args(work: Path, **overrides: Any) -> list[Any]:
    options = {
        "--weights": work / "weights.safetensors",
        "--manifest": work / "manifest.json",
        "--model": work / "model",
        "-o": work / "out.ppatch",
    } | overrides
    args: list[Any] = ["pack"]
    for flag, value in options.items():
        if value is not None:
            args += [flag, value]
    return args


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


PACK_FAILURES: list[tuple[str, Any, int, str]] = [
    ("no-weights", lambda w: {"--weights": w / "absent.safetensors"}, 4, "does not exist"),
    ("no-manifest", lambda w: {"--manifest": w / "absent.json"}, 4, "does not exist"),
    ("no-model", lambda w: {"--model": w / "absent-model"}, 4, "absent-model' does not exist"),
    ("no-key", lambda w: {"--key": w / "absent-key"}, 4, "does not exist"),
    (
        "no-manifest-new-folder",  # the folders -o needs are made only when pack writes
        lambda w: {"--manifest": w / "absent.json", "-o": w / "new" / "out.ppatch"},
        4,
        "does not exist",
    ),
    (
        "file-as-folder",
        lambda w: {"-o": _write(w / "plain", b"x") / "sub" / "out.ppatch"},
        5,
        "plain' is not a folder",
    ),
    ("output-is-a-folder", lambda w: {"-o": w / "model"}, 5, "it is a directory"),
    ("no-fingerprint", lambda w: {"--model": None}, 3, "base_model.fingerprint: required"),
    (
        "bad-json",
        lambda w: {"--manifest": _write(w / "bad.json", b"{")},
        3,
        "bad.json (1 problem): not valid JSON",
    ),
    (
        "local-time-toml",
        lambda w: {"--manifest": _write(w / "t.toml", LOCAL_TIME_TOML)},
        3,
        "created: Input should be a valid string",
    ),
    (
        "bad-toml",
        lambda w: {"--manifest": _write(w / "bad.toml", b"name = ")},
        3,
        "not valid TOML",
    ),
    (
        "bad-field",
        lambda w: {
            "--manifest": _write(w / "m.json", json.dumps(FIELDS | {"version": "1"}).encode())
        },
        3,
        "version: invalid version '1'",
    ),
    (
        "unknown-field",
        lambda w: {"--manifest": _write(w / "m.json", _json(FIELDS | {"x": 1}))},
        3,
        "x: unknown field",
    ),
    ("bad-key", lambda w: {"--key": _write(w / "k", b"junk")}, 3, "not a PEM private key"),
    (
        "wrong-tensor",
        lambda w: {"--weights": _save(w / "w.safetensors", {"embeddings": np.ones((2, 2), "f4")})},
        3,
        "exactly one tensor 'prompt_embeddings'",
    ),
    (
        "nan",
        lambda w: {
            "--weights": _save(
                w / "w.safetensors", {"prompt_embeddings": np.full((2, 2), np.nan, "f4")}
            )
        },
        3,
        "NaN or infinite",
    ),
    (
        "bin-model",
        lambda w: {"--model": _bin_model(w / "bin-model")},
        4,
        "no *.safetensors weights",
    ),
]


def _save(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    save_file(tensors, str(path))
    return path


def _bin_model(folder: Path) -> Path:
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"\x80")
    return folder


@pytest.mark.parametrize(
    ("overrides", "code", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in PACK_FAILURES],
)
def test_failed_pack_writes_nothing(
    work: Path, capsys: pytest.CaptureFixture[str], overrides: Any, code: int, fragment: str
) -> None:
    args = _pack_args(work, **overrides(work))
    before = files_in(work)
    exit_code, out, err = run(capsys, *args)
    assert (exit_code, out) == (code, "")
    assert err.startswith("ppatch: error: ")
    assert fragment in err
    assert len(err.strip().splitlines()) == 1
    assert files_in(work) == before


def test_failed_pack_keeps_an_existing_output(
    work: Path, packed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = packed.read_bytes()
    args = _pack_args(work, **{"--model": None, "-o": packed})
    code, _, _ = run(capsys, *args)
    assert code == 3
    assert packed.read_bytes() == before


def test_pack_without_required_arguments_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli_main.main(["pack", "--weights", "w"])
    assert caught.value.code == 2
    assert "required" in capsys.readouterr().err


# -- inspect ---------------------------------------------------------------------------------


# -- sign ------------------------------------------------------------------------------------


@pytest.fixture
def unsigned(work: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, _, err = run(
        capsys, "pack", "--weights", work / "weights.safetensors", "--manifest",
        work / "manifest.json", "--model", work / "model", "-o", work / "unsigned.ppatch",
    )  # fmt: skip
    assert code == 0, err
    return work / "unsigned.ppatch"


def test_sign_an_unsigned_file_in_place(
    unsigned: Path, key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = read_patch(unsigned)
    code, out, err = run(capsys, "sign", unsigned, "--key", key)
    assert code == 0, err
    assert "(was unsigned)" in out
    after = read_patch(unsigned)
    assert after.signature is not None
    assert (after.manifest_bytes, after.weights) == (before.manifest_bytes, before.weights)
    code, out, _ = run(capsys, "verify", unsigned, "--public-key", f"{key}.pub")
    assert code == 0 and "signature: ok" in out


def test_sign_into_another_file_replacing_a_signature(
    packed: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = packed.read_bytes()
    assert run(capsys, "keygen", "-o", work / "new-key")[0] == 0
    code, out, err = run(capsys, "sign", packed, "--key", work / "new-key", "-o", work / "o.ppatch")
    assert code == 0, err
    assert "replaces the signature by ed25519:" in out
    assert packed.read_bytes() == original
    code, _, _ = run(capsys, "verify", work / "o.ppatch", "--public-key", work / "new-key.pub")
    assert code == 0


@pytest.mark.parametrize(
    ("problem", "code", "message"),
    [
        ("missing key", 4, "does not exist"),
        ("public key", 3, "private key"),
        ("not a patch", 3, ""),
    ],
)
def test_sign_failures_leave_the_file_alone(
    problem: str,
    code: int,
    message: str,
    unsigned: Path,
    key: Path,
    work: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target, key_path = unsigned, key
    if problem == "missing key":
        key_path = work / "nope.key"
    elif problem == "public key":
        key_path = Path(f"{key}.pub")
    else:
        target = work / "manifest.json"
    before = target.read_bytes()
    got, _, err = run(capsys, "sign", target, "--key", key_path)
    assert got == code, err
    assert message in err and err.count("\n") == 1
    assert target.read_bytes() == before
    assert not [p for p in work.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_inspect(packed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", packed)
    assert code == 0
    assert out.startswith("acme/toxicity 1.2.0  (toxicity)")
    assert "4 virtual tokens x 8, float32" in out
    assert "signed by:    ed25519:" in out
    assert 'training.method: "sft+dpo"' in out


def test_inspect_json(packed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", packed, "--json")
    assert code == 0
    described = json.loads(out)
    assert set(described) == {"file", "size", "sha256", "manifest", "signature"}
    assert described["manifest"]["name"] == "acme/toxicity"
    assert described["size"] == packed.stat().st_size
    assert described["signature"]["algorithm"] == "ed25519"


@pytest.mark.parametrize(
    ("content", "code", "fragment"),
    [
        (None, 4, "does not exist"),
        (b"not a zip file at all, sorry", 3, "no ZIP end record"),
    ],
)
def test_inspect_bad_files(
    work: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, code: int, fragment: str
) -> None:
    path = work / "bad.ppatch"
    if content is not None:
        path.write_bytes(content)
    exit_code, out, err = run(capsys, "inspect", path)
    assert (exit_code, out) == (code, "")
    assert fragment in err


def test_inspect_a_flipped_byte(packed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    packed.write_bytes(bytes(data))
    code, _, err = run(capsys, "inspect", packed)
    assert code == 3
    assert err.startswith("ppatch: error: ")


# -- verify ----------------------------------------------------------------------------------


def test_verify_with_key_and_model(
    packed: Path, key: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "verify", packed, "--public-key", f"{key}.pub", "--model", work / "model"
    )
    assert code == 0
    assert "signature: ok, signed by ed25519:" in out
    assert "base model: ok" in out


def test_verify_without_a_key_reports_but_does_not_check(
    packed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "verify", packed)
    assert code == 0
    assert "not checked against a trusted key" in out


def test_verify_with_another_key(
    packed: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "keygen", "-o", work / "other")
    code, _, err = run(capsys, "verify", packed, "--public-key", work / "other.pub")
    assert code == 3
    assert "not trusted" in err


def test_verify_unsigned_with_a_key(
    work: Path, key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, *_pack_args(work))
    code, _, err = run(capsys, "verify", work / "out.ppatch", "--public-key", f"{key}.pub")
    assert code == 3
    assert "not signed" in err


def test_verify_against_another_model(
    packed: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = read_patch(packed).manifest.base_model.fingerprint
    code, _, err = run(capsys, "verify", packed, "--model", work / "other-model")
    assert code == 3
    assert expected in err
    assert "the model's fingerprint is sha256:" in err


def test_verify_with_a_bad_public_key_file(
    packed: Path, key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "verify", packed, "--public-key", key)  # the private key
    assert code == 3
    assert "not a PEM public key" in err


# -- fingerprint -----------------------------------------------------------------------------


def test_fingerprint_json(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "fingerprint", work / "model", "--json")
    assert code == 0
    described = json.loads(out)
    assert described["fingerprint"].startswith("sha256:")
    assert described["files"] == ["model.safetensors"]
    assert described["size"] == (work / "model" / "model.safetensors").stat().st_size


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("absent", "absent' does not exist"), ("bin-model", "no *.safetensors weights")],
)
def test_fingerprint_failures(
    work: Path, capsys: pytest.CaptureFixture[str], name: str, fragment: str
) -> None:
    if name == "bin-model":
        _bin_model(work / name)
    code, out, err = run(capsys, "fingerprint", work / name)
    assert (code, out) == (4, "")
    assert fragment in err


def test_fingerprint_of_a_gguf_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.patchfmt.test_fingerprint_gguf import write_gguf

    model = tmp_path / "model.gguf"
    write_gguf(model, {"output_norm.weight": np.ones(32, dtype=np.float32)})
    code, out, _ = run(capsys, "fingerprint", model, "--json")
    assert code == 0
    described = json.loads(out)
    assert described["files"] == ["model.gguf"]
    assert described["size"] == model.stat().st_size
    assert described["model"] == str(model.resolve())
