"""Scoring and sampling with a soft prompt in front of a frozen model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ppatch.errors import NotFoundError, UsageError
from ppatch.train.modeling import (
    answer_logprobs,
    check_same_vocabulary,
    encode,
    generate,
    load_model,
)


def test_answer_logprobs_score_answer_tokens_only(tiny_model: Path) -> None:
    """Equal to scoring the answer tokens by hand after the prefix; prompt tokens add nothing."""
    loaded = load_model(tiny_model, "cpu")
    prefix = torch.randn(5, loaded.hidden_size, generator=torch.Generator().manual_seed(0))
    prompts = [encode(loaded, "q : how do i fix a car ? a :"), encode(loaded, "the cat sat")]
    answers = [
        encode(loaded, "first you find a map .", special=False),
        encode(loaded, "on the mat .", special=False),
    ]
    total, counts = answer_logprobs(loaded, prefix, prompts, answers)
    assert counts.tolist() == [len(a) for a in answers]
    for row, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        ids = torch.tensor([prompt + answer])
        embeds = torch.cat([prefix[None], loaded.model.get_input_embeddings()(ids)], dim=1)
        logprobs = torch.log_softmax(loaded.model(inputs_embeds=embeds).logits[0], dim=-1)
        start = prefix.shape[0] + len(prompt)
        expected = sum(float(logprobs[start + i - 1, token]) for i, token in enumerate(answer))
        assert float(total[row]) == pytest.approx(expected, abs=1e-4)


def test_answer_logprobs_without_prefix(tiny_model: Path) -> None:
    loaded = load_model(tiny_model, "cpu")
    prompt = encode(loaded, "the dog", special=False)
    answer = encode(loaded, "ran .", special=False)
    total, _ = answer_logprobs(loaded, None, [prompt], [answer])
    logprobs = torch.log_softmax(
        loaded.model(input_ids=torch.tensor([prompt + answer])).logits[0], -1
    )
    expected = float(logprobs[1, answer[0]] + logprobs[2, answer[1]])
    assert float(total[0]) == pytest.approx(expected, abs=1e-4)


def test_generation_is_deterministic_for_a_seed(tiny_model: Path) -> None:
    loaded = load_model(tiny_model, "cpu")
    prompts = [encode(loaded, "q : say something about the cook . a :"), encode(loaded, "the cat")]
    prefix = torch.zeros(3, loaded.hidden_size)
    kwargs = {"samples": 3, "max_new_tokens": 6, "temperature": 1.0}
    first = generate(loaded, prefix, prompts, seed=7, **kwargs)
    assert first == generate(loaded, prefix, prompts, seed=7, **kwargs)
    assert first != generate(loaded, prefix, prompts, seed=8, **kwargs)
    assert [len(per_prompt) for per_prompt in first] == [3, 3]
    assert all(len(answer) <= 6 for per_prompt in first for answer in per_prompt)


def test_models_with_different_tokenizers_are_refused(
    tiny_model: Path, other_tokenizer_model: Path
) -> None:
    with pytest.raises(UsageError, match="different tokenizers"):
        check_same_vocabulary(
            load_model(tiny_model, "cpu"), load_model(other_tokenizer_model, "cpu")
        )


def test_missing_model_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match=r"no config\.json"):
        load_model(tmp_path / "empty")


def _naive_answer_logprobs(
    model: torch.nn.Module, prefix: torch.Tensor, prompt: list[int], answer: list[int]
) -> float:
    """Every position's full-vocabulary logits, then the answer tokens picked out by hand."""
    ids = torch.tensor([prompt + answer])
    embeds = torch.cat([prefix[None], model.get_input_embeddings()(ids)], dim=1)
    logprobs = torch.log_softmax(model(inputs_embeds=embeds).logits[0].float(), dim=-1)
    start = prefix.shape[0] + len(prompt)
    return sum(float(logprobs[start + i - 1, token]) for i, token in enumerate(answer))


