"""`ppatch.load_model` and `ppatch.apply`: which patches apply, in what order, and refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ppatch
from patchfmt import FingerprintMismatchError, InvalidContainerError
from ppatch.errors import NotFoundError, UsageError
from ppatch.runtime.loading import apply, load_model
from ppatch.runtime.patched_model import AppliedPatch

from .conftest import install_patch_file, write_patch_file

OTHER_FINGERPRINT = "sha256:" + "ab" * 32
PROMPTS = ["hello world", "the cat sat on the mat"]


@pytest.fixture
def first_file(tmp_path, prompt_embeddings, tiny_fingerprint) -> Path:
    return write_patch_file(tmp_path / "first.ppatch", prompt_embeddings, tiny_fingerprint)


@pytest.fixture
def second_file(tmp_path, second_embeddings, tiny_fingerprint) -> Path:
    return write_patch_file(
        tmp_path / "second.ppatch", second_embeddings, tiny_fingerprint, name="acme/second"
    )


def logits(patched, tokenizer) -> torch.Tensor:
    encoded = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return patched(**encoded).logits


def test_the_installed_patches_apply_in_installation_order(
    tiny_model_dir, tiny_fingerprint, first_file, second_file, tiny_tokenizer, tiny_model
) -> None:
    install_patch_file(second_file, tiny_fingerprint)
    install_patch_file(first_file, tiny_fingerprint)

    patched = ppatch.load_model(tiny_model_dir, device="cpu")

    assert [patch.name for patch in patched.patches] == ["acme/second", "acme/first"]
    by_hand = ppatch.apply(tiny_model, [second_file, first_file], tokenizer=tiny_tokenizer)
    torch.testing.assert_close(
        logits(patched, tiny_tokenizer), logits(by_hand, tiny_tokenizer), atol=1e-5, rtol=0
    )


def test_without_installed_patches_the_model_runs_bare(tiny_model_dir, tiny_tokenizer) -> None:
    patched = load_model(tiny_model_dir, device="cpu", dtype="float32")
    assert patched.patches == ()
    assert patched.tokenizer is not None
    assert patched.complete("hello", max_new_tokens=2, do_sample=False) is not None


def test_an_empty_list_runs_bare_even_with_patches_installed(
    tiny_model_dir, tiny_fingerprint, first_file
) -> None:
    install_patch_file(first_file, tiny_fingerprint)
    assert load_model(tiny_model_dir, [], device="cpu").patches == ()


@pytest.mark.parametrize(
    "spec", ["first", "acme/first", "acme/first@1", "first@^1.0", "acme/first@1.0.0"]
)
def test_specs_resolve_against_the_installed_patches(
    spec, tiny_model, tiny_tokenizer, tiny_fingerprint, first_file, second_file
) -> None:
    install_patch_file(first_file, tiny_fingerprint)
    install_patch_file(second_file, tiny_fingerprint)
    patched = apply(tiny_model, [spec], tokenizer=tiny_tokenizer)
    assert [(patch.name, patch.version) for patch in patched.patches] == [("acme/first", "1.0.0")]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("acme/first@2", r"no installed patch matches 'acme/first@2'.*acme/first 1\.0\.0"),
        ("other/first", "no installed patch matches 'other/first'"),
        ("missing", "no installed patch matches 'missing'"),
    ],
)
def test_a_spec_that_matches_nothing_installed_is_refused(
    spec, message, tiny_model, tiny_fingerprint, first_file
) -> None:
    install_patch_file(first_file, tiny_fingerprint)
    with pytest.raises(NotFoundError, match=message):
        apply(tiny_model, [spec])


def test_a_bare_name_in_two_namespaces_is_ambiguous(
    tmp_path, tiny_model, tiny_fingerprint, prompt_embeddings, first_file
) -> None:
    other = write_patch_file(
        tmp_path / "other.ppatch", prompt_embeddings, tiny_fingerprint, name="other/first"
    )
    install_patch_file(first_file, tiny_fingerprint)
    install_patch_file(other, tiny_fingerprint)
    with pytest.raises(UsageError, match=r"'first' matches several.*acme/first.*other/first"):
        apply(tiny_model, ["first"])


def test_a_patch_for_another_model_is_refused_naming_both_fingerprints(
    tmp_path, tiny_model_dir, tiny_fingerprint, prompt_embeddings
) -> None:
    foreign = write_patch_file(tmp_path / "foreign.ppatch", prompt_embeddings, OTHER_FINGERPRINT)
    with pytest.raises(FingerprintMismatchError) as raised:
        load_model(tiny_model_dir, [foreign], device="cpu")
    assert raised.value.expected == OTHER_FINGERPRINT
    assert raised.value.actual == tiny_fingerprint
    assert OTHER_FINGERPRINT in str(raised.value)
    assert tiny_fingerprint in str(raised.value)


def test_apply_fingerprints_the_folder_the_model_came_from(
    tiny_model, tiny_tokenizer, first_file
) -> None:
    patched = apply(tiny_model, [str(first_file)], tokenizer=tiny_tokenizer)
    assert patched.num_virtual_tokens == 5
    assert patched.patches[0].source == str(first_file)


def test_apply_needs_a_fingerprint_for_a_model_built_in_memory(first_file, tiny_fingerprint):
    from .conftest import build_model

    model = build_model(64)
    with pytest.raises(UsageError, match="pass fingerprint="):
        apply(model, [first_file])
    patched = apply(model, [first_file], fingerprint=tiny_fingerprint)
    assert patched.num_virtual_tokens == 5


def test_applying_to_a_patched_model_replaces_its_patches(
    tiny_model, tiny_tokenizer, first_file, second_file
) -> None:
    patched = apply(tiny_model, [first_file], tokenizer=tiny_tokenizer)
    replaced = apply(patched, [second_file])
    assert [patch.name for patch in replaced.patches] == ["acme/second"]
    assert replaced.model is tiny_model
    assert replaced.tokenizer is tiny_tokenizer


def test_in_memory_patches_apply_without_a_fingerprint_check(
    tiny_model, prompt_embeddings, tiny_fingerprint
) -> None:
    patch = AppliedPatch.from_array(prompt_embeddings)
    assert apply(tiny_model, [patch], fingerprint=tiny_fingerprint).patches == (patch,)


@pytest.mark.parametrize(
    ("patches", "error", "message"),
    [
        (["missing.ppatch"], NotFoundError, "patch file 'missing.ppatch' does not exist"),
        ([Path("nowhere/x.ppatch")], NotFoundError, "does not exist"),
        ("first.ppatch", UsageError, "patches must be a list"),
        ([42], UsageError, "cannot apply 42"),
        (["bad name!"], NotFoundError, "neither a file nor a package spec.*invalid package spec"),
    ],
    ids=["missing-file", "missing-path", "not-a-list", "not-a-patch", "bad-spec"],
)
def test_bad_patch_arguments_are_refused(tiny_model, patches, error, message) -> None:
    with pytest.raises(error, match=message):
        apply(tiny_model, patches)


def test_the_same_package_twice_is_refused(tiny_model, first_file) -> None:
    with pytest.raises(UsageError, match="'acme/first' is given twice"):
        apply(tiny_model, [first_file, first_file])


def test_a_corrupt_patch_file_is_refused(tmp_path, tiny_model) -> None:
    broken = tmp_path / "broken.ppatch"
    broken.write_bytes(b"not a zip at all")
    with pytest.raises(InvalidContainerError):
        apply(tiny_model, [broken])


def test_a_model_that_is_not_there_is_refused(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "no-such-model", device="cpu")


def test_ppatch_apply_is_a_function_and_runtime_a_package(tiny_model) -> None:
    import ppatch.runtime.attention
    import ppatch.runtime.peft_interop

    assert callable(ppatch.apply)
    assert callable(ppatch.load_model)
    assert ppatch.runtime.attention.__name__ == "ppatch.runtime.attention"


def test_importing_ppatch_does_not_import_torch() -> None:
    code = (
        "import sys, ppatch; ppatch.apply; ppatch.load_model; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]


def test_loaded_embeddings_round_trip_exactly(first_file, prompt_embeddings, tiny_model) -> None:
    patched = apply(tiny_model, [first_file])
    np.testing.assert_array_equal(patched.patches[0].embeddings, prompt_embeddings)
