"""PatchedModel equals the plain concatenation `cat([prompt, embed(input_ids)])`, PEFT's semantics.

The reference below is the obvious implementation, with no cache tricks: the virtual tokens'
embeddings in front of the token embeddings and the attention mask extended with ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from ppatch.errors import UsageError
from ppatch.runtime.compat import output_cache
from ppatch.runtime.patched_model import AppliedPatch, PatchedModel

TOLERANCE = 1e-5
PROMPTS = ["hello world", "the big red dog ran to the house and sat on a mat", "why"]


def reference_inputs(
    model: Any, embeddings: np.ndarray, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    batch = input_ids.shape[0]
    virtual = torch.from_numpy(embeddings).to(model.dtype)
    tokens = model.get_input_embeddings()(input_ids)
    inputs_embeds = torch.cat([virtual.expand(batch, -1, -1), tokens], dim=1)
    mask = torch.cat([attention_mask.new_ones(batch, embeddings.shape[0]), attention_mask], dim=1)
    return inputs_embeds, mask


def reference_logits(model, embeddings, input_ids, attention_mask) -> torch.Tensor:
    inputs_embeds, mask = reference_inputs(model, embeddings, input_ids, attention_mask)
    with torch.no_grad():
        logits = model(inputs_embeds=inputs_embeds, attention_mask=mask).logits
    return logits[:, embeddings.shape[0] :]


def reference_generate(model, embeddings, input_ids, attention_mask, **kwargs) -> Any:
    inputs_embeds, mask = reference_inputs(model, embeddings, input_ids, attention_mask)
    with torch.no_grad():
        return model.generate(inputs_embeds=inputs_embeds, attention_mask=mask, **kwargs)


def encode(tokenizer, prompts: list[str], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, padding_side=side)
    return encoded["input_ids"], encoded["attention_mask"]


@pytest.fixture
def patched(tiny_model, tiny_tokenizer, prompt_embeddings) -> PatchedModel:
    return PatchedModel(
        tiny_model, [AppliedPatch.from_array(prompt_embeddings)], tokenizer=tiny_tokenizer
    )


@pytest.mark.parametrize(
    ("prompts", "side"),
    [
        (PROMPTS[:1], "left"),
        (PROMPTS, "left"),
        (PROMPTS, "right"),
    ],
    ids=["single", "batch-left-padded", "batch-right-padded"],
)
def test_logits_equal_the_concatenation(
    patched, tiny_model, tiny_tokenizer, prompt_embeddings, prompts, side
) -> None:
    input_ids, mask = encode(tiny_tokenizer, prompts, side)
    assert bool((input_ids == tiny_tokenizer.bos_token_id).any(dim=1).all())  # BOS is in there

    with torch.no_grad():
        logits = patched(input_ids=input_ids, attention_mask=mask).logits
    expected = reference_logits(tiny_model, prompt_embeddings, input_ids, mask)

    assert logits.shape == expected.shape
    real = mask.bool()
    torch.testing.assert_close(logits[real], expected[real], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("use_cache", [True, False])
def test_the_output_carries_a_cache_only_when_asked(
    patched, tiny_model, tiny_tokenizer, prompt_embeddings, use_cache
) -> None:
    input_ids, mask = encode(tiny_tokenizer, PROMPTS, "left")
    with torch.no_grad():
        output = patched(input_ids=input_ids, attention_mask=mask, use_cache=use_cache)
        bare = tiny_model(input_ids=input_ids, attention_mask=mask, use_cache=use_cache)

    assert list(output.keys()) == list(bare.keys())
    cache = output_cache(output)
    if use_cache:
        assert cache.get_seq_length() == prompt_embeddings.shape[0] + input_ids.shape[1]
    else:
        assert cache is None
    expected = reference_logits(tiny_model, prompt_embeddings, input_ids, mask)
    real = mask.bool()
    torch.testing.assert_close(output.logits[real], expected[real], atol=TOLERANCE, rtol=0)


def test_patches_change_the_output(patched, tiny_model, tiny_tokenizer) -> None:
    input_ids, mask = encode(tiny_tokenizer, PROMPTS[:1], "left")
    with torch.no_grad():
        bare = tiny_model(input_ids=input_ids, attention_mask=mask).logits
        patched_logits = patched(input_ids=input_ids, attention_mask=mask).logits
    assert (bare - patched_logits).abs().max() > 1e-3


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["single", "batch-left-padded"])
def test_greedy_generation_equals_the_concatenation(
    patched, tiny_model, tiny_tokenizer, prompt_embeddings, prompts
) -> None:
    input_ids, mask = encode(tiny_tokenizer, prompts, "left")
    settings = {
        "max_new_tokens": 12,
        "do_sample": False,
        "pad_token_id": 0,
        "output_logits": True,
        "return_dict_in_generate": True,
    }
    with torch.no_grad():
        ours = patched.generate(input_ids=input_ids, attention_mask=mask, **settings)
    expected = reference_generate(tiny_model, prompt_embeddings, input_ids, mask, **settings)

    assert torch.equal(ours.sequences[:, : input_ids.shape[1]], input_ids)
    assert torch.equal(ours.sequences[:, input_ids.shape[1] :], expected.sequences)
    for step, (mine, theirs) in enumerate(zip(ours.logits, expected.logits, strict=True)):
        torch.testing.assert_close(mine, theirs, atol=TOLERANCE, rtol=0, msg=f"step {step}")


def test_sampling_with_a_seed_equals_the_concatenation(
    patched, tiny_model, tiny_tokenizer, prompt_embeddings
) -> None:
    input_ids, mask = encode(tiny_tokenizer, PROMPTS, "left")
    settings = {"max_new_tokens": 8, "do_sample": True, "temperature": 0.9, "pad_token_id": 0}
    torch.manual_seed(7)
    ours = patched.generate(input_ids=input_ids, attention_mask=mask, **settings)
    torch.manual_seed(7)
    expected = reference_generate(tiny_model, prompt_embeddings, input_ids, mask, **settings)
    assert torch.equal(ours[:, input_ids.shape[1] :], expected)


def test_beam_search_with_several_sequences_equals_the_concatenation(
    patched, tiny_model, tiny_tokenizer, prompt_embeddings
) -> None:
    input_ids, mask = encode(tiny_tokenizer, PROMPTS[:2], "left")
    settings = {"max_new_tokens": 6, "num_beams": 3, "num_return_sequences": 2, "pad_token_id": 0}
    ours = patched.generate(input_ids=input_ids, attention_mask=mask, **settings)
    expected = reference_generate(tiny_model, prompt_embeddings, input_ids, mask, **settings)
    assert ours.shape[0] == 4
    assert torch.equal(ours[:, input_ids.shape[1] :], expected)


def test_generation_from_inputs_embeds_equals_the_concatenation(
    patched, tiny_model, tiny_tokenizer, prompt_embeddings
) -> None:
    input_ids, mask = encode(tiny_tokenizer, PROMPTS, "left")
    token_embeddings = tiny_model.get_input_embeddings()(input_ids).detach()
    settings = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    ours = patched.generate(inputs_embeds=token_embeddings, attention_mask=mask, **settings)
    expected = reference_generate(tiny_model, prompt_embeddings, input_ids, mask, **settings)
    assert torch.equal(ours, expected)


def test_loss_counts_the_first_label_from_the_last_virtual_token(
    patched, tiny_model, tiny_tokenizer, prompt_embeddings
) -> None:
    input_ids, mask = encode(tiny_tokenizer, PROMPTS, "right")
    labels = input_ids.masked_fill(mask == 0, -100)
    inputs_embeds, full_mask = reference_inputs(tiny_model, prompt_embeddings, input_ids, mask)
    virtual_labels = torch.full((labels.shape[0], prompt_embeddings.shape[0]), -100)
    with torch.no_grad():
        expected = tiny_model(
            inputs_embeds=inputs_embeds,
            attention_mask=full_mask,
            labels=torch.cat([virtual_labels, labels], dim=1),
        ).loss
        output = patched(input_ids=input_ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(output.loss, expected, atol=TOLERANCE, rtol=0)
    assert output["loss"] is output.loss


def test_composed_patches_equal_their_concatenation(
    tiny_model, tiny_tokenizer, prompt_embeddings, second_embeddings
) -> None:
    first = AppliedPatch.from_array(prompt_embeddings, name="acme/first")
    second = AppliedPatch.from_array(second_embeddings, name="acme/second")
    composed = PatchedModel(tiny_model, [first, second])
    input_ids, mask = encode(tiny_tokenizer, PROMPTS, "left")
    concatenated = np.concatenate([prompt_embeddings, second_embeddings])

    assert composed.num_virtual_tokens == 8
    with torch.no_grad():
        logits = composed(input_ids=input_ids, attention_mask=mask).logits
        reversed_logits = PatchedModel(tiny_model, [second, first])(
            input_ids=input_ids, attention_mask=mask
        ).logits
    expected = reference_logits(tiny_model, concatenated, input_ids, mask)
    torch.testing.assert_close(logits, expected, atol=TOLERANCE, rtol=0)
    assert (reversed_logits - expected).abs().max() > 1e-3  # the order is part of the result


def test_without_patches_the_model_runs_bare(tiny_model, tiny_tokenizer) -> None:
    bare = PatchedModel(tiny_model, [], tokenizer=tiny_tokenizer)
    input_ids, mask = encode(tiny_tokenizer, PROMPTS, "left")
    settings = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": 0}
    assert bare.num_virtual_tokens == 0
    assert torch.equal(
        bare.generate(input_ids=input_ids, attention_mask=mask, **settings),
        tiny_model.generate(input_ids=input_ids, attention_mask=mask, **settings),
    )


def test_complete_decodes_only_the_new_text(patched, tiny_model, tiny_tokenizer) -> None:
    completions = patched.complete(PROMPTS, max_new_tokens=4, do_sample=False)
    input_ids, mask = encode(tiny_tokenizer, PROMPTS, "left")
    sequences = patched.generate(
        input_ids=input_ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0
    )
    expected = tiny_tokenizer.batch_decode(
        sequences[:, input_ids.shape[1] :], skip_special_tokens=True
    )
    assert completions == expected
    assert len(completions) == len(PROMPTS)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda model, ids: model.generate(input_ids=ids, cache=object()), "cache="),
        (lambda model, ids: model.generate(input_ids=ids, past_key_values=object()), "past_key"),
        (lambda model, ids: model.generate(input_ids=ids, use_cache=False), "use_cache=False"),
        (lambda model, ids: model.generate(), "input_ids or inputs_embeds"),
        (lambda model, ids: model.generate(ids, input_ids=ids), "not both"),
        (lambda model, ids: model(input_ids=ids[0]), "batched"),
        (lambda model, ids: model(input_ids=ids, attention_mask=ids[0]), "2-D"),
    ],
    ids=["cache", "past-key-values", "no-cache", "no-input", "twice", "unbatched", "mask-1d"],
)
def test_bad_calls_are_refused_with_a_clear_error(patched, tiny_tokenizer, call, message) -> None:
    input_ids, _ = encode(tiny_tokenizer, PROMPTS[:1], "left")
    with pytest.raises(UsageError, match=message):
        call(patched, input_ids)


def test_a_patch_for_another_hidden_size_is_refused(tiny_model) -> None:
    wrong = AppliedPatch.from_array(np.zeros((4, 48), dtype=np.float32), name="acme/wide")
    with pytest.raises(UsageError, match=r"'acme/wide'.*hidden size 48.*32"):
        PatchedModel(tiny_model, [wrong])


@pytest.mark.parametrize("shape", [(0, 32), (32,), (2, 0)], ids=["no-tokens", "1-d", "no-width"])
def test_embeddings_of_a_bad_shape_are_refused(shape) -> None:
    with pytest.raises(UsageError, match="num_virtual_tokens, hidden_size"):
        AppliedPatch.from_array(np.zeros(shape, dtype=np.float32))


def test_position_ids_given_for_the_prompt_follow_the_virtual_tokens(
    patched, tiny_model, tiny_tokenizer, prompt_embeddings
) -> None:
    input_ids, mask = encode(tiny_tokenizer, PROMPTS, "left")
    # Positions derived from the mask, as generate does: pads do not count.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    virtual = prompt_embeddings.shape[0]
    inputs_embeds, full_mask = reference_inputs(tiny_model, prompt_embeddings, input_ids, mask)
    full_positions = torch.cat(
        [torch.arange(virtual).expand(len(PROMPTS), -1), positions + virtual], dim=1
    )
    with torch.no_grad():
        expected = tiny_model(
            inputs_embeds=inputs_embeds, attention_mask=full_mask, position_ids=full_positions
        ).logits[:, virtual:]
        ours = patched(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits
    real = mask.bool()
    torch.testing.assert_close(ours[real], expected[real], atol=TOLERANCE, rtol=0)


def test_generate_takes_hugging_faces_positional_arguments(patched, tiny_tokenizer) -> None:
    from transformers import GenerationConfig

    input_ids, _ = encode(tiny_tokenizer, PROMPTS[:1], "left")
    settings = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": 0}
    expected = patched.generate(input_ids=input_ids, **settings)
    assert torch.equal(patched.generate(inputs=input_ids, **settings), expected)
    assert torch.equal(patched.generate(input_ids, GenerationConfig(**settings)), expected)


def test_a_model_that_defaults_to_a_static_cache_still_generates(
    patched, tiny_model, tiny_tokenizer, prompt_embeddings, monkeypatch
) -> None:
    input_ids, mask = encode(tiny_tokenizer, PROMPTS[:1], "left")
    settings = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": 0}
    expected = reference_generate(tiny_model, prompt_embeddings, input_ids, mask, **settings)
    monkeypatch.setattr(tiny_model.generation_config, "cache_implementation", "static")
    ours = patched.generate(input_ids=input_ids, attention_mask=mask, **settings)
    assert torch.equal(ours[:, input_ids.shape[1] :], expected)


def test_asking_for_a_static_cache_is_refused(patched, tiny_tokenizer) -> None:
    input_ids, _ = encode(tiny_tokenizer, PROMPTS[:1], "left")
    with pytest.raises(UsageError, match="cache_implementation='static' cannot be combined"):
        patched.generate(input_ids=input_ids, cache_implementation="static")


def test_sliding_window_layers_equal_the_concatenation(prompt_embeddings) -> None:
    """Mistral-style layers keep their own window bookkeeping; the prefix fills them by update."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=8,  # shorter than virtual tokens + prompt: the window really slides
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = MistralForCausalLM(config).eval()
    patched = PatchedModel(model, [AppliedPatch.from_array(prompt_embeddings)])
    input_ids = torch.randint(3, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(input_ids)
    input_ids[0, :3], mask[0, :3] = 0, 0
    settings = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}

    with torch.no_grad():
        logits = patched(input_ids=input_ids, attention_mask=mask).logits
        tokens = patched.generate(input_ids=input_ids, attention_mask=mask, **settings)
    expected = reference_logits(model, prompt_embeddings, input_ids, mask)
    real = mask.bool()
    torch.testing.assert_close(logits[real], expected[real], atol=TOLERANCE, rtol=0)
    expected_tokens = reference_generate(model, prompt_embeddings, input_ids, mask, **settings)
    assert torch.equal(tokens[:, input_ids.shape[1] :], expected_tokens)


