"""The prefix cache: computed once per (model, patch set, dtype, device), shared, never written."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

from ppatch.runtime.patched_model import AppliedPatch, PatchedModel
from ppatch.runtime.prefix import (
    PrefixStore,
    compute_prefix,
    embedding_width,
    full_attention_cache,
    grown_buffers,
)

PROMPTS = ["hello world", "the cat sat on the mat and ran to the big red house", "why"]


class ForwardsFromPositionZero:
    """Counts decoder passes that start with an empty cache: passes over the virtual tokens.

    Every patched request starts from the prefix, so only computing the prefix starts at 0.
    """

    def __init__(self, model: Any) -> None:
        self.count = 0
        self._handle = model.model.register_forward_pre_hook(self._seen, with_kwargs=True)

    def _seen(self, _module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is None or cache.get_seq_length() == 0:
            self.count += 1

    def remove(self) -> None:
        self._handle.remove()


def encode(tokenizer, prompts):
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    return encoded["input_ids"], encoded["attention_mask"]


def test_the_prefix_is_computed_once_for_every_call(
    tiny_model, tiny_tokenizer, prompt_embeddings
) -> None:
    patched = PatchedModel(
        tiny_model, [AppliedPatch.from_array(prompt_embeddings)], prefix_store=PrefixStore()
    )
    input_ids, mask = encode(tiny_tokenizer, PROMPTS)
    counter = ForwardsFromPositionZero(tiny_model)
    try:
        for prompts in (PROMPTS, PROMPTS[:1], PROMPTS):
            ids, prompt_mask = encode(tiny_tokenizer, prompts)
            patched.generate(
                input_ids=ids, attention_mask=prompt_mask, max_new_tokens=3, pad_token_id=0
            )
        with torch.no_grad():
            patched(input_ids=input_ids, attention_mask=mask)
        # A second PatchedModel with the same patch set on the same model shares the prefix.
        twin = PatchedModel(
            tiny_model, [AppliedPatch.from_array(prompt_embeddings)], prefix_store=patched._store
        )
        twin.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=2, pad_token_id=0)
    finally:
        counter.remove()
    assert counter.count == 1


def test_generation_leaves_the_shared_prefix_tensors_unchanged(
    tiny_model, tiny_tokenizer, prompt_embeddings
) -> None:
    patched = PatchedModel(
        tiny_model, [AppliedPatch.from_array(prompt_embeddings)], prefix_store=PrefixStore()
    )
    prefix = patched.prefix()
    before = [(keys.clone(), values.clone()) for keys, values in prefix.layers]
    input_ids, mask = encode(tiny_tokenizer, PROMPTS)

    patched.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=6, pad_token_id=0)
    patched.generate(
        input_ids=input_ids, attention_mask=mask, max_new_tokens=4, num_beams=2, pad_token_id=0
    )

    assert patched.prefix() is prefix
    for (keys, values), (old_keys, old_values) in zip(prefix.layers, before, strict=True):
        assert torch.equal(keys, old_keys)
        assert torch.equal(values, old_values)


def test_a_batch_cache_shares_the_prefix_memory(tiny_model, prompt_embeddings) -> None:
    prefix = compute_prefix(tiny_model, torch.from_numpy(prompt_embeddings))
    cache = prefix.cache_for_batch(16, tiny_model.config)

    assert cache.get_seq_length() == prompt_embeddings.shape[0]
    for layer, (keys, values) in zip(cache.layers, prefix.layers, strict=True):
        assert layer.keys.shape[0] == 16
        assert layer.keys.data_ptr() == keys.data_ptr()
        assert layer.values.data_ptr() == values.data_ptr()
        assert layer.keys.stride(0) == 0  # an expand view, not a copy


def test_the_prefix_is_recomputed_for_another_dtype(
    tiny_model, tiny_tokenizer, prompt_embeddings
) -> None:
    store = PrefixStore()
    patch = AppliedPatch.from_array(prompt_embeddings)
    wide_model = copy.deepcopy(tiny_model).to(torch.float64)
    narrow = PatchedModel(tiny_model, [patch], prefix_store=store).prefix()
    wide = PatchedModel(wide_model, [patch], prefix_store=store).prefix()

    assert narrow.layers[0][0].dtype == torch.float32
    assert wide.layers[0][0].dtype == torch.float64
    torch.testing.assert_close(wide.layers[0][0].float(), narrow.layers[0][0], atol=1e-5, rtol=0)


def test_clearing_a_model_forgets_its_prefixes(tiny_model, prompt_embeddings) -> None:
    store = PrefixStore()
    patched = PatchedModel(
        tiny_model, [AppliedPatch.from_array(prompt_embeddings)], prefix_store=store
    )
    first = patched.prefix()
    assert patched.prefix() is first
    store.clear(tiny_model)
    assert patched.prefix() is not first


@pytest.mark.parametrize(
    ("shape", "message"),
    [((0, 32), "num_virtual_tokens >= 1"), ((32,), "num_virtual_tokens >= 1"), ((3, 8), "8")],
    ids=["empty", "1-d", "narrow"],
)
def test_compute_prefix_refuses_embeddings_of_a_bad_shape(tiny_model, shape, message) -> None:
    with pytest.raises(ValueError, match=message):
        compute_prefix(tiny_model, torch.zeros(shape))


def test_a_prefix_from_another_model_is_refused(tiny_model, prompt_embeddings) -> None:
    from transformers import LlamaConfig

    prefix = compute_prefix(tiny_model, torch.from_numpy(prompt_embeddings))
    deeper = LlamaConfig(**{**tiny_model.config.to_dict(), "num_hidden_layers": 3})
    with pytest.raises(ValueError, match="3 layers but the prefix has 2"):
        prefix.cache_for_batch(1, deeper)


def test_different_embeddings_get_different_prefixes(tiny_model, prompt_embeddings) -> None:
    store = PrefixStore()
    one = PatchedModel(tiny_model, [AppliedPatch.from_array(prompt_embeddings)], prefix_store=store)
    other = PatchedModel(
        tiny_model, [AppliedPatch.from_array(np.flip(prompt_embeddings, 0))], prefix_store=store
    )
    assert not torch.equal(one.prefix().layers[0][0], other.prefix().layers[0][0])


def test_a_prefix_first_computed_under_inference_mode_is_a_plain_tensor(
    tiny_model, prompt_embeddings
) -> None:
    with torch.inference_mode():
        prefix = compute_prefix(tiny_model, torch.from_numpy(prompt_embeddings))
    assert not any(keys.is_inference() or values.is_inference() for keys, values in prefix.layers)


def _filled_cache(tiny_model, prompt_embeddings, batch: int) -> tuple[Any, Any]:
    prefix = compute_prefix(tiny_model, torch.from_numpy(prompt_embeddings))
    return prefix, prefix.cache_for_batch(batch, tiny_model.config)


def _states(batch: int, tokens: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # The tiny model: 2 key/value heads of width 8.
    return (
        torch.randn(batch, 2, tokens, 8, generator=generator),
        torch.randn(batch, 2, tokens, 8, generator=generator),
    )


def test_decoding_steps_append_in_place_and_hold_every_token(tiny_model, prompt_embeddings) -> None:
    prefix, cache = _filled_cache(tiny_model, prompt_embeddings, batch=3)
    layer = cache.layers[0]
    prefix_keys, prefix_values = prefix.layers[0]
    prompt = _states(3, 4, seed=1)
    layer.update(*prompt)
    start = layer.keys.data_ptr()
    steps = [_states(3, 1, seed=2 + step) for step in range(10)]
    for step in steps:
        keys, values = layer.update(*step)
        assert keys.data_ptr() == start  # written after the held tokens, not concatenated

    expected_keys = torch.cat(
        [prefix_keys.expand(3, -1, -1, -1), prompt[0], *(step[0] for step in steps)], dim=-2
    )
    expected_values = torch.cat(
        [prefix_values.expand(3, -1, -1, -1), prompt[1], *(step[1] for step in steps)], dim=-2
    )
    assert torch.equal(keys, expected_keys)
    assert torch.equal(values, expected_values)
    assert cache.get_seq_length() == prompt_embeddings.shape[0] + 4 + 10


def test_a_growing_layer_moves_to_a_bigger_buffer_when_full(tiny_model, prompt_embeddings) -> None:
    prefix, cache = _filled_cache(tiny_model, prompt_embeddings, batch=2)
    layer = cache.layers[0]
    added = [_states(2, 1, seed=step) for step in range(200)]
    for step in added:
        layer.update(*step)
    expected = torch.cat([prefix.layers[0][0].expand(2, -1, -1, -1), *(s[0] for s in added)], -2)
    assert torch.equal(layer.keys, expected)


def test_a_replaced_or_cropped_cache_keeps_growing_correctly(tiny_model, prompt_embeddings) -> None:
    prefix, cache = _filled_cache(tiny_model, prompt_embeddings, batch=2)
    layer = cache.layers[0]
    first, second, third = (_states(2, 3, seed=seed) for seed in (1, 2, 3))
    layer.update(*first)
    layer.update(*second)
    # Beam search replaces the tensors (no longer views of the buffers): rows swapped here.
    layer.batch_select_indices(torch.tensor([1, 0]))
    layer.update(*third)
    rows = torch.tensor([1, 0])
    wide_prefix = prefix.layers[0][0].expand(2, -1, -1, -1)
    expected = torch.cat([wide_prefix, first[0][rows], second[0][rows], third[0]], dim=-2)
    assert torch.equal(layer.keys, expected)

    # Cropping (assisted decoding) drops tokens; the next ones take their place.
    layer.crop(-3)
    fourth = _states(2, 2, seed=4)
    layer.update(*fourth)
    expected = torch.cat([wide_prefix, first[0][rows], second[0][rows], fourth[0]], dim=-2)
    assert torch.equal(layer.keys, expected)


def test_a_reset_cache_starts_empty(tiny_model, prompt_embeddings) -> None:
    _, cache = _filled_cache(tiny_model, prompt_embeddings, batch=1)
    layer = cache.layers[0]
    layer.update(*_states(1, 2, seed=1))
    cache.reset()
    fresh = _states(1, 2, seed=2)
    keys, values = layer.update(*fresh)
    assert torch.equal(keys, fresh[0])
    assert torch.equal(values, fresh[1])


def test_a_cache_grown_under_autograd_still_backpropagates(tiny_model, prompt_embeddings) -> None:
    _, cache = _filled_cache(tiny_model, prompt_embeddings, batch=1)
    layer = cache.layers[0]
    first = [tensor.requires_grad_() for tensor in _states(1, 2, seed=1)]
    keys, _ = layer.update(*first)
    squares = (keys * keys).sum()  # autograd keeps `keys` for the backward pass
    layer.update(*[tensor.requires_grad_() for tensor in _states(1, 1, seed=2)])
    squares.backward()
    assert first[0].grad is not None
    torch.testing.assert_close(first[0].grad, 2 * first[0].detach())


def test_an_exact_layer_holds_the_prefix_and_prompt_with_no_spare_room(
    tiny_model, prompt_embeddings
) -> None:
    prefix = compute_prefix(tiny_model, torch.from_numpy(prompt_embeddings))
    layer = prefix.cache_for_batch(3, tiny_model.config, "exact").layers[0]
    prompt = _states(3, 4, seed=1)

    keys, values = layer.update(*prompt)

    assert torch.equal(keys, torch.cat([prefix.layers[0][0].expand(3, -1, -1, -1), prompt[0]], -2))
    assert torch.equal(
        values, torch.cat([prefix.layers[0][1].expand(3, -1, -1, -1), prompt[1]], -2)
    )
    # What a forward pass's output holds on to: its keys and values, not a bigger buffer.
    assert keys.untyped_storage().nbytes() == keys.numel() * keys.element_size()
    assert layer.get_seq_length() == prompt_embeddings.shape[0] + 4


def test_a_transient_layer_returns_the_prefix_and_prompt_and_keeps_nothing(
    tiny_model, prompt_embeddings
) -> None:
    prefix = compute_prefix(tiny_model, torch.from_numpy(prompt_embeddings))
    cache = prefix.cache_for_batch(2, tiny_model.config, "transient")
    layer = cache.layers[0]
    prompt = _states(2, 3, seed=1)

    keys, values = layer.update(*prompt)

    assert torch.equal(keys, torch.cat([prefix.layers[0][0].expand(2, -1, -1, -1), prompt[0]], -2))
    assert torch.equal(
        values, torch.cat([prefix.layers[0][1].expand(2, -1, -1, -1), prompt[1]], -2)
    )
    assert cache.get_seq_length() == prompt_embeddings.shape[0]
    assert layer.keys.data_ptr() == prefix.layers[0][0].data_ptr()  # still the shared view


@pytest.mark.parametrize("layout", ["growing", "exact"])
def test_resetting_a_fresh_cache_leaves_the_shared_prefix_unchanged(
    tiny_model, prompt_embeddings, layout
) -> None:
    """Before 5.24 transformers reset a layer by zeroing its tensors: here, the prefix's views."""
    prefix = compute_prefix(tiny_model, torch.from_numpy(prompt_embeddings))
    before = [(keys.clone(), values.clone()) for keys, values in prefix.layers]
    cache = prefix.cache_for_batch(1, tiny_model.config, layout)
    cache.reset()
    assert cache.get_seq_length() == 0
    for (keys, values), (old_keys, old_values) in zip(prefix.layers, before, strict=True):
        assert torch.equal(keys, old_keys) and torch.equal(values, old_values)


