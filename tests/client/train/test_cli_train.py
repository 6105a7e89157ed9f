"""`ppatch train` through the CLI: a tiny run end to end, and every bad input refused cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ppatch.cli.main import main
from ppatch.errors import ExitCode

TINY_FLAGS = [
    "--virtual-tokens",
    "3",
    "--sft-steps",
    "2",
    "--dpo-steps",
    "2",
    "--batch-size",
    "4",
    "--samples-per-prompt",
    "2",
    "--max-new-tokens",
    "4",
    "--anchor-samples",
    "2",
]


def _prompts(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _args(base: Path, reference: Path, prompts: Path, output: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--base",
        str(base),
        "--reference",
        str(reference),
        "--prompts",
        str(prompts),
        "--name",
        "acme/toxicity",
        "--version",
        "1.0.0",
        "--domain",
        "toxicity",
        "-o",
        str(output),
        *TINY_FLAGS,
        *extra,
    ]


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    return _prompts(
        tmp_path / "prompts.jsonl",
        [
            json.dumps({"prompt": "q : what do you think of the cook ? a :"}),
            json.dumps({"prompt": "q : say something about the poet . a :"}),
        ],
    )


def test_train_writes_a_signed_patch_recording_provenance(
    tiny_model: Path, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from patchfmt import (
        fingerprint_model,
        generate_private_key,
        key_id,
        private_key_to_pem,
        read_patch,
        verify_patch,
    )

    key = generate_private_key()
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(private_key_to_pem(key))
    output = tmp_path / "out.ppatch"
    code = main(_args(tiny_model, tiny_model, prompts, output, "--key", str(key_path)))
    assert code == 0, capsys.readouterr().err
    patch = read_patch(output)
    public = key.public_key()
    assert verify_patch(patch, {key_id(public): public}) == key_id(public)
    manifest = patch.manifest
    assert manifest.base_model.fingerprint == fingerprint_model(tiny_model)
    assert manifest.patch.num_virtual_tokens == 3
    training = manifest.training
    assert training["reference_model"]["fingerprint"] == fingerprint_model(tiny_model)
    assert training["stages"] == "sft+dpo"
    assert training["hyperparameters"]["sft_steps"] == 2
    # Not given: the miniature's defaults for a model this small, recorded as used.
    assert training["hyperparameters"]["sft_learning_rate"] == 0.03
    assert training["hyperparameters"]["dpo_learning_rate"] == 0.003
    assert training["hyperparameters"]["beta"] == 0.1
    assert training["data"]["prompts"] == 2
    assert training["data"]["sft_examples"] == 4 + 2
    assert training["data"]["anchor_examples"] == 2
    assert training["data"]["generation"]["samples"] == 2
    assert "preference_accuracy" in manifest.evaluation["training_pairs"]
    assert manifest.evaluation["training_prompts"]["suite"] == "toxicity"


def test_train_from_a_pairs_file(tiny_model: Path, tmp_path: Path) -> None:
    from patchfmt import read_patch

    pairs = _prompts(
        tmp_path / "pairs.jsonl",
        [
            json.dumps(
                {
                    "prompt": "q : how do i rob a bank ? a :",
                    "chosen": "i cannot help with that request .",
                    "rejected": "first you find a map , then you rob the bank .",
                }
            )
        ],
    )
    output = tmp_path / "p.ppatch"
    code = main(
        [
            "train",
            "--base",
            str(tiny_model),
            "--pairs",
            str(pairs),
            "--name",
            "acme/harm",
            "--version",
            "0.1.0",
            "--domain",
            "harm",
            "-o",
            str(output),
            *TINY_FLAGS,
        ]
    )
    assert code == 0
    assert read_patch(output).manifest.training["data"]["source"] == "pairs file"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "holds no records"),
        (["   "], "holds no records"),
        ([json.dumps({"prompt": "a"}), "{not json"], "line 2: not valid JSON"),
        ([json.dumps(["prompt"])], "line 1: expected a JSON object, got list"),
        ([json.dumps({"text": "a"})], "line 1: 'prompt' must be a non-empty string"),
        ([json.dumps({"prompt": ""})], "line 1: 'prompt' must be a non-empty string"),
    ],
)
def test_bad_prompt_files_are_refused_with_the_line(
    tiny_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    lines: list[str],
    message: str,
) -> None:
    prompts = _prompts(tmp_path / "bad.jsonl", lines)
    output = tmp_path / "out.ppatch"
    assert main(_args(tiny_model, tiny_model, prompts, output)) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not output.exists()


def test_missing_base_model_is_not_found(
    prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.ppatch"
    code = main(_args(tmp_path / "no-model", tmp_path / "no-model", prompts, output))
    assert code == ExitCode.NOT_FOUND
    assert "not found" in capsys.readouterr().err
    assert not output.exists()


def test_tokenizers_that_differ_are_refused(
    tiny_model: Path,
    other_tokenizer_model: Path,
    prompts: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "out.ppatch"
    assert main(_args(tiny_model, other_tokenizer_model, prompts, output)) == ExitCode.USAGE
    assert "different tokenizers" in capsys.readouterr().err
    assert not output.exists()


def test_existing_output_is_left_alone(
    tiny_model: Path, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.ppatch"
    output.write_bytes(b"precious")
    assert main(_args(tiny_model, tiny_model, prompts, output)) == ExitCode.CONFLICT
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--version", "1.x"], ExitCode.USAGE, "invalid patch metadata"),
        (["--name", "NoNamespace"], ExitCode.USAGE, "invalid patch metadata"),
        (["--key", "/nonexistent/key.pem"], ExitCode.NOT_FOUND, "signing key"),
        (["--virtual-tokens", "0"], ExitCode.USAGE, "--virtual-tokens must be at least 1"),
        (["--sft-lr", "0"], ExitCode.USAGE, "--sft-lr must be positive"),
        (["--stages", "ppo"], ExitCode.USAGE, "--stages must be one of"),
        (["--anchor-samples", "-1"], ExitCode.USAGE, "--anchor-samples must not be negative"),
        (["--dpo-nll-weight", "-1"], ExitCode.USAGE, "--dpo-nll-weight must not be negative"),
        (["--dtype", "int8"], ExitCode.USAGE, "--dtype must be one of auto, float32, bfloat16"),
    ],
)
def test_bad_flags_fail_before_any_work(
    tiny_model: Path,
    prompts: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    code: int,
    message: str,
) -> None:
    output = tmp_path / "out.ppatch"
    assert main(_args(tiny_model, tiny_model, prompts, output, *extra)) == code
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_output_in_missing_folders_is_made(tiny_model: Path, tmp_path: Path) -> None:
    from patchfmt import read_patch

    pairs = _prompts(
        tmp_path / "pairs.jsonl",
        [json.dumps({"prompt": "q : hi ? a :", "chosen": "hello .", "rejected": "go away ."})],
    )
    output = tmp_path / "dist" / "harm" / "p.ppatch"
    args = [
        "train", "--base", str(tiny_model), "--pairs", str(pairs), "--name", "acme/harm",
        "--version", "0.1.0", "--domain", "harm", "-o", str(output), *TINY_FLAGS,
        "--stages", "sft", "--sft-steps", "1",
    ]  # fmt: skip
    assert main(args) == 0
    assert read_patch(output).manifest.name == "acme/harm"
    assert [p.name for p in output.parent.iterdir()] == ["p.ppatch"]


def test_output_under_a_file_is_refused_before_any_work(
    tiny_model: Path, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "plain").write_text("mine")
    output = tmp_path / "plain" / "p.ppatch"
    # A base model that does not exist: the output is checked before any model is looked for.
    assert main(_args(tmp_path / "no-model", tiny_model, prompts, output)) == ExitCode.CONFLICT
    err = capsys.readouterr().err
    assert "plain' is not a folder" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "plain").read_text() == "mine"


@pytest.mark.parametrize("nested", [False, True], ids=["existing-folder", "missing-folders"])
def test_interrupt_leaves_no_output(
    tiny_model: Path,
    prompts: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    nested: bool,
) -> None:
    import ppatch.train.pipeline as pipeline

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "fit_prompt", interrupted)
    output = tmp_path / "new" / "out.ppatch" if nested else tmp_path / "out.ppatch"
    assert main(_args(tiny_model, tiny_model, prompts, output)) == ExitCode.INTERRUPTED
    assert list(tmp_path.iterdir()) == [prompts]  # not even the missing folders are made


def test_two_processes_train_byte_identical_patches(
    tiny_model: Path, prompts: Path, tmp_path: Path
) -> None:
    # Two fresh interpreters (own hash seeds, allocators and import order), the same inputs
    # and seed: the same file, byte for byte. SOURCE_DATE_EPOCH fixes the manifest's `created`.
    import hashlib
    import os
    import subprocess
    import sys

    ppatch = Path(sys.executable).parent / "ppatch"
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1800000000", "OMP_NUM_THREADS": "1"}
    outputs = [tmp_path / "first.ppatch", tmp_path / "second.ppatch"]
    for number, output in enumerate(outputs):
        run = subprocess.run(
            [str(ppatch), *_args(tiny_model, tiny_model, prompts, output)],
            env={**env, "PYTHONHASHSEED": str(number + 1)},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
    first, second = (output.read_bytes() for output in outputs)
    if first != second:  # name what differs: the weights, or a manifest field
        import zipfile

        entries = [zipfile.ZipFile(output).namelist() for output in outputs]
        differ = [
            name
            for name in entries[0]
            if zipfile.ZipFile(outputs[0]).read(name) != zipfile.ZipFile(outputs[1]).read(name)
        ]
        manifests = [json.loads(zipfile.ZipFile(o).read("manifest.json")) for o in outputs]
        fields = sorted(k for k in manifests[0] if manifests[0][k] != manifests[1].get(k))
        raise AssertionError(f"entries {differ} differ; manifest fields {fields}")
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()


def test_the_rules_reference_trains_from_harm_prompts(tiny_model: Path, tmp_path: Path) -> None:
    """`--reference rules`: no reference model; a refusal preferred for harmful prompts, the
    base model's own answers for benign ones, recorded as such in the manifest."""
    from patchfmt import read_patch

    prompts = _prompts(
        tmp_path / "harm.jsonl",
        [
            json.dumps({"prompt": "q : how do i rob the bank ? a :", "kind": "harmful"}),
            json.dumps({"prompt": "q : how do i fix a car ? a :", "kind": "benign"}),
        ],
    )
    output = tmp_path / "harm.ppatch"
    argv = _args(tiny_model, tiny_model, prompts, output, "--no-chat-template")
    argv[argv.index("--reference") + 1] = "rules"
    argv[argv.index("--domain") + 1] = "harm"
    assert main(argv) == 0
    training = read_patch(output).manifest.training
    assert training["reference_model"] == {"kind": "rules"}
    assert training["data"]["harmful_prompts"] == 1
    assert training["hyperparameters"]["chat_template"] is False


def test_the_rules_reference_needs_a_kind_on_every_prompt(
    tiny_model: Path, tmp_path: Path, prompts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.ppatch"
    argv = _args(tiny_model, tiny_model, prompts, output)
    argv[argv.index("--reference") + 1] = "rules"
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "--reference rules needs 'kind'" in err and len(err.strip().splitlines()) == 1
    assert not output.exists()


def test_the_system_prompt_reference_needs_a_chat_template(
    tiny_model: Path, tmp_path: Path, prompts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.ppatch"
    argv = _args(tiny_model, tiny_model, prompts, output)
    argv[argv.index("--reference") + 1] = "system-prompt"
    assert main(argv) == ExitCode.USAGE
    assert "needs a base model whose tokenizer has a chat template" in capsys.readouterr().err
    assert not output.exists()
