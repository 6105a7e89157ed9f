"""PEFT prompt-tuning adapters convert to `.ppatch` and back, and the real PEFT agrees with us."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from patchfmt import read_patch
from ppatch.errors import ConflictError, NotFoundError, UsageError
from ppatch.runtime.loading import apply
from ppatch.runtime.peft_interop import (
    InvalidAdapterError,
    export_peft,
    import_peft,
    read_peft_adapter,
)

from .conftest import HIDDEN, write_patch_file

# PEFT 0.21 calls transformers' deprecated `is_gradient_checkpointing`; not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
)

PROMPTS = ["hello world", "the big red dog ran to the house", "why"]


def write_adapter(
    folder: Path,
    embeddings: np.ndarray | None,
    *,
    tensor_name: str = "prompt_embeddings",
    **config_changes,
) -> Path:
    """An adapter folder as PEFT writes it, with chosen defects."""
    folder.mkdir(parents=True)
    config = {
        "base_model_name_or_path": None,
        "num_virtual_tokens": None if embeddings is None else embeddings.shape[0],
        "num_transformer_submodules": 1,
        "peft_type": "PROMPT_TUNING",
        "task_type": "CAUSAL_LM",
        "token_dim": HIDDEN,
        **config_changes,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    if embeddings is not None:
        save_file({tensor_name: embeddings}, str(folder / "adapter_model.safetensors"))
    return folder


def encode(tokenizer):
    encoded = tokenizer(PROMPTS, return_tensors="pt", padding=True, padding_side="left")
    return encoded["input_ids"], encoded["attention_mask"]


@pytest.fixture
def patch_file(tmp_path, prompt_embeddings, tiny_fingerprint) -> Path:
    return write_patch_file(tmp_path / "first.ppatch", prompt_embeddings, tiny_fingerprint)


def test_an_exported_adapter_loads_in_peft_and_gives_our_logits(
    tmp_path, patch_file, tiny_model, tiny_tokenizer
) -> None:
    from peft import PeftModel

    adapter = export_peft(patch_file, tmp_path / "adapter")
    peft_model = PeftModel.from_pretrained(copy.deepcopy(tiny_model), adapter).eval()
    ours = apply(tiny_model, [patch_file], tokenizer=tiny_tokenizer)
    input_ids, mask = encode(tiny_tokenizer)

    with torch.no_grad():
        theirs = peft_model(input_ids=input_ids, attention_mask=mask).logits
        mine = ours(input_ids=input_ids, attention_mask=mask).logits
    virtual = ours.num_virtual_tokens
    real = mask.bool()
    torch.testing.assert_close(mine[real], theirs[:, virtual:][real], atol=1e-5, rtol=0)


def test_a_peft_adapter_imports_with_its_embeddings_and_the_model_fingerprint(
    tmp_path, tiny_model, tiny_model_dir, tiny_fingerprint
) -> None:
    from peft import PromptTuningConfig, TaskType, get_peft_model

    config = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM,
        num_virtual_tokens=4,
        base_model_name_or_path=str(tiny_model_dir),
    )
    peft_model = get_peft_model(copy.deepcopy(tiny_model), config)
    peft_model.save_pretrained(tmp_path / "adapter")
    trained = peft_model.get_prompt_embedding_to_save("default").detach().numpy()

    manifest = import_peft(
        tmp_path / "adapter",
        tmp_path / "imported.ppatch",
        name="acme/imported",
        version="0.3.0",
        domain="custom:demo",
    )

    patch = read_patch(tmp_path / "imported.ppatch")
    assert patch.manifest == manifest
    assert manifest.base_model.fingerprint == tiny_fingerprint
    assert manifest.base_model.id == str(tiny_model_dir)
    assert manifest.patch.num_virtual_tokens == 4
    assert manifest.training["method"] == "peft-prompt-tuning"
    np.testing.assert_array_equal(patch.embeddings(), trained)


def test_export_then_import_gives_the_same_weights(tmp_path, patch_file, tiny_model_dir) -> None:
    export_peft(patch_file, tmp_path / "adapter")
    import_peft(
        tmp_path / "adapter",
        tmp_path / "again.ppatch",
        name="acme/first",
        version="1.0.0",
        domain="toxicity",
        model=tiny_model_dir,
    )
    original, again = read_patch(patch_file), read_patch(tmp_path / "again.ppatch")
    assert again.weights == original.weights
    assert again.manifest.base_model.fingerprint == original.manifest.base_model.fingerprint


def test_import_signs_with_a_key(tmp_path, prompt_embeddings, tiny_model_dir) -> None:
    from patchfmt import generate_private_key, private_key_to_pem

    key = generate_private_key()
    (tmp_path / "key.pem").write_bytes(private_key_to_pem(key))
    write_adapter(tmp_path / "adapter", prompt_embeddings)
    import_peft(
        tmp_path / "adapter",
        tmp_path / "signed.ppatch",
        name="acme/signed",
        version="1.0.0",
        domain="bias",
        model=tiny_model_dir,
        key=tmp_path / "key.pem",
    )
    assert read_patch(tmp_path / "signed.ppatch").signature is not None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"peft_type": "LORA"}, "peft_type is 'LORA'; only 'PROMPT_TUNING'"),
        ({"task_type": "SEQ_2_SEQ_LM"}, "task_type is 'SEQ_2_SEQ_LM'"),
        ({"num_transformer_submodules": 2}, "num_transformer_submodules is 2"),
        ({"num_virtual_tokens": 7}, r"shape \[5, 32\] but adapter_config.json says .*\[7, 32\]"),
        ({"token_dim": 64}, r"shape \[5, 32\].*\[5, 64\]"),
        ({"tensor_name": "prompt_encoder.weight"}, "expected exactly one tensor"),
    ],
    ids=["lora", "seq2seq", "two-submodules", "wrong-token-count", "wrong-width", "no-tensor"],
)
def test_bad_adapters_are_refused_and_nothing_is_written(
    tmp_path, prompt_embeddings, tiny_model_dir, changes, message
) -> None:
    write_adapter(tmp_path / "adapter", prompt_embeddings, **changes)
    output = tmp_path / "out.ppatch"
    with pytest.raises(InvalidAdapterError, match=message):
        import_peft(
            tmp_path / "adapter",
            output,
            name="acme/x",
            version="1.0.0",
            domain="harm",
            model=tiny_model_dir,
        )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["adapter"]


def test_an_adapter_without_its_files_is_refused(tmp_path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(InvalidAdapterError, match=r"has no adapter_config\.json"):
        read_peft_adapter(bare)
    write_adapter(tmp_path / "pickled", None)
    (tmp_path / "pickled" / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(InvalidAdapterError, match=r"no adapter_model.safetensors.*pickle"):
        read_peft_adapter(tmp_path / "pickled")
    with pytest.raises(NotFoundError, match="does not exist"):
        read_peft_adapter(tmp_path / "nowhere")
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "adapter_config.json").write_text("{not json")
    with pytest.raises(InvalidAdapterError, match="not valid JSON"):
        read_peft_adapter(tmp_path / "garbled")


def test_an_adapter_for_another_width_is_refused(tmp_path, tiny_model_dir) -> None:
    wide = np.zeros((5, 48), dtype=np.float32)
    write_adapter(tmp_path / "adapter", wide, token_dim=48)
    with pytest.raises(InvalidAdapterError, match=r"48 wide but the model .* hidden_size 32"):
        import_peft(
            tmp_path / "adapter",
            tmp_path / "out.ppatch",
            name="acme/x",
            version="1.0.0",
            domain="harm",
            model=tiny_model_dir,
        )
    assert not (tmp_path / "out.ppatch").exists()


def test_import_needs_a_base_model(tmp_path, prompt_embeddings) -> None:
    write_adapter(tmp_path / "adapter", prompt_embeddings)
    with pytest.raises(UsageError, match="pass --model MODEL"):
        import_peft(
            tmp_path / "adapter", tmp_path / "o.ppatch", name="a/b", version="1.0.0", domain="bias"
        )


def test_import_never_overwrites_a_file(tmp_path, prompt_embeddings, tiny_model_dir) -> None:
    write_adapter(tmp_path / "adapter", prompt_embeddings)
    existing = tmp_path / "out.ppatch"
    existing.write_bytes(b"keep me")
    with pytest.raises(ConflictError, match="already exists"):
        import_peft(
            tmp_path / "adapter",
            existing,
            name="a/b",
            version="1.0.0",
            domain="bias",
            model=tiny_model_dir,
        )
    assert existing.read_bytes() == b"keep me"


def test_export_never_overwrites_a_folder(tmp_path, patch_file) -> None:
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(ConflictError, match="already exists"):
        export_peft(patch_file, target)
    assert [path.name for path in target.iterdir()] == ["mine.txt"]


def test_export_of_a_bad_file_writes_nothing(tmp_path) -> None:
    broken = tmp_path / "broken.ppatch"
    broken.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError):
        export_peft(broken, tmp_path / "adapter")
    with pytest.raises(NotFoundError, match="does not exist"):
        export_peft(tmp_path / "missing.ppatch", tmp_path / "adapter")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.ppatch"]


def test_export_into_a_missing_folder_is_refused(tmp_path, patch_file) -> None:
    with pytest.raises(NotFoundError, match="create it first"):
        export_peft(patch_file, tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