@pytest.mark.parametrize(
    ("length", "spare", "capacity"),
    [(10, 32, 42), (64, 32, 96), (100, 32, 150), (101, 32, 151), (7, 0, 10), (1, 0, 1)],
)
def test_grown_buffers_keep_half_again_at_least_the_spare(length, spare, capacity) -> None:
    # Room for `length` columns plus max(length // 2, spare): reallocations stay O(log n).
    new = _states(3, 1, seed=1)
    keys, values = grown_buffers((None, None), new, held=0, length=length, spare=spare)
    assert keys.shape == values.shape == (3, 2, capacity, 8)
    assert keys.dtype == values.dtype == torch.float32


def test_grown_buffers_copy_the_held_columns_in_the_new_states_dtype() -> None:
    held = tuple(tensor.to(torch.float64) for tensor in _states(2, 5, seed=1))
    new = tuple(tensor.to(torch.float64) for tensor in _states(2, 1, seed=2))
    keys, values = grown_buffers(held, new, held=5, length=6, spare=4)
    assert keys.shape == values.shape == (2, 2, 10, 8)
    assert keys.dtype == values.dtype == torch.float64
    assert torch.equal(keys[:, :, :5], held[0]) and torch.equal(values[:, :, :5], held[1])
    # Nothing held (a fresh layer): nothing copied, whatever the stale tensors passed.
    empty = grown_buffers((None, None), new, held=0, length=1, spare=4)
    assert empty[0].shape == (2, 2, 5, 8)


