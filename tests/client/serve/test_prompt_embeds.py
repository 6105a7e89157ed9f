"""The embeddings ppatch builds for vLLM's `prompt_embeds` input give the patched model's output."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest

from ppatch.errors import UsageError
from ppatch.serve import encode_prompt_embeds, prompt_embeds


def load(model_dir: Path, patches: list[np.ndarray]):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ppatch.runtime.patched_model import AppliedPatch, PatchedModel

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    applied = [AppliedPatch.from_array(array, name=f"acme/p{i}") for i, array in
               enumerate(patches)]  # fmt: skip
    return PatchedModel(model, applied, tokenizer=tokenizer)


@pytest.mark.parametrize("count", [0, 1, 2])
def test_running_the_model_on_the_embeddings_equals_the_patched_model(
    serve_model_dir: Path, hidden_size: int, count: int
) -> None:
    import torch

    arrays = [np.random.default_rng(seed).normal(size=(3 + seed, hidden_size)).astype(np.float32)
              for seed in range(count)]  # fmt: skip
    patched = load(serve_model_dir, arrays)
    ids = patched.tokenizer("the cat sat on the mat")["input_ids"]
    embeds = prompt_embeds(patched, ids)
    virtual = sum(len(array) for array in arrays)
    assert embeds.shape == (virtual + len(ids), hidden_size)
    with torch.no_grad():
        direct = patched.model(inputs_embeds=embeds[None]).logits[0, virtual:]
        through_ppatch = patched(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(direct, through_ppatch, rtol=1e-4, atol=1e-4)


def test_the_encoding_is_what_vllm_decodes(serve_model_dir: Path, hidden_size: int) -> None:
    import torch

    patched = load(serve_model_dir, [np.ones((2, hidden_size), dtype=np.float32)])
    embeds = prompt_embeds(patched, [5, 6, 7])
    # vLLM's OpenAI server: torch.load(BytesIO(b64decode(field)), weights_only=True).
    decoded = torch.load(io.BytesIO(base64.b64decode(encode_prompt_embeds(embeds))),
                         weights_only=True, map_location="cpu")  # fmt: skip
    torch.testing.assert_close(decoded, embeds)


def test_bad_input_is_refused(serve_model_dir: Path) -> None:
    import torch

    patched = load(serve_model_dir, [])
    with pytest.raises(UsageError, match="at least one prompt token"):
        prompt_embeds(patched, [])
    with pytest.raises(UsageError, match="token id 100000 is outside the vocabulary"):
        prompt_embeds(patched, [3, 100000])
    with pytest.raises(UsageError, match=r"must be \[length, hidden\]"):
        encode_prompt_embeds(torch.zeros(1, 2, 3))
