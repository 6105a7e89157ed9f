"""A frozen causal language model with a soft prompt in front: loading, scoring and sampling.

The soft prompt's rows are concatenated before the embedded tokens and fed as `inputs_embeds`
(PEFT's prompt-tuning semantics: virtual tokens first, before anything the tokenizer adds). Both
training and evaluation go through these functions, so the model the patch is trained against
is exactly the one it is measured on.

torch and transformers are imported inside the functions: the CLI imports this package lazily.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ppatch.errors import UsageError
from ppatch.progress import progress
from ppatch.runtime.hf_model import load_pretrained, resolve_model
from ppatch.train.config import COMPUTE_DTYPES, SMALL_MODEL_PARAMETERS

if TYPE_CHECKING:
    import torch

__all__ = [
    "LoadedModel",
    "answer_logprobs",
    "check_same_vocabulary",
    "compute_dtype",
    "encode",
    "encode_prompt",
    "fast_bfloat16",
    "generate",
    "gradient_checkpointing",
    "load_model",
    "parameter_count",
    "threads_for",
]

# Rows sampled in one forward pass; bounds memory on a CPU without slowing tiny models.
GENERATION_BATCH = 256


@dataclass
class LoadedModel:
    """A model in eval mode with every weight frozen, and its tokenizer.

    `chat_template` says whether prompts go through the tokenizer's chat template (when it has
    one); `system_prompt`, when set, is the system message every prompt gets (a model with a
    safety system prompt is one of the reference models of docs/training.md).
    """

    path: Path
    model: Any
    tokenizer: Any
    chat_template: bool = True
    system_prompt: str | None = None

    @property
    def eos_id(self) -> int:
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise UsageError(f"the tokenizer of {str(self.path)!r} has no end-of-sequence token")
        return int(eos)

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device  # type: ignore[no-any-return]


# Below SMALL_MODEL_PARAMETERS a model's matrix products are too small to split across threads:
# one thread is faster, and on a shared machine far faster than threads that wait for cores.


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


@contextmanager
def threads_for(model: Any) -> Iterator[None]:
    """Run a tiny model's CPU work on one thread; leave larger models and GPUs alone.

    A larger model on the CPU runs with denormal numbers flushed to zero: measured on
    SmolLM2-135M (docs/training.md, "Speed"), sampling in float32 spent most of its time in
    denormal arithmetic (52.7 s for 8 answers of 24 tokens, 10.0 s flushed). Values below
    1e-38 change no figure that is measured; tiny models keep exact IEEE behaviour.
    """
    import torch

    small = parameter_count(model) < SMALL_MODEL_PARAMETERS
    on_cpu = next(model.parameters()).device.type == "cpu"
    if not on_cpu:
        yield
        return
    if not small:
        torch.set_flush_denormal(True)
        try:
            yield
        finally:
            torch.set_flush_denormal(False)
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fast_bfloat16(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 matrices natively: a CUDA device that supports
    bfloat16, or a CPU with AMX tiles or AVX-512 BF16 (oneDNN's bfloat16 kernels)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        cpu: Any = torch.cpu
        checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def compute_dtype(name: str, model: Any) -> torch.dtype:
    """The dtype `name` means for `model` (already loaded, in float32): `auto` is bfloat16 for a
    model of at least SMALL_MODEL_PARAMETERS on a device with native bfloat16 products, float32
    otherwise (tiny models gain nothing and keep exact float32 results)."""
    import torch

    if name not in COMPUTE_DTYPES:
        raise UsageError(f"unknown dtype {name!r}: expected one of {', '.join(COMPUTE_DTYPES)}")
    if name != "auto":
        dtype: torch.dtype = getattr(torch, name)
        return dtype
    device = next(model.parameters()).device
    if parameter_count(model) >= SMALL_MODEL_PARAMETERS and fast_bfloat16(device):
        return torch.bfloat16
    return torch.float32


def load_model(
    model: str | Path,
    device: str | None = None,
    *,
    chat_template: bool = True,
    dtype: str = "float32",
) -> LoadedModel:
    """`model` (a folder, a GGUF file or a cached repo id) with every weight frozen, computing
    in `dtype` (one of COMPUTE_DTYPES; see `compute_dtype`); `chat_template` says whether
    prompts go through the tokenizer's chat template."""
    import torch

    if dtype not in COMPUTE_DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}: expected one of {', '.join(COMPUTE_DTYPES)}")
    path = resolve_model(model)
    loaded = load_pretrained(path, device=device, dtype=torch.float32, label=str(model))
    loaded.model.requires_grad_(False)
    wanted = compute_dtype(dtype, loaded.model)
    if wanted != torch.float32:
        loaded.model.to(wanted)
    return LoadedModel(path, loaded.model, loaded.tokenizer, chat_template=chat_template)