def test_the_prefix_holds_plain_tensors_and_the_last_virtual_tokens_logits(
    tiny_model, prompt_embeddings
) -> None:
    embeddings = torch.from_numpy(prompt_embeddings)
    with torch.enable_grad():
        prefix = compute_prefix(tiny_model, embeddings)
    # Shared by every request: nothing may track gradients into it or write through it.
    assert not any(keys.requires_grad or values.requires_grad for keys, values in prefix.layers)
    assert prefix.num_virtual_tokens == 5
    with torch.no_grad():
        expected = tiny_model(inputs_embeds=embeddings.unsqueeze(0)).logits[:, -1, :]
    assert prefix.next_token_logits.shape == (1, tiny_model.config.vocab_size)
    torch.testing.assert_close(prefix.next_token_logits, expected, atol=1e-5, rtol=0)


def test_a_model_saved_with_use_cache_off_still_gets_its_prefix(
    tiny_model, tiny_tokenizer, prompt_embeddings
) -> None:
    from tests.client.runtime.test_patched_model import TOLERANCE, reference_logits

    model = copy.deepcopy(tiny_model)
    model.config.use_cache = False  # as training checkpoints often are
    prefix = compute_prefix(model, torch.from_numpy(prompt_embeddings))
    assert [keys.shape[-2] for keys, _ in prefix.layers] == [5, 5]
    patched = PatchedModel(model, [AppliedPatch.from_array(prompt_embeddings)])
    input_ids, mask = encode(tiny_tokenizer, PROMPTS)
    with torch.no_grad():
        logits = patched(input_ids=input_ids, attention_mask=mask).logits
    expected = reference_logits(model, prompt_embeddings, input_ids, mask)
    real = mask.bool()
    torch.testing.assert_close(logits[real], expected[real], atol=TOLERANCE, rtol=0)


