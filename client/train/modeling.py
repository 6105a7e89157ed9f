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

if TYPE_CHECKING:
    import torch

__all__ = [
    "LoadedModel",
    "answer_logprobs",
    "check_same_vocabulary",
    "encode",
    "generate",
    "load_model",
    "threads_for",
]

# Rows sampled in one forward pass; bounds memory on a CPU without slowing tiny models.
GENERATION_BATCH = 256


@dataclass
class LoadedModel:
    """A model in eval mode with every weight frozen, and its tokenizer."""

    path: Path
    model: Any
    tokenizer: Any

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


# Below this many parameters a model's matrix products are too small to split across threads:
# one thread is faster, and on a shared machine far faster than threads that wait for cores.
SMALL_MODEL_PARAMETERS = 20_000_000


@contextmanager
def threads_for(model: Any) -> Iterator[None]:
    """Run a tiny model's CPU work on one thread; leave larger models and GPUs alone."""
    import torch

    small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS
    on_cpu = next(model.parameters()).device.type == "cpu"
    if not (small and on_cpu):
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def load_model(model: str | Path, device: str | None = None) -> LoadedModel:
    """`model` (a folder or a cached repo id) in float32 with every weight frozen."""
    import torch

    path = resolve_model(model)
    loaded = load_pretrained(path, device=device, dtype=torch.float32, label=str(model))
    loaded.model.requires_grad_(False)
    return LoadedModel(path, loaded.model, loaded.tokenizer)


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

    Rows are right-padded, so causal attention never lets a real token see padding.
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
    logits = loaded.model(inputs_embeds=_embed(loaded, prefix, ids)).logits.float()
    # The logit at position t predicts token t + 1; token i of the text sits at virtual + i.
    predicting = logits[:, virtual - 1 : virtual + width - 1] if virtual else logits[:, :-1]
    targets = ids if virtual else ids[:, 1:]
    mask = answer_mask if virtual else answer_mask[:, 1:]
    logprobs = torch.log_softmax(predicting, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (logprobs * mask).sum(dim=1), mask.sum(dim=1)


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

    Prompts of equal length are batched together, so no padding ever enters the model.
    """
    import torch

    results: list[list[list[int]]] = [[] for _ in prompts]
    generator = torch.Generator(device=loaded.device).manual_seed(seed)
    by_length: dict[int, list[int]] = {}
    for index, prompt in enumerate(prompts):
        if not prompt:
            raise UsageError("cannot generate from an empty prompt")
        by_length.setdefault(len(prompt), []).append(index)
    rows = [
        (index, sample)
        for length in sorted(by_length)
        for index in by_length[length]
        for sample in range(samples)
    ]
    start = 0
    with progress("sampling answers", total=len(rows)) as advance:
        while start < len(rows):
            length = len(prompts[rows[start][0]])
            end = start
            while end < len(rows) and end - start < GENERATION_BATCH:
                if len(prompts[rows[end][0]]) != length:
                    break
                end += 1
            chunk = rows[start:end]
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
            start = end
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
    ids = torch.tensor([list(p) for p in prompts], dtype=torch.long, device=loaded.device)
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=loaded.device)
    produced: list[torch.Tensor] = []
    with torch.no_grad():
        output = loaded.model(inputs_embeds=_embed(loaded, prefix, ids), use_cache=True)
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
            output = loaded.model(
                input_ids=token.unsqueeze(1), use_cache=True, **_cache_arguments(loaded, output)
            )
    answers: list[list[int]] = []
    for row in torch.stack(produced, dim=1).tolist():
        answers.append(row[: row.index(eos)] if eos in row else row)
    return answers
