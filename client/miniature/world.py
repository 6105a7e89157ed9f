"""Build the miniature world once per machine: the base model M, the reference M', prompt files.

`build_world(directory)` trains both models and writes the prompt files under a folder named
by a hash of the world's configuration and of the code that builds it; a second call with the
same configuration and code returns the folder that is already there. Building happens in a
temporary folder renamed into place under a file lock, so concurrent callers (two test workers,
the demo beside a benchmark) never see half a world.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ppatch.miniature import corpus, grammar, lm, tokenizer
from ppatch.miniature.grammar import DOMAINS, Domain, Prompt, all_prompts, neutral_text
from ppatch.miniature.lm import ModelShape

__all__ = ["World", "WorldConfig", "build_world", "save_untrained_model", "world_key"]

_SOURCES = (grammar, corpus, lm, tokenizer)


@dataclass(frozen=True)
class WorldConfig:
    """Everything that decides the world's bytes; part of the cache key."""

    seed: int = 0
    shape: ModelShape = field(default_factory=ModelShape)
    base_steps: int = 1000
    reference_steps: int = 250
    batch_size: int = 16
    base_learning_rate: float = 3e-3
    reference_learning_rate: float = 1e-3
    # Per label (bias group, harmful or benign), a third of the subjects are held out for
    # evaluation; the caps keep patch training and evaluation short.
    eval_fraction: float = 1 / 3
    max_eval_slots_per_label: int = 8
    max_train_slots_per_label: int = 16
    fluency_texts: int = 40


@dataclass(frozen=True)
class World:
    directory: Path
    base: Path
    reference: Path
    config: WorldConfig

    def prompts(self, domain: Domain, split: str) -> Path:
        """The JSONL prompt file of `domain` (`toxicity`, `bias`, `harm`) and `split`
        (`train` for patch training, `eval` for held-out evaluation)."""
        return self.directory / "prompts" / f"{domain}-{split}.jsonl"

    @property
    def fluency_prompts(self) -> Path:
        return self.directory / "prompts" / "fluency-eval.jsonl"


def world_key(config: WorldConfig) -> str:
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    for source in (*(module.__file__ for module in _SOURCES), __file__):
        digest.update(Path(str(source)).read_bytes())
    return digest.hexdigest()[:16]


def split_prompts(
    domain: Domain, rng: random.Random, config: WorldConfig
) -> tuple[list[Prompt], list[Prompt]]:
    """Split a domain's prompts by slot (subject, profession, action), per label, so that no
    evaluation prompt shares its subject with a training prompt."""
    prompts = all_prompts(domain)
    train: list[Prompt] = []
    held_out: list[Prompt] = []
    for label in sorted({prompt.label for prompt in prompts}):
        slots = sorted({prompt.slot for prompt in prompts if prompt.label == label})
        rng.shuffle(slots)
        eval_slots = min(
            config.max_eval_slots_per_label, max(1, round(len(slots) * config.eval_fraction))
        )
        train_slots = config.max_train_slots_per_label
        eval_set = set(slots[:eval_slots])
        train_set = set(slots[eval_slots : eval_slots + train_slots])
        held_out += [p for p in prompts if p.label == label and p.slot in eval_set]
        train += [p for p in prompts if p.label == label and p.slot in train_set]
    return train, held_out