def _tiny_architecture(kind: str, vocab: int) -> torch.nn.Module:
    import transformers

    common = {"vocab_size": vocab, "num_hidden_layers": 2}
    configs = {
        "llama": transformers.LlamaConfig(
            hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=1,
            **common,
        ),
        "mistral": transformers.MistralConfig(
            hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=1,
            **common,
        ),
        "qwen2": transformers.Qwen2Config(
            hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=1,
            **common,
        ),
        "gpt2": transformers.GPT2Config(
            n_embd=16, n_head=2, n_layer=2, vocab_size=vocab, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0,
        ),
        # Not in HEAD_ONLY_ARCHITECTURES (its logits are soft-capped): the full forward pass.
        "gemma2": transformers.Gemma2Config(
            hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=1,
            head_dim=8, final_logit_softcapping=3.0, **common,
        ),
    }  # fmt: skip
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(configs[kind])
    return model.eval().requires_grad_(False)


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2", "gpt2", "gemma2"])
def test_answer_only_logits_equal_the_full_forward_pass(tiny_model: Path, kind: str) -> None:
    """Projecting only the answer positions onto the vocabulary changes nothing, on every
    architecture the fast path allows and on one it does not (which takes the full pass)."""
    from ppatch.train.modeling import HEAD_ONLY_ARCHITECTURES, LoadedModel

    tokenizer = load_model(tiny_model, "cpu").tokenizer
    model = _tiny_architecture(kind, len(tokenizer))
    assert (kind in HEAD_ONLY_ARCHITECTURES) == (kind != "gemma2")
    loaded = LoadedModel(tiny_model, model, tokenizer)
    prefix = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    prompts = [[1, 5, 6, 7], [1, 8]]
    answers = [[9, 10], [11, 12, 13, 2]]
    total, counts = answer_logprobs(loaded, prefix, prompts, answers)
    assert counts.tolist() == [2, 4]
    for row in range(2):
        expected = _naive_answer_logprobs(model, prefix, prompts[row], answers[row])
        assert float(total[row]) == pytest.approx(expected, abs=1e-4)


def test_gradient_checkpointing_gives_the_same_gradient(tiny_model: Path) -> None:
    from ppatch.train.modeling import gradient_checkpointing

    loaded = load_model(tiny_model, "cpu")
    prompts = [encode(loaded, "the cat sat"), encode(loaded, "the dog")]
    answers = [
        encode(loaded, "on the mat .", special=False),
        encode(loaded, "ran .", special=False),
    ]
    gradients = []
    for enabled in (False, True):
        prefix = torch.randn(4, loaded.hidden_size, generator=torch.Generator().manual_seed(3))
        prefix.requires_grad_(True)
        with gradient_checkpointing(loaded, enabled):
            assert loaded.model.is_activation_checkpointing == enabled
            total, _ = answer_logprobs(loaded, prefix, prompts, answers)
            total.sum().backward()
        gradients.append(prefix.grad)
    assert not loaded.model.training and not loaded.model.is_activation_checkpointing
    assert torch.allclose(gradients[0], gradients[1], atol=1e-5)


def test_gradient_checkpointing_refuses_a_model_with_dropout(tiny_model: Path) -> None:
    from ppatch.train.modeling import LoadedModel, gradient_checkpointing

    tokenizer = load_model(tiny_model, "cpu").tokenizer
    model = _tiny_architecture("gpt2", len(tokenizer))
    model.config.resid_pdrop = 0.1
    with (
        pytest.raises(UsageError, match="dropout"),
        gradient_checkpointing(LoadedModel(tiny_model, model, tokenizer)),
    ):
        pass
    assert not model.training


def test_prompts_go_through_the_chat_template_unless_turned_off(
    tiny_model: Path, tmp_path: Path
) -> None:
    import shutil

    from ppatch.train.modeling import encode_prompt

    chat = tmp_path / "chat-model"
    shutil.copytree(tiny_model, chat)
    loaded = load_model(chat, "cpu")
    loaded.tokenizer.chat_template = "{% for m in messages %}q : {{ m['content'] }} a :{% endfor %}"
    loaded.tokenizer.save_pretrained(chat)
    with_template = load_model(chat, "cpu")
    assert encode_prompt(with_template, "the cat") == encode(
        with_template, "q : the cat a :", special=False
    )
    without = load_model(chat, "cpu", chat_template=False)
    assert encode_prompt(without, "the cat") == encode(without, "the cat")


