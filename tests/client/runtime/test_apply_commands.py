"""`ppatch generate`, `ppatch import-peft`, `ppatch export-peft`: output, exit codes, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from patchfmt import read_patch
from ppatch.cli.main import main
from ppatch.runtime.loading import apply

from .conftest import HIDDEN, install_patch_file, write_patch_file

OTHER_FINGERPRINT = "sha256:" + "cd" * 32


@pytest.fixture
def patch_file(tmp_path, prompt_embeddings, tiny_fingerprint) -> Path:
    return write_patch_file(tmp_path / "first.ppatch", prompt_embeddings, tiny_fingerprint)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_prints_the_patched_completion(
    capsys, tiny_model_dir, patch_file, tiny_model, tiny_tokenizer
) -> None:
    code, out, err = run(
        capsys, "generate", "--model", tiny_model_dir, "--patch", patch_file,
        "--max-new-tokens", "6", "--device", "cpu", "hello world",
    )  # fmt: skip
    expected = apply(tiny_model, [patch_file], tokenizer=tiny_tokenizer).complete(
        "hello world", max_new_tokens=6, do_sample=False
    )
    assert code == 0, err
    assert out == expected[0] + "\n"
    assert err == ""  # piped: no loading bars, no advice


def test_generate_uses_the_installed_patches_unless_told_not_to(
    capsys, tiny_model_dir, patch_file, tiny_fingerprint, tiny_model, tiny_tokenizer
) -> None:
    install_patch_file(patch_file, tiny_fingerprint)
    common = ("generate", "--model", tiny_model_dir, "--max-new-tokens", "6", "--device", "cpu")
    _, patched_out, _ = run(capsys, *common, "the cat")
    _, bare_out, _ = run(capsys, *common, "--no-patches", "the cat")

    def expected(patches):
        return apply(tiny_model, patches, tokenizer=tiny_tokenizer).complete(
            "the cat", max_new_tokens=6, do_sample=False
        )[0]

    assert patched_out == expected(None) + "\n"
    assert bare_out == expected([]) + "\n"


def test_sampling_with_a_seed_repeats(capsys, tiny_model_dir, patch_file) -> None:
    argv = (
        "generate", "--model", tiny_model_dir, "--patch", patch_file, "--sample",
        "--temperature", "1.5", "--seed", "3", "--max-new-tokens", "8", "--device", "cpu", "why",
    )  # fmt: skip
    first = run(capsys, *argv)
    second = run(capsys, *argv)
    assert first[0] == 0
    assert first[1] == second[1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--patch", "x.ppatch", "--no-patches"), "not allowed with argument"),
        (("--temperature", "0.5"), "--temperature and --seed only apply with --sample"),
        (("--seed", "1"), "--temperature and --seed only apply with --sample"),
        (("--max-new-tokens", "0"), "'0' must be at least 1"),
        (("--sample", "--temperature", "-1"), "'-1' must be a positive, finite number"),
        (("--dtype", "float8"), "unknown dtype 'float8'"),
    ],
    ids=["patch-and-no-patches", "temperature", "seed", "no-tokens", "negative-t", "dtype"],
)
def test_generate_refuses_bad_options_with_a_usage_error(
    capsys, tiny_model_dir, extra, message
) -> None:
    argv = ("generate", "--model", tiny_model_dir, *extra, "hello")
    try:
        code, _, err = run(capsys, *argv)
    except SystemExit as exited:
        code, err = int(exited.code or 0), capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("make_argv", "code", "message"),
    [
        (lambda d, p, o: ("--model", d.parent / "nope", "hi"), 4, "nope"),
        (lambda d, p, o: ("--model", d, "--patch", o, "hi"), 3, OTHER_FINGERPRINT),
        (lambda d, p, o: ("--model", d, "--patch", "acme/first", "hi"), 4, "no installed patch"),
        (lambda d, p, o: ("--model", d, "--patch", d / "gone.ppatch", "hi"), 4, "does not exist"),
    ],
    ids=["no-model", "foreign-patch", "not-installed", "missing-file"],
)
def test_generate_failures_are_one_line_with_their_exit_code(
    capsys, tmp_path, tiny_model_dir, patch_file, prompt_embeddings, make_argv, code, message
) -> None:
    foreign = write_patch_file(tmp_path / "foreign.ppatch", prompt_embeddings, OTHER_FINGERPRINT)
    argv = make_argv(tiny_model_dir, patch_file, foreign)
    got, out, err = run(capsys, "generate", "--device", "cpu", *argv)
    assert got == code
    assert out == ""
    assert message in err
    assert err.count("\n") == 1
    assert err.startswith("ppatch: error: ")


def write_adapter(folder: Path, embeddings: np.ndarray, **changes) -> Path:
    folder.mkdir()
    config = {
        "peft_type": "PROMPT_TUNING",
        "task_type": "CAUSAL_LM",
        "num_virtual_tokens": embeddings.shape[0],
        "token_dim": HIDDEN,
        "num_transformer_submodules": 1,
        **changes,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    save_file({"prompt_embeddings": embeddings}, str(folder / "adapter_model.safetensors"))
    return folder


def test_import_then_export_round_trips(
    capsys, tmp_path, tiny_model_dir, prompt_embeddings, tiny_fingerprint
) -> None:
    adapter = write_adapter(tmp_path / "adapter", prompt_embeddings)
    code, out, err = run(
        capsys, "import-peft", adapter, "--name", "acme/imported", "--version", "1.2.0",
        "--domain", "toxicity", "--model", tiny_model_dir, "-o", tmp_path / "imported.ppatch",
    )  # fmt: skip
    assert code == 0, err
    assert "acme/imported 1.2.0, 5 virtual tokens" in out
    patch = read_patch(tmp_path / "imported.ppatch")
    assert patch.manifest.base_model.fingerprint == tiny_fingerprint
    np.testing.assert_array_equal(patch.embeddings(), prompt_embeddings)

    code, out, err = run(capsys, "export-peft", tmp_path / "imported.ppatch", tmp_path / "out")
    assert code == 0, err
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert (config["peft_type"], config["num_virtual_tokens"]) == ("PROMPT_TUNING", 5)


@pytest.mark.parametrize(
    ("changes", "code", "message"),
    [
        ({"peft_type": "LORA"}, 3, "only 'PROMPT_TUNING'"),
        ({"num_virtual_tokens": 9}, 3, "shape [5, 32]"),
    ],
    ids=["not-prompt-tuning", "wrong-shape"],
)
def test_import_refuses_bad_adapters_and_writes_nothing(
    capsys, tmp_path, tiny_model_dir, prompt_embeddings, changes, code, message
) -> None:
    adapter = write_adapter(tmp_path / "adapter", prompt_embeddings, **changes)
    got, out, err = run(
        capsys, "import-peft", adapter, "--name", "acme/x", "--version", "1.0.0",
        "--domain", "bias", "--model", tiny_model_dir, "-o", tmp_path / "x.ppatch",
    )  # fmt: skip
    assert (got, out) == (code, "")
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "x.ppatch").exists()


def test_import_refuses_a_bad_name_and_writes_nothing(
    capsys, tmp_path, tiny_model_dir, prompt_embeddings
) -> None:
    adapter = write_adapter(tmp_path / "adapter", prompt_embeddings)
    got, _, err = run(
        capsys, "import-peft", adapter, "--name", "Not A Name", "--version", "1.0.0",
        "--domain", "bias", "--model", tiny_model_dir, "-o", tmp_path / "x.ppatch",
    )  # fmt: skip
    assert got == 3
    assert "Not A Name" in err
    assert not (tmp_path / "x.ppatch").exists()


def test_export_refuses_an_existing_folder(capsys, tmp_path, patch_file) -> None:
    (tmp_path / "out").mkdir()
    got, out, err = run(capsys, "export-peft", patch_file, tmp_path / "out")
    assert (got, out) == (5, "")
    assert "already exists" in err
    assert list((tmp_path / "out").iterdir()) == []


def test_the_commands_are_listed_in_help(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    for command in ("generate", "import-peft", "export-peft"):
        assert command in out


def test_import_and_export_make_missing_parent_folders(
    capsys, tmp_path, tiny_model_dir, prompt_embeddings
) -> None:
    adapter = write_adapter(tmp_path / "adapter", prompt_embeddings)
    imported = tmp_path / "a" / "b" / "imported.ppatch"
    code, _, err = run(
        capsys, "import-peft", adapter, "--name", "acme/imported", "--version", "1.2.0",
        "--domain", "toxicity", "--model", tiny_model_dir, "-o", imported,
    )  # fmt: skip
    assert code == 0, err
    assert read_patch(imported).manifest.name == "acme/imported"

    exported = tmp_path / "c" / "d" / "out"
    code, _, err = run(capsys, "export-peft", imported, exported)
    assert code == 0, err
    assert (exported / "adapter_config.json").is_file()
    assert [path.name for path in exported.parent.iterdir()] == ["out"]  # no staging left


def test_failed_import_and_export_leave_no_new_folders(
    capsys, tmp_path, tiny_model_dir, prompt_embeddings
) -> None:
    adapter = write_adapter(tmp_path / "adapter", prompt_embeddings, peft_type="LORA")
    got, _, err = run(
        capsys, "import-peft", adapter, "--name", "acme/x", "--version", "1.0.0",
        "--domain", "bias", "--model", tiny_model_dir, "-o", tmp_path / "a" / "b" / "x.ppatch",
    )  # fmt: skip
    assert got == 3
    assert err.count("\n") == 1
    got, _, err = run(capsys, "export-peft", tmp_path / "missing.ppatch", tmp_path / "c" / "out")
    assert got == 4, err
    assert "missing.ppatch" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["adapter"]


@pytest.mark.parametrize("command", ["import-peft", "export-peft"])
def test_a_file_where_a_parent_folder_would_go_is_refused(
    capsys, tmp_path, tiny_model_dir, prompt_embeddings, patch_file, command
) -> None:
    (tmp_path / "taken").write_text("mine")
    target = tmp_path / "taken" / "sub" / "x"
    if command == "import-peft":
        adapter = write_adapter(tmp_path / "adapter", prompt_embeddings)
        argv = [
            "import-peft", adapter, "--name", "acme/x", "--version", "1.0.0",
            "--domain", "bias", "--model", tiny_model_dir, "-o", target,
        ]  # fmt: skip
    else:
        argv = ["export-peft", patch_file, target]
    got, out, err = run(capsys, *argv)
    assert (got, out) == (5, "")
    assert err.startswith("ppatch: error: ") and err.count("\n") == 1
    assert "is not a folder" in err
    assert (tmp_path / "taken").read_text() == "mine"


def test_generate_formats_the_prompt_with_the_chat_template_unless_told_not_to(
    capsys, tmp_path, tiny_model_dir, patch_file, tiny_model, tiny_tokenizer
) -> None:
    import shutil

    import torch

    chat_dir = tmp_path / "chat-model"
    shutil.copytree(tiny_model_dir, chat_dir)
    template = "{% for m in messages %}<s> user : {{ m['content'] }} </s>{% endfor %}<s> bot :"
    (chat_dir / "chat_template.jinja").write_text(template)
    common = ("generate", "--model", chat_dir, "--patch", patch_file, "--max-new-tokens", "6")
    code, templated, err = run(capsys, *common, "--device", "cpu", "hello world")
    assert code == 0, err
    # The patch's rows, then the whole templated text, then greedy decoding.
    patched = apply(tiny_model, [patch_file], tokenizer=tiny_tokenizer)
    ids = tiny_tokenizer("<s> user : hello world </s><s> bot :", add_special_tokens=False)
    input_ids = torch.tensor([ids["input_ids"]])
    sequences = patched.generate(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=6,
        do_sample=False,
    )  # fmt: skip
    expected = tiny_tokenizer.decode(sequences[0, input_ids.shape[1] :], skip_special_tokens=True)
    assert templated == expected + "\n"
    _, plain, _ = run(capsys, *common, "--device", "cpu", "--no-chat-template", "hello world")
    assert plain == patched.complete("hello world", max_new_tokens=6, do_sample=False)[0] + "\n"