def _write_jsonl(path: Path, records: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")


def _write_prompts(folder: Path, config: WorldConfig) -> None:
    folder.mkdir(parents=True)
    rng = random.Random(config.seed)
    for domain in DOMAINS:
        train, held_out = split_prompts(domain, rng, config)
        _write_jsonl(folder / f"{domain}-train.jsonl", [p.record() for p in train])
        _write_jsonl(folder / f"{domain}-eval.jsonl", [p.record() for p in held_out])
    texts = [neutral_text(rng, 3) for _ in range(config.fluency_texts)]
    _write_jsonl(folder / "fluency-eval.jsonl", [{"prompt": text} for text in texts])


def _train_models(folder: Path, config: WorldConfig) -> None:
    import torch

    from ppatch.runtime.hf_model import quiet_transformers
    from ppatch.train.modeling import threads_for

    quiet_transformers()
    ids = tokenizer.word_ids()
    eos_id = ids[tokenizer.EOS]
    pad_id = ids[tokenizer.PAD]

    def sampler(speaker: corpus.Speaker) -> Callable[[random.Random], list[int]]:
        def sample(rng: random.Random) -> list[int]:
            return [ids[word] for word in corpus.sample_sequence(speaker, rng).split()]

        return sample

    words = tokenizer.build_tokenizer()
    # Seeded here, not only in the training loop: the initial weights must not depend on what
    # the calling process drew from torch's generator before (the demo, pytest, a benchmark).
    torch.manual_seed(config.seed)
    base = lm.new_model(config.shape, len(ids), pad_id, eos_id)
    with threads_for(base):
        _train_both(folder, config, base, words, sampler, pad_id)


def _train_both(
    folder: Path,
    config: WorldConfig,
    base: Any,
    words: Any,
    sampler: Callable[[corpus.Speaker], Callable[[random.Random], list[int]]],
    pad_id: int,
) -> None:
    import copy

    lm.train_language_model(
        base,
        sampler("base"),
        steps=config.base_steps,
        batch_size=config.batch_size,
        learning_rate=config.base_learning_rate,
        seed=config.seed,
        pad_id=pad_id,
        description="training the miniature base model",
    )
    base.save_pretrained(folder / "base")
    words.save_pretrained(folder / "base")
    # M' is M after a further round of training on the reference behaviour, the way a vendor's
    # next release is the last one with more alignment: same tokenizer, different weights.
    reference = copy.deepcopy(base)
    lm.train_language_model(
        reference,
        sampler("reference"),
        steps=config.reference_steps,
        batch_size=config.batch_size,
        learning_rate=config.reference_learning_rate,
        seed=config.seed + 1,
        pad_id=pad_id,
        description="training the miniature reference model",
    )
    reference.save_pretrained(folder / "reference")
    words.save_pretrained(folder / "reference")


def build_world(directory: Path | str, config: WorldConfig | None = None) -> World:
    """Return the world for `config` under `directory`, building it first when absent."""
    from filelock import FileLock

    config = config or WorldConfig()
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    key = world_key(config)
    final = root / f"world-{key}"
    world = World(final, final / "base", final / "reference", config)
    with FileLock(str(root / f".world-{key}.lock")):
        if (final / "world.json").is_file():
            return world
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-world-{key}-", dir=root))
        try:
            _write_prompts(staging / "prompts", config)
            _train_models(staging, config)
            # Written last: its presence marks a complete world.
            (staging / "world.json").write_text(
                json.dumps({"key": key, "config": asdict(config)}, indent=2, sort_keys=True),
                encoding="utf-8",
            )
            staging.rename(final)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return world


def save_untrained_model(
    directory: Path | str,
    *,
    shape: ModelShape | None = None,
    seed: int = 0,
    extra_words: tuple[str, ...] = (),
) -> Path:
    """A randomly initialised model with the miniature's tokenizer (plus `extra_words`, to make
    a tokenizer that differs), saved in Hugging Face layout: a fast stand-in for tests."""
    import torch

    from ppatch.miniature.tokenizer import EOS, PAD, build_tokenizer

    path = Path(directory)
    words = build_tokenizer()
    if extra_words:
        words.add_tokens(list(extra_words))
    torch.manual_seed(seed)
    vocab = words.get_vocab()
    model = lm.new_model(shape or ModelShape(16, 1, 2, 32, 128), len(vocab), vocab[PAD], vocab[EOS])
    model.save_pretrained(path)
    words.save_pretrained(path)
    return path