def check_same_vocabulary(first: LoadedModel, second: LoadedModel) -> None:
    """Answers sampled from one model are scored by the other: their token ids must agree."""
    if first.tokenizer.get_vocab() != second.tokenizer.get_vocab():
        raise UsageError(
            f"models {str(first.path)!r} and {str(second.path)!r} have different tokenizers: "
            "the reference model must share the base model's vocabulary"
        )


def encode(loaded: LoadedModel, text: str, *, special: bool = True) -> list[int]:
    """Token ids of `text`; `special` adds what the tokenizer puts around a text (a BOS
    token): right for prompts and whole texts, wrong for answers that continue a prompt."""
    return list(loaded.tokenizer(text, add_special_tokens=special)["input_ids"])


def encode_prompt(loaded: LoadedModel, prompt: str) -> list[int]:
    """Token ids of a prompt that the model answers: through the chat template, with the
    model's system prompt, when the tokenizer has a template and `loaded.chat_template` is on."""
    from ppatch.chat import prompt_token_ids

    return prompt_token_ids(
        loaded.tokenizer,
        prompt,
        chat_template=loaded.chat_template,
        system=loaded.system_prompt,
    )


def _embed(loaded: LoadedModel, prefix: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor:
    import torch

    embedded = loaded.model.get_input_embeddings()(ids)
    if prefix is None or prefix.shape[0] == 0:
        return embedded  # type: ignore[no-any-return]
    rows = prefix.to(embedded.dtype).unsqueeze(0).expand(ids.shape[0], -1, -1)
    return torch.cat([rows, embedded], dim=1)


def answer_logprobs(
    loaded: LoadedModel,
    prefix: torch.Tensor | None,
    prompts: Sequence[Sequence[int]],
    answers: Sequence[Sequence[int]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each answer given its prompt and the prefix, and the number
    of answer tokens. Gradients flow into `prefix`; prompt tokens carry no loss.

    Rows are right-padded, so causal attention never lets a real token see padding. Only the
    positions that predict an answer token are projected onto the vocabulary (see
    `_logits_at`), so memory grows with the answer tokens, not with batch x length x vocabulary.
    """
    import torch

    device = loaded.device
    width = max(len(p) + len(a) for p, a in zip(prompts, answers, strict=True))
    pad_id = loaded.tokenizer.pad_token_id
    pad_id = int(pad_id) if pad_id is not None else loaded.eos_id
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    answer_mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        ids[row, : len(prompt) + len(answer)] = torch.tensor([*prompt, *answer])
        answer_mask[row, len(prompt) : len(prompt) + len(answer)] = True
    ids, answer_mask = ids.to(device), answer_mask.to(device)
    virtual = 0 if prefix is None else int(prefix.shape[0])
    # The output at position t predicts token t + 1; token i of the text sits at virtual + i,
    # so it is predicted at virtual + i - 1. Without a prefix the first token has no predictor.
    rows, columns = answer_mask.nonzero(as_tuple=True)
    predictors = columns + virtual - 1
    keep = predictors >= 0
    rows, columns, predictors = rows[keep], columns[keep], predictors[keep]
    logits = _logits_at(loaded, _embed(loaded, prefix, ids), rows, predictors)
    token_logprobs = torch.log_softmax(logits.float(), dim=-1)
    picked = token_logprobs.gather(-1, ids[rows, columns].unsqueeze(-1)).squeeze(-1)
    totals = torch.zeros(len(prompts), dtype=picked.dtype, device=device).index_add(0, rows, picked)
    counts = torch.bincount(rows, minlength=len(prompts))
    return totals, counts


# Architectures whose logits are exactly `lm_head(base_model(...).last_hidden_state)`: no
# scaling or soft-capping after the head. Each is checked against the full forward pass in
# tests/client/train/test_modeling.py; any other model computes all logits (same result, more
# memory).
HEAD_ONLY_ARCHITECTURES = frozenset({"llama", "mistral", "qwen2", "gpt2"})


def _logits_at(
    loaded: LoadedModel, embeds: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """The logits at `(rows[i], positions[i])` for every i, as `[len(rows), vocabulary]`."""
    model = loaded.model
    if getattr(model.config, "model_type", None) in HEAD_ONLY_ARCHITECTURES:
        hidden = model.base_model(inputs_embeds=embeds, use_cache=False).last_hidden_state
        head = model.get_output_embeddings()
        return head(hidden[rows, positions])  # type: ignore[no-any-return]
    return model(inputs_embeds=embeds, use_cache=False).logits[rows, positions]  # type: ignore[no-any-return]


@contextmanager
def gradient_checkpointing(loaded: LoadedModel, enabled: bool = True) -> Iterator[None]:
    """Recompute each layer's activations in the backward pass instead of keeping them.

    transformers checkpoints only in training mode, which also turns dropout on; a model with
    any dropout probability above zero is refused rather than trained with noise it never had
    at inference. The model is back in eval mode, checkpointing off, when the block ends.
    """
    if not enabled:
        yield
        return
    import torch

    model = loaded.model
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise UsageError(f"model {str(loaded.path)!r} does not support gradient checkpointing")
    noisy = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Dropout) and module.p > 0
    ]
    noisy += [
        key
        for key in (
            "attention_dropout",
            "hidden_dropout",
            "resid_pdrop",
            "attn_pdrop",
            "embd_pdrop",
        )
        if float(getattr(model.config, key, 0.0) or 0.0) > 0
    ]
    if noisy:
        raise UsageError(
            f"gradient checkpointing needs training mode, and model {str(loaded.path)!r} has "
            f"dropout ({noisy[0]}); train without --gradient-checkpointing"
        )
    # transformers 5 renamed the methods (the old names warn); older versions have only those.
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable({"use_reentrant": False})
        disable = model.activation_checkpointing_disable
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        disable = model.gradient_checkpointing_disable
    model.train()
    try:
        yield
    finally:
        disable()
        model.eval()


def generate(
    loaded: LoadedModel,
    prefix: torch.Tensor | None,
    prompts: Sequence[Sequence[int]],
    *,
    samples: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
) -> list[list[list[int]]]:
    """`samples` answers per prompt (token ids, without the end token), sampled at
    `temperature` (0 means greedy) with a seeded generator: the same seed gives the same
    answers on the same device.

    Rows are sorted by prompt length and batched, shorter prompts left-padded with the padding
    masked out and positions counted from each prompt's first real token, so a row's answer is
    the one it would get alone (tests/client/train/test_modeling.py checks this greedily).
    """
    import torch

    results: list[list[list[int]]] = [[] for _ in prompts]
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    for prompt in prompts:
        if not prompt:
            raise UsageError("cannot generate from an empty prompt")
    order = sorted(range(len(prompts)), key=lambda index: (len(prompts[index]), index))
    rows = [(index, sample) for index in order for sample in range(samples)]
    with progress("sampling answers", total=len(rows)) as advance:
        for start in range(0, len(rows), GENERATION_BATCH):
            chunk = rows[start : start + GENERATION_BATCH]
            answers = _sample(
                loaded,
                prefix,
                [prompts[index] for index, _ in chunk],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                generator=generator,
            )
            for (index, _), answer in zip(chunk, answers, strict=True):
                results[index].append(answer)
            advance(len(chunk))
    return results


def _cache_arguments(loaded: LoadedModel, output: Any) -> dict[str, Any]:
    """The key/value cache under the name this transformers version takes: `cache` from 5.x
    (where `past_key_values` warns), `past_key_values` before."""
    import inspect

    if "cache" in inspect.signature(loaded.model.forward).parameters:
        return {"cache": output.cache}
    return {"past_key_values": output.past_key_values}


def _sample(
    loaded: LoadedModel,
    prefix: torch.Tensor | None,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    generator: torch.Generator,
) -> list[list[int]]:
    import torch

    eos = loaded.eos_id
    device = loaded.device
    width = max(len(p) for p in prompts)
    virtual = 0 if prefix is None else int(prefix.shape[0])
    pad_id = loaded.tokenizer.pad_token_id
    ids = torch.full((len(prompts), width), eos if pad_id is None else int(pad_id))
    mask = torch.ones((len(prompts), virtual + width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(list(prompt))
        mask[row, virtual : virtual + width - len(prompt)] = 0
    ids, mask = ids.to(device), mask.to(device)
    # Positions count real tokens only, so a left-padded row sees the positions it would alone.
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    produced: list[torch.Tensor] = []
    with torch.no_grad():
        output = loaded.model(
            inputs_embeds=_embed(loaded, prefix, ids),
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
        )
        position = positions[:, -1:]
        for _ in range(max_new_tokens):
            logits = output.logits[:, -1, :].float()
            if temperature > 0:
                probabilities = torch.softmax(logits / temperature, dim=-1)
                token = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
            else:
                token = logits.argmax(dim=-1)
            token = torch.where(finished, torch.full_like(token, eos), token)
            produced.append(token)
            finished |= token == eos
            if bool(finished.all()):
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            position = position + 1
            output = loaded.model(
                input_ids=token.unsqueeze(1),
                attention_mask=mask,
                position_ids=position,
                use_cache=True,
                **_cache_arguments(loaded, output),
            )
    answers: list[list[int]] = []
    for row in torch.stack(produced, dim=1).tolist():
        answers.append(row[: row.index(eos)] if eos in row else row)
    return answers