def logits_and_decoder_masks(
    patched: PatchedModel, model: Any, input_ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A patched forward pass's logits, and the attention masks `model`'s decoder stack got."""
    seen: list[torch.Tensor] = []

    def record(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        seen.append(kwargs["attention_mask"])

    handle = model.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.no_grad():
            logits = patched(input_ids=input_ids, attention_mask=mask).logits
    finally:
        handle.remove()
    return logits, seen


@pytest.mark.parametrize(
    ("prompts", "batch_rows"), [(PROMPTS[:1] * 3, 1), (PROMPTS, 3)], ids=["unpadded", "padded"]
)
def test_sdpa_models_get_one_additive_mask_made_once(
    patched, tiny_model, tiny_tokenizer, prompt_embeddings, prompts, batch_rows
) -> None:
    input_ids, mask = encode(tiny_tokenizer, prompts, "left")
    virtual, length = prompt_embeddings.shape[0], input_ids.shape[1]
    patched.prefix()  # computed before watching: one pass per call from here
    logits, masks = logits_and_decoder_masks(patched, tiny_model, input_ids, mask)

    assert tiny_model.config._attn_implementation == "sdpa"
    (given,) = masks
    # Not transformers' boolean mask per row: additive, and shared by all rows when unpadded.
    assert given.dtype == torch.float32
    assert given.shape == (batch_rows, 1, length, virtual + length)
    expected = reference_logits(tiny_model, prompt_embeddings, input_ids, mask)
    real = mask.bool()
    torch.testing.assert_close(logits[real], expected[real], atol=TOLERANCE, rtol=0)


def test_eager_attention_gets_the_two_dimensional_mask(
    tiny_model_dir, tiny_tokenizer, prompt_embeddings
) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, local_files_only=True, attn_implementation="eager"
    ).eval()
    patched = PatchedModel(model, [AppliedPatch.from_array(prompt_embeddings)])
    input_ids, mask = encode(tiny_tokenizer, PROMPTS, "left")
    patched.prefix()
    logits, masks = logits_and_decoder_masks(patched, model, input_ids, mask)

    (given,) = masks
    assert given.shape == (3, prompt_embeddings.shape[0] + input_ids.shape[1])
    expected = reference_logits(model, prompt_embeddings, input_ids, mask)
    real = mask.bool()
    torch.testing.assert_close(logits[real], expected[real], atol=TOLERANCE, rtol=0)
