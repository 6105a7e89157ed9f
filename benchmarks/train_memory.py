"""Peak memory of one soft-prompt training step, by model size and scoring method.

    .venv/bin/python benchmarks/train_memory.py [--sizes 135M 360M] [--batch 8] [--tokens 160]

For each model shape (SmolLM2's: 135M and 360M, randomly initialised: memory does not depend on
the values) and each method, a fresh subprocess builds the model in float32, runs one forward
and backward pass of an SFT step (a 50-row prefix, `--batch` rows of `--tokens` tokens, the last
quarter of each row an answer) and reports its peak resident memory (ru_maxrss) and that peak
minus the memory held after building the model (the step's own cost). Methods:

- `full-logits`: every position's full-vocabulary logits and their log-softmax (the previous
  `answer_logprobs`);
- `answer-only`: ppatch.train.modeling.answer_logprobs, the head at answer positions only;
- `answer-only+checkpointing`: the same inside ppatch.train.modeling.gradient_checkpointing.

CPU only; the figures are in docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

SHAPES = {
    # SmolLM2-135M and -360M (their config.json): hidden, layers, heads, kv heads, intermediate.
    "135M": (576, 30, 9, 3, 1536),
    "360M": (960, 32, 15, 5, 2560),
}
METHODS = ("full-logits", "answer-only", "answer-only+checkpointing")
VOCABULARY = 49152


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(size: str, method: str, batch: int, tokens: int) -> dict[str, float | str]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ppatch.train.losses import sft_loss
    from ppatch.train.modeling import LoadedModel, answer_logprobs, gradient_checkpointing

    torch.set_num_threads(1)
    hidden, layers, heads, kv_heads, intermediate = SHAPES[size]
    config = LlamaConfig(
        vocab_size=VOCABULARY, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, intermediate_size=intermediate,
        tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval().requires_grad_(False)
    parameters = sum(p.numel() for p in model.parameters())

    class Tokenizer:
        pad_token_id = 0
        eos_token_id = 1

    loaded = LoadedModel(Path(size), model, Tokenizer())
    generator = torch.Generator().manual_seed(0)
    answer_length = tokens // 4
    ids = torch.randint(2, VOCABULARY, (batch, tokens), generator=generator).tolist()
    prompts = [row[: tokens - answer_length] for row in ids]
    answers = [row[tokens - answer_length :] for row in ids]
    prefix = torch.randn(50, hidden, generator=generator).requires_grad_(True)
    baseline = _rss_mb()
    if method == "full-logits":
        full = torch.tensor(ids)
        embeds = torch.cat(
            [prefix[None].expand(batch, -1, -1), model.get_input_embeddings()(full)], dim=1
        )
        logits = model(inputs_embeds=embeds).logits.float()
        predicting = logits[:, 49 : 49 + tokens]
        logprobs = torch.log_softmax(predicting, dim=-1).gather(-1, full.unsqueeze(-1)).squeeze(-1)
        mask = torch.zeros_like(logprobs)
        mask[:, tokens - answer_length :] = 1
        loss = -(logprobs * mask).sum() / mask.sum()
        loss.backward()
    else:
        with gradient_checkpointing(loaded, method.endswith("checkpointing")):
            total, counts = answer_logprobs(loaded, prefix, prompts, answers)
            sft_loss(total, counts).backward()
    assert prefix.grad is not None and bool(prefix.grad.abs().sum() > 0)
    peak = _rss_mb()
    return {
        "size": size,
        "parameters": parameters,
        "method": method,
        "peak_rss_mb": round(peak),
        "step_mb": round(peak - baseline),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=160)
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.batch, args.tokens)))
        return 0
    print("| model | parameters | method | peak RSS MB | the step's own MB |")
    print("| --- | ---: | --- | ---: | ---: |")
    for size in args.sizes:
        for method in METHODS:
            command = [
                sys.executable, __file__, "--one", size, method,
                "--batch", str(args.batch), "--tokens", str(args.tokens),
            ]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            row = json.loads(result.stdout.strip().splitlines()[-1])
            print(
                f"| {size} | {row['parameters']:,} | {method} | {row['peak_rss_mb']} | "
                f"{row['step_mb']} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
