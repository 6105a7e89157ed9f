"""Grouped-query SDPA under a mask: same results as transformers' SDPA, without the head copies."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from transformers import AttentionInterface
from transformers.integrations import sdpa_attention
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from ppatch.runtime.attention import ATTENTION_NAME, grouped_attention_for, grouped_sdpa_attention
from ppatch.runtime.patched_model import AppliedPatch, PatchedModel

BATCH, HEADS, KV_HEADS, HEAD_DIM = 3, 4, 2, 8
QUERIES, VIRTUAL = 5, 4
KEYS = VIRTUAL + QUERIES


def attention_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(BATCH, HEADS, QUERIES, HEAD_DIM, generator=generator)
    key = torch.randn(BATCH, KV_HEADS, KEYS, HEAD_DIM, generator=generator)
    value = torch.randn(BATCH, KV_HEADS, KEYS, HEAD_DIM, generator=generator)
    return query, key, value


def prefix_mask(padding: int = 0) -> torch.Tensor:
    """Boolean `[batch, 1, queries, keys]`: the prefix, then causal keys; row 1 left-padded."""
    queries = torch.arange(QUERIES)[:, None] + VIRTUAL
    allowed = (queries >= torch.arange(KEYS)[None, :]).expand(BATCH, 1, QUERIES, KEYS).clone()
    allowed[1, :, :, VIRTUAL : VIRTUAL + padding] = False
    return allowed


def module(groups: int = HEADS // KV_HEADS) -> Any:
    return SimpleNamespace(num_key_value_groups=groups, is_causal=True)


@pytest.mark.parametrize("padding", [0, 2], ids=["unpadded", "padded"])
@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_equals_transformers_sdpa_under_a_mask(padding: int, kind: str) -> None:
    query, key, value = attention_inputs()
    mask = prefix_mask(padding)
    if kind == "additive":
        mask = torch.zeros(mask.shape).masked_fill_(~mask, torch.finfo(torch.float32).min)

    ours, weights = grouped_sdpa_attention(module(), query, key, value, mask, scaling=0.3)
    theirs, _ = sdpa_attention_forward(module(), query, key, value, mask, scaling=0.3)

    assert weights is None
    assert ours.shape == (BATCH, QUERIES, HEADS, HEAD_DIM)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_masked_grouped_heads_are_not_copied_per_query_head(monkeypatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("repeat_kv copied the key/value heads")

    monkeypatch.setattr(sdpa_attention, "repeat_kv", refuse)
    query, key, value = attention_inputs()

    output, _ = grouped_sdpa_attention(module(), query, key, value, prefix_mask())

    assert output.shape == (BATCH, QUERIES, HEADS, HEAD_DIM)


@pytest.mark.parametrize(
    "case",
    ["no mask", "one query", "no groups", "position bias"],
)
def test_other_calls_go_to_transformers_unchanged(monkeypatch, case: str) -> None:
    query, key, value = attention_inputs()
    mask: torch.Tensor | None = prefix_mask()
    kwargs: dict[str, Any] = {}
    groups = HEADS // KV_HEADS
    if case == "no mask":
        mask = None
    elif case == "one query":
        query, mask = query[:, :, -1:], mask[:, :, -1:]
    elif case == "no groups":
        groups = 1
        key, value = key.repeat_interleave(2, dim=1), value.repeat_interleave(2, dim=1)
    else:
        kwargs["position_bias"] = torch.zeros(1, HEADS, QUERIES, KEYS)
    calls: list[str] = []

    def recording(*args: Any, **inner: Any) -> Any:
        calls.append(case)
        return sdpa_attention_forward(*args, **inner)

    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", recording)

    ours, _ = grouped_sdpa_attention(module(groups), query, key, value, mask, **kwargs)

    assert calls == [case]
    theirs, _ = sdpa_attention_forward(module(groups), query, key, value, mask, **kwargs)
    torch.testing.assert_close(ours, theirs, atol=0, rtol=0)


def test_gradients_equal_transformers_sdpa() -> None:
    inputs = [tensor.requires_grad_() for tensor in attention_inputs(seed=3)]
    twins = [tensor.detach().clone().requires_grad_() for tensor in inputs]

    grouped_sdpa_attention(module(), *inputs, prefix_mask(1))[0].square().sum().backward()
    sdpa_attention_forward(module(), *twins, prefix_mask(1))[0].square().sum().backward()

    for ours, theirs in zip(inputs, twins, strict=True):
        assert ours.grad is not None and theirs.grad is not None
        torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-5, rtol=0)


def config_holder(implementation: str) -> Any:
    from transformers import LlamaConfig

    config = LlamaConfig(num_hidden_layers=1, hidden_size=8, num_attention_heads=2)
    config._attn_implementation_internal = implementation
    return SimpleNamespace(config=config)


def test_switches_an_sdpa_model_for_the_block_and_back() -> None:
    model = config_holder("sdpa")

    with grouped_attention_for(model):
        assert model.config._attn_implementation == ATTENTION_NAME
        assert AttentionInterface().get_interface(ATTENTION_NAME, None) is grouped_sdpa_attention

    assert model.config._attn_implementation == "sdpa"


def test_restores_the_model_when_the_block_raises() -> None:
    model = config_holder("sdpa")

    with pytest.raises(RuntimeError, match="boom"), grouped_attention_for(model):
        raise RuntimeError("boom")

    assert model.config._attn_implementation == "sdpa"


def test_overlapping_blocks_restore_after_the_last_one() -> None:
    model = config_holder("sdpa")
    first, second = grouped_attention_for(model), grouped_attention_for(model)

    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert model.config._attn_implementation == ATTENTION_NAME  # the second is still running
    second.__exit__(None, None, None)

    assert model.config._attn_implementation == "sdpa"


def test_concurrent_blocks_leave_the_model_as_it_was() -> None:
    model = config_holder("sdpa")
    inside = threading.Barrier(8)
    seen: list[str] = []

    def patched_call() -> None:
        with grouped_attention_for(model):
            inside.wait(timeout=10)
            seen.append(model.config._attn_implementation)

    threads = [threading.Thread(target=patched_call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert seen == [ATTENTION_NAME] * 8
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("implementation", ["eager", "flex_attention"])
def test_models_on_other_implementations_are_left_alone(implementation: str) -> None:
    model = config_holder(implementation)

    with grouped_attention_for(model):
        assert model.config._attn_implementation == implementation

    assert model.config._attn_implementation == implementation


def test_patched_calls_use_it_and_leave_the_model_on_sdpa(
    tiny_model, tiny_tokenizer, prompt_embeddings, monkeypatch
) -> None:
    patched = PatchedModel(tiny_model, [AppliedPatch.from_array(prompt_embeddings)])
    encoded = tiny_tokenizer(
        ["hello world", "why"], return_tensors="pt", padding=True, padding_side="left"
    )
    during: list[str] = []
    original = grouped_sdpa_attention

    def watching(layer: Any, *args: Any, **kwargs: Any) -> Any:
        during.append(layer.config._attn_implementation)
        return original(layer, *args, **kwargs)

    with grouped_attention_for(tiny_model):  # registered now, so the watcher stays in place
        pass
    monkeypatch.setitem(AttentionInterface._global_mapping, ATTENTION_NAME, watching)
    with torch.no_grad():
        patched(**encoded)
        patched.generate(**encoded, max_new_tokens=2, do_sample=False)

    layers = tiny_model.config.num_hidden_layers
    assert during == [ATTENTION_NAME] * (layers * 3)  # forward, generate's prefill, one step
    assert tiny_model.config._attn_implementation == "sdpa"
