"""Every architecture ppatch accepts gives the concatenation's results; the others are refused.

Each case builds a tiny model of a real Hugging Face architecture from its config class, with
random weights (nothing downloaded), and applies two patches (composition: their embeddings
concatenated). The reference is the plain implementation, the model run on
`cat([prompt_embeddings, embed(input_ids)])` with the mask extended over the virtual tokens;
PEFT's prompt-tuning forward pass is checked against ppatch's as well. Batches are left-padded.
Sliding-window models run with a window shorter than the patch and one longer.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from ppatch.runtime.attention import ATTENTION_NAME
from ppatch.runtime.patched_model import AppliedPatch, PatchedModel
from ppatch.runtime.support import UnsupportedModelError

TOLERANCE = 1e-4
VOCAB, HIDDEN, HEADS, KV_HEADS, LAYERS = 64, 32, 4, 2, 2
FIRST_PATCH, SECOND_PATCH = 4, 3  # 7 virtual tokens in all
SHORT_WINDOW, LONG_WINDOW = 4, 12  # one shorter than the patch, one longer (both slide)
NEW_TOKENS = 5
SPECIAL = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def _llama() -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM, LlamaConfig(**_decoder())


def _mistral(window: int) -> Callable[[], Any]:
    def build() -> Any:
        from transformers import MistralConfig, MistralForCausalLM

        return MistralForCausalLM, MistralConfig(**_decoder(), sliding_window=window)

    return build


def _gemma2(window: int) -> Callable[[], Any]:
    def build() -> Any:
        from transformers import Gemma2Config, Gemma2ForCausalLM

        return Gemma2ForCausalLM, Gemma2Config(**_decoder(), head_dim=8, sliding_window=window)

    return build


def _gemma3(window: int) -> Callable[[], Any]:
    def build() -> Any:
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        config = Gemma3TextConfig(
            **_decoder(),
            head_dim=8,
            sliding_window=window,
            layer_types=["sliding_attention", "full_attention"],
        )
        return Gemma3ForCausalLM, config

    return build


def _qwen2() -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM, Qwen2Config(**_decoder())


def _qwen3() -> Any:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return Qwen3ForCausalLM, Qwen3Config(**_decoder(), head_dim=8)


def _mixtral() -> Any:
    from transformers import MixtralConfig, MixtralForCausalLM

    return MixtralForCausalLM, MixtralConfig(
        **_decoder(), num_local_experts=4, num_experts_per_tok=2
    )


def _phi3() -> Any:
    from transformers import Phi3Config, Phi3ForCausalLM

    return Phi3ForCausalLM, Phi3Config(**_decoder())


def _gpt2() -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=64, **SPECIAL
    )
    return GPT2LMHeadModel, config


def _gpt_neox() -> Any:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=2 * HIDDEN,
        max_position_embeddings=64,
        **SPECIAL,
    )
    return GPTNeoXForCausalLM, config


def _opt() -> Any:
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        word_embed_proj_dim=HIDDEN,
        ffn_dim=2 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        max_position_embeddings=64,
        **SPECIAL,
    )
    return OPTForCausalLM, config


def _falcon(alibi: bool) -> Callable[[], Any]:
    def build() -> Any:
        from transformers import FalconConfig, FalconForCausalLM

        config = FalconConfig(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            alibi=alibi,
            **SPECIAL,
        )
        return FalconForCausalLM, config

    return build


def _decoder() -> dict[str, Any]:
    return {
        "vocab_size": VOCAB,
        "hidden_size": HIDDEN,
        "intermediate_size": 2 * HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": 64,
        "tie_word_embeddings": False,
        **SPECIAL,
    }


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[], Any]


ARCHITECTURES = [
    Architecture("llama", _llama),
    Architecture("mistral-short-window", _mistral(SHORT_WINDOW)),
    Architecture("mistral-long-window", _mistral(LONG_WINDOW)),
    Architecture("gemma2-short-window", _gemma2(SHORT_WINDOW)),
    Architecture("gemma2-long-window", _gemma2(LONG_WINDOW)),
    Architecture("gemma3-short-window", _gemma3(SHORT_WINDOW)),
    Architecture("gemma3-long-window", _gemma3(LONG_WINDOW)),
    Architecture("qwen2", _qwen2),
    Architecture("qwen3", _qwen3),
    Architecture("mixtral", _mixtral),
    Architecture("phi3", _phi3),
    Architecture("gpt2", _gpt2),
    Architecture("gpt-neox", _gpt_neox),
    Architecture("opt", _opt),
    Architecture("falcon-rotary", _falcon(alibi=False)),
    Architecture("falcon-alibi", _falcon(alibi=True)),
]
IMPLEMENTATIONS = ["sdpa", "eager"]


def build_model(architecture: Architecture, implementation: str) -> Any:
    model_class, config = architecture.build()
    config._attn_implementation = implementation
    torch.manual_seed(0)
    return model_class(config).eval()


def patches() -> tuple[AppliedPatch, AppliedPatch]:
    rng = np.random.default_rng(3)
    first = rng.normal(size=(FIRST_PATCH, HIDDEN)).astype(np.float32)
    second = rng.normal(size=(SECOND_PATCH, HIDDEN)).astype(np.float32)
    return (
        AppliedPatch.from_array(first, name="acme/first"),
        AppliedPatch.from_array(second, name="acme/second"),
    )


def left_padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two prompts of 8 and 5 tokens; the second is padded on the left."""
    input_ids = torch.randint(3, VOCAB, (2, 8), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(input_ids)
    input_ids[1, :3], mask[1, :3] = 0, 0
    return input_ids, mask


def reference_inputs(model: Any, virtual: torch.Tensor, input_ids, mask) -> dict[str, Any]:
    batch = input_ids.shape[0]
    tokens = model.get_input_embeddings()(input_ids)
    return {
        "inputs_embeds": torch.cat([virtual.expand(batch, -1, -1), tokens], dim=1),
        "attention_mask": torch.cat([mask.new_ones(batch, virtual.shape[0]), mask], dim=1),
    }


def peft_logits(model: Any, virtual: torch.Tensor, input_ids, mask) -> torch.Tensor:
    """PEFT prompt tuning's forward pass with `virtual` as its prompt embeddings."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    config = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM,
        num_virtual_tokens=virtual.shape[0],
        token_dim=HIDDEN,
        num_transformer_submodules=1,
        num_attention_heads=HEADS,
        num_layers=LAYERS,
    )
    with warnings.catch_warnings():
        # PEFT 0.21 reads an attribute transformers 5 deprecates: PEFT's business, not ours.
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        peft_model = get_peft_model(copy.deepcopy(model), config).eval()
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(virtual)
        return peft_model(input_ids=input_ids, attention_mask=mask).logits


def cases() -> list[Any]:
    """Each architecture with each attention implementation transformers allows for it."""
    allowed = []
    for architecture in ARCHITECTURES:
        model_class, _ = architecture.build()
        for implementation in IMPLEMENTATIONS:
            if implementation == "sdpa" and not model_class._supports_sdpa:
                continue  # Gemma2: soft-capping, so transformers refuses SDPA
            name = f"{architecture.name}-{implementation}"
            allowed.append(pytest.param(architecture, implementation, id=name))
    return allowed


@pytest.mark.parametrize(("architecture", "implementation"), cases())
def test_forward_and_generate_equal_the_concatenation(
    architecture: Architecture, implementation: str
) -> None:
    model = build_model(architecture, implementation)
    first, second = patches()
    patched = PatchedModel(model, [first, second])
    virtual = patched.prompt_embeddings()
    input_ids, mask = left_padded_batch()
    real = mask.bool()
    settings = {
        "max_new_tokens": NEW_TOKENS,
        "do_sample": False,
        "pad_token_id": 0,
        "output_logits": True,
        "return_dict_in_generate": True,
    }

    with torch.no_grad():
        logits = patched(input_ids=input_ids, attention_mask=mask).logits
        generated = patched.generate(input_ids=input_ids, attention_mask=mask, **settings)
        reference = reference_inputs(model, virtual, input_ids, mask)
        expected = model(**reference).logits[:, virtual.shape[0] :]
        expected_generated = model.generate(**reference, **settings)

    assert model.config._attn_implementation == implementation  # the user's model untouched
    torch.testing.assert_close(logits[real], expected[real], atol=TOLERANCE, rtol=0)
    assert torch.equal(generated.sequences[:, : input_ids.shape[1]], input_ids)
    assert torch.equal(generated.sequences[:, input_ids.shape[1] :], expected_generated.sequences)
    steps = zip(generated.logits, expected_generated.logits, strict=True)
    for step, (ours, theirs) in enumerate(steps):
        torch.testing.assert_close(ours, theirs, atol=TOLERANCE, rtol=0, msg=f"step {step}")
    theirs = peft_logits(model, virtual, input_ids, mask)[:, virtual.shape[0] :]
    torch.testing.assert_close(logits[real], theirs[real], atol=TOLERANCE, rtol=0)


def _t5() -> Any:
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=VOCAB, d_model=HIDDEN, d_kv=8, d_ff=64, num_layers=1, num_heads=HEADS
    )
    return T5ForConditionalGeneration(config)


def _bloom() -> Any:
    from transformers import BloomConfig, BloomForCausalLM

    return BloomForCausalLM(BloomConfig(vocab_size=VOCAB, hidden_size=HIDDEN, n_layer=1, n_head=4))


def _llama_with(implementation: str) -> Any:
    model = build_model(ARCHITECTURES[0], "sdpa")
    model.config._attn_implementation_internal = implementation
    return model


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_t5, r"^cannot apply patches to T5ForConditionalGeneration: it is an encoder-decoder"),
        (_bloom, r"^cannot apply patches to BloomForCausalLM: ppatch has not verified .*Llama"),
        (
            lambda: _llama_with("flex_attention"),
            r"^cannot apply patches to LlamaForCausalLM with attention implementation "
            r"'flex_attention': ppatch has verified only 'sdpa' and 'eager'",
        ),
    ],
    ids=["encoder-decoder", "unverified-architecture", "unverified-attention"],
)
def test_models_not_verified_are_refused_up_front_in_one_line(build, message) -> None:
    from ppatch.errors import UsageError

    model = build()
    with pytest.raises(UnsupportedModelError, match=message) as refused:
        PatchedModel(model, list(patches()))
    assert isinstance(refused.value, UsageError)  # the CLI's usage exit code
    assert "\n" not in str(refused.value)
    PatchedModel(model, [])  # the bare model still runs: nothing is patched


@pytest.mark.parametrize(
    ("architecture", "switched"),
    [(ARCHITECTURES[0], True), (next(a for a in ARCHITECTURES if a.name == "falcon-alibi"), False)],
    ids=["llama", "falcon"],
)
def test_the_attention_switch_runs_only_where_the_matrix_proves_it(architecture, switched) -> None:
    """Falcon tests `== "sdpa"` itself, so the grouped-SDPA switch would send it down eager."""
    model = build_model(architecture, "sdpa")
    seen: list[str] = []
    handle = model.register_forward_pre_hook(
        lambda module, args: seen.append(module.config._attn_implementation)
    )
    input_ids, mask = left_padded_batch()
    try:
        with torch.no_grad():
            PatchedModel(model, list(patches()))(input_ids=input_ids, attention_mask=mask)
    finally:
        handle.remove()
    assert seen[-1] == (ATTENTION_NAME if switched else "sdpa")
    assert model.config._attn_implementation == "sdpa"