def test_a_prefix_longer_than_the_sliding_window_keeps_every_key() -> None:
    """A sliding-window layer would keep only the last `window - 1` virtual tokens' keys."""
    from transformers import MistralConfig, MistralForCausalLM

    from tests.client.runtime.test_patched_model import TOLERANCE, reference_logits

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=4,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = MistralForCausalLM(config).eval()
    embeddings = np.random.default_rng(3).normal(size=(6, 32)).astype(np.float32)
    prefix = compute_prefix(model, torch.from_numpy(embeddings))
    assert [keys.shape[-2] for keys, _ in prefix.layers] == [6, 6]
    patched = PatchedModel(model, [AppliedPatch.from_array(embeddings)])
    input_ids = torch.randint(3, 64, (1, 5), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(input_ids)
    with torch.no_grad():
        logits = patched(input_ids=input_ids, attention_mask=mask).logits
    expected = reference_logits(model, embeddings, input_ids, mask)
    torch.testing.assert_close(logits, expected, atol=TOLERANCE, rtol=0)


def test_clearing_forgets_one_models_prefixes_or_every_models(
    tiny_model, prompt_embeddings
) -> None:
    store = PrefixStore()
    patch = AppliedPatch.from_array(prompt_embeddings)
    other_model = copy.deepcopy(tiny_model)
    first = PatchedModel(tiny_model, [patch], prefix_store=store)
    second = PatchedModel(other_model, [patch], prefix_store=store)
    kept, cleared = first.prefix(), second.prefix()
    store.clear(other_model)
    assert first.prefix() is kept and second.prefix() is not cleared
    store.clear(copy.deepcopy(tiny_model))  # a model the store never saw: nothing to forget
    assert first.prefix() is kept
    store.clear()
    assert first.prefix() is not kept


def test_every_cache_of_a_layout_uses_one_layer_class(tiny_model, prompt_embeddings) -> None:
    prefix = compute_prefix(tiny_model, torch.from_numpy(prompt_embeddings))
    for layout in ("growing", "exact", "transient"):
        first = prefix.cache_for_batch(1, tiny_model.config, layout).layers[0]
        second = prefix.cache_for_batch(2, tiny_model.config, layout).layers[1]
        assert type(first) is type(second)  # made once, not a new class per request


def test_a_growing_layer_reallocates_only_when_full(tiny_model, prompt_embeddings) -> None:
    _, cache = _filled_cache(tiny_model, prompt_embeddings, batch=1)
    layer = cache.layers[0]
    layer.update(*_states(1, 4, seed=1))  # 5 virtual + 4 prompt = 9 held: room for 9 + 32
    start = layer.keys.data_ptr()
    for step in range(32):
        layer.update(*_states(1, 1, seed=10 + step))
    assert layer.keys.shape[-2] == 41 and layer.keys.data_ptr() == start  # exactly full
    layer.update(*_states(1, 1, seed=99))
    assert layer.keys.shape[-2] == 42 and layer.keys.data_ptr() != start


def test_a_batch_narrowed_by_slicing_grows_from_its_own_rows(tiny_model, prompt_embeddings) -> None:
    # DynamicCache.batch_split slices the batch: views at the same address, fewer rows.
    prefix, cache = _filled_cache(tiny_model, prompt_embeddings, batch=2)
    layer = cache.layers[0]
    prompt = _states(2, 3, seed=1)
    layer.update(*prompt)
    layer.keys, layer.values = layer.keys[:1], layer.values[:1]
    step = _states(1, 1, seed=2)
    keys, values = layer.update(*step)
    assert torch.equal(keys, torch.cat([prefix.layers[0][0], prompt[0][:1], step[0]], dim=-2))
    assert torch.equal(values, torch.cat([prefix.layers[0][1], prompt[1][:1], step[1]], dim=-2))


def test_keys_replaced_by_another_buffers_view_are_grown_from(
    tiny_model, prompt_embeddings
) -> None:
    # Replacement tensors laid out exactly like the layer's buffers, at another address.
    _, cache = _filled_cache(tiny_model, prompt_embeddings, batch=2)
    layer = cache.layers[0]
    layer.update(*_states(2, 3, seed=1))
    replaced = []
    for seed, held in ((5, layer.keys), (6, layer.values)):
        tensor = torch.empty_strided(held.shape, held.stride())
        tensor.copy_(torch.randn(held.shape, generator=torch.Generator().manual_seed(seed)))
        replaced.append(tensor)
    layer.keys, layer.values = replaced
    step = _states(2, 1, seed=2)
    keys, values = layer.update(*step)
    assert torch.equal(keys, torch.cat([replaced[0], step[0]], dim=-2))
    assert torch.equal(values, torch.cat([replaced[1], step[1]], dim=-2))


def test_decoding_after_an_autograd_step_grows_correctly(tiny_model, prompt_embeddings) -> None:
    prefix, cache = _filled_cache(tiny_model, prompt_embeddings, batch=1)
    layer = cache.layers[0]
    first = [tensor.requires_grad_() for tensor in _states(1, 2, seed=1)]
    layer.update(*first)
    second = _states(1, 1, seed=2)
    with torch.no_grad():
        keys, values = layer.update(*second)
    expected = torch.cat([prefix.layers[0][0], first[0].detach(), second[0]], dim=-2)
    assert torch.equal(keys, expected)
    expected = torch.cat([prefix.layers[0][1], first[1].detach(), second[1]], dim=-2)
    assert torch.equal(values, expected)


def test_keys_alone_requiring_grad_still_backpropagate(tiny_model, prompt_embeddings) -> None:
    # Either tensor under autograd means the views may be saved for backward: no writes into them.
    _, cache = _filled_cache(tiny_model, prompt_embeddings, batch=1)
    layer = cache.layers[0]
    first_keys, first_values = _states(1, 2, seed=1)
    first_keys.requires_grad_()
    keys, _ = layer.update(first_keys, first_values)
    squares = (keys * keys).sum()
    later_keys, later_values = _states(1, 1, seed=2)
    layer.update(later_keys.requires_grad_(), later_values)
    squares.backward()
    torch.testing.assert_close(first_keys.grad, 2 * first_keys.detach())


def test_grown_buffers_are_made_on_the_new_states_device() -> None:
    new = (torch.empty(1, 2, 3, 8, device="meta"), torch.empty(1, 2, 3, 8, device="meta"))
    keys, values = grown_buffers((None, None), new, held=0, length=3, spare=4)
    assert keys.device.type == values.device.type == "meta"


def test_a_model_with_non_key_value_cache_layers_is_refused(tiny_model) -> None:
    config = copy.deepcopy(tiny_model.config)
    config.layer_types = ["full_attention", "linear_attention"]  # a hybrid recurrent model
    with pytest.raises(ValueError) as refused:
        full_attention_cache(config)
    assert str(refused.value) == (
        "the model's cache layer LinearAttentionLayer is not a key/value layer, "
        "so a prompt-tuning prefix cannot be cached for it"
    )


def test_a_model_cast_in_place_gets_a_prefix_of_its_new_dtype(
    tiny_model, prompt_embeddings
) -> None:
    store = PrefixStore()
    model = copy.deepcopy(tiny_model)
    patched = PatchedModel(model, [AppliedPatch.from_array(prompt_embeddings)], prefix_store=store)
    narrow = patched.prefix()
    model.to(torch.float64)  # the same object, now float64
    wide = patched.prefix()
    assert (narrow.layers[0][0].dtype, wide.layers[0][0].dtype) == (torch.float32, torch.float64)


def test_a_model_without_an_embedding_matrix_is_refused() -> None:
    class EmbeddedElsewhere:  # input embeddings computed by a function, not a lookup table
        def get_input_embeddings(self) -> Any:
            return torch.nn.Identity()

    with pytest.raises(TypeError) as refused:
        embedding_width(EmbeddedElsewhere())  # type: ignore[arg-type]
    assert str(refused.value) == "EmbeddedElsewhere has no input embedding matrix"
