"""Which models ppatch applies patches to, and which of its speed-ups each one may use.

ppatch serves the virtual tokens from a key/value cache instead of recomputing them; that equals
prompt tuning's concatenation only where the model's positions, masks and cache behave as the
cache assumes. Each architecture below is proven to give the concatenation's logits, greedy
tokens and composition, with left-padded batches, under each attention implementation listed,
by tests/client/runtime/test_architectures.py; any other model is refused before anything runs,
with one line naming it and the reason. A refusal is better than a result that is silently wrong.

Two speed-ups reach into transformers' internals and are allowed only where that matrix proves
them right:
- `grouped_sdpa`: switching the model's `_attn_implementation` to `ppatch_grouped_sdpa` for a
  call (`ppatch.runtime.attention`). Falcon tests `== "sdpa"` itself and would take its eager
  branch with an SDPA mask, so it is off there.
- `prepared_mask`: handing SDPA models a ready 4-D additive mask instead of the 2-D one
  (`ppatch.runtime.patched_model`). OPT and Falcon derive positions or ALiBi from the 2-D mask,
  so it is off there; sliding windows always get transformers' own masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ppatch.errors import UsageError

__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "VERIFIED_ARCHITECTURES",
    "Architecture",
    "UnsupportedModelError",
    "architecture_of",
]

# The attention implementations the matrix runs; "ppatch_grouped_sdpa" is SDPA during a call.
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager", "ppatch_grouped_sdpa")


@dataclass(frozen=True)
class Architecture:
    """A causal LM class proven to run patches right, and the speed-ups proven for it."""

    model_class: str
    grouped_sdpa: bool
    prepared_mask: bool


VERIFIED_ARCHITECTURES: dict[str, Architecture] = {
    architecture.model_class: architecture
    for architecture in (
        Architecture("LlamaForCausalLM", grouped_sdpa=True, prepared_mask=True),
        Architecture("MistralForCausalLM", grouped_sdpa=True, prepared_mask=True),
        Architecture("Qwen2ForCausalLM", grouped_sdpa=True, prepared_mask=True),
        Architecture("Qwen3ForCausalLM", grouped_sdpa=True, prepared_mask=True),
        Architecture("MixtralForCausalLM", grouped_sdpa=True, prepared_mask=True),
        Architecture("Phi3ForCausalLM", grouped_sdpa=True, prepared_mask=True),
        Architecture("Gemma2ForCausalLM", grouped_sdpa=True, prepared_mask=True),
        Architecture("Gemma3ForCausalLM", grouped_sdpa=True, prepared_mask=True),
        Architecture("GPT2LMHeadModel", grouped_sdpa=True, prepared_mask=True),
        Architecture("GPTNeoXForCausalLM", grouped_sdpa=True, prepared_mask=True),
        Architecture("OPTForCausalLM", grouped_sdpa=True, prepared_mask=False),
        Architecture("FalconForCausalLM", grouped_sdpa=False, prepared_mask=False),
    )
}


class UnsupportedModelError(UsageError):
    """ppatch has not proven that it applies patches right to this model, so it refuses it."""


def architecture_of(model: Any) -> Architecture:
    """The verified architecture `model` is, or `UnsupportedModelError` saying why it is not."""
    name = type(model).__name__
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModelError(
            f"cannot apply patches to {name}: it is an encoder-decoder model, and ppatch patches "
            "decoder-only causal language models"
        )
    architecture = VERIFIED_ARCHITECTURES.get(name)
    if architecture is None:
        verified = ", ".join(sorted(VERIFIED_ARCHITECTURES))
        raise UnsupportedModelError(
            f"cannot apply patches to {name}: ppatch has not verified that its cached prefix "
            f"equals prompt tuning on this architecture (verified: {verified})"
        )
    implementation = getattr(config, "_attn_implementation", None)
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise UnsupportedModelError(
            f"cannot apply patches to {name} with attention implementation {implementation!r}: "
            "ppatch has verified only 'sdpa' and 'eager' (load the model with "
            "attn_implementation='sdpa')"
        )
    return architecture