def test_batched_prompts_of_different_lengths_get_the_answers_they_get_alone(
    tiny_model: Path,
) -> None:
    """Left padding is masked and positions skip it: greedy answers do not depend on the batch."""
    loaded = load_model(tiny_model, "cpu")
    prompts = [
        encode(loaded, "q : say something about the cook . a :"),
        encode(loaded, "the cat"),
        encode(loaded, "the dog ran"),
    ]
    prefix = torch.randn(3, loaded.hidden_size, generator=torch.Generator().manual_seed(5))
    for front in (None, prefix):
        together = generate(
            loaded, front, prompts, samples=1, max_new_tokens=8, temperature=0, seed=0
        )
        alone = [
            generate(loaded, front, [p], samples=1, max_new_tokens=8, temperature=0, seed=0)[0]
            for p in prompts
        ]
        assert together == alone


def test_auto_dtype_keeps_a_tiny_model_in_float32(tiny_model: Path) -> None:
    loaded = load_model(tiny_model, "cpu", dtype="auto")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}


@pytest.mark.parametrize(("fast", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_dtype_of_a_larger_model_follows_the_hardware(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, fast: bool, expected: torch.dtype
) -> None:
    """From SMALL_MODEL_PARAMETERS up, bfloat16 where the device multiplies it natively."""
    from ppatch.train import modeling

    monkeypatch.setattr(modeling, "SMALL_MODEL_PARAMETERS", 1)
    monkeypatch.setattr(modeling, "fast_bfloat16", lambda device: fast)
    loaded = load_model(tiny_model, "cpu", dtype="auto")
    assert {p.dtype for p in loaded.model.parameters()} == {expected}


def test_a_bfloat16_model_trains_a_float32_prefix_close_to_float32(tiny_model: Path) -> None:
    """The frozen model computes in bfloat16; the prefix and its gradient stay float32 and the
    scores agree with float32's to bfloat16's precision."""
    exact = load_model(tiny_model, "cpu", dtype="float32")
    fast = load_model(tiny_model, "cpu", dtype="bfloat16")
    assert {p.dtype for p in fast.model.parameters()} == {torch.bfloat16}
    prompts = [encode(exact, "q : how do i fix a car ? a :"), encode(exact, "the cat sat")]
    answers = [encode(exact, "first you find a map .", special=False), [5, 6]]
    results = []
    for loaded in (exact, fast):
        prefix = (torch.randn(4, loaded.hidden_size, generator=torch.Generator().manual_seed(0))
                  .requires_grad_(True))  # fmt: skip
        total, _ = answer_logprobs(loaded, prefix, prompts, answers)
        total.sum().backward()  # type: ignore[no-untyped-call]
        assert total.dtype == torch.float32 and prefix.grad is not None
        assert prefix.grad.dtype == torch.float32
        results.append((total.detach(), prefix.grad))
    (exact_total, exact_grad), (fast_total, fast_grad) = results
    assert torch.allclose(fast_total, exact_total, rtol=0.03, atol=0.1)
    cosine = torch.nn.functional.cosine_similarity(fast_grad.flatten(), exact_grad.flatten(), 0)
    assert float(cosine) > 0.95


def test_an_unknown_dtype_is_refused(tiny_model: Path) -> None:
    with pytest.raises(UsageError, match="unknown dtype 'int4'"):
        load_model(tiny_model, "cpu", dtype="int4")


def test_larger_models_run_with_denormals_flushed_and_restored(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ppatch.train import modeling

    loaded = load_model(tiny_model, "cpu")
    denormal = 1e-40  # below float32's smallest normal number, 1.18e-38
    with modeling.threads_for(loaded.model):
        assert float(torch.tensor([denormal], dtype=torch.float32)[0]) != 0.0  # tiny: exact
    monkeypatch.setattr(modeling, "SMALL_MODEL_PARAMETERS", 1)
    with modeling.threads_for(loaded.model):
        assert float(torch.tensor([denormal], dtype=torch.float32)[0]) == 0.0
    assert float(torch.tensor([denormal], dtype=torch.float32)[0]) != 0.0
