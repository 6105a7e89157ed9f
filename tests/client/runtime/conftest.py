"""A tiny random Llama and a word-level tokenizer, built in code and saved once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "and",
    "ran",
    "to",
    "house",
    "big",
    "small",
    "red",
    "blue",
    "is",
    "was",
    "very",
    "not",
    "happy",
    "sad",
    "hello",
    "world",
    "how",
    "are",
    "you",
    "today",
    "please",
    "tell",
    "me",
    "about",
    "it",
    "yes",
    "no",
    "why",
    "what",
    "who",
    "where",
    "when",
]
SPECIAL = ["[PAD]", "<s>", "</s>", "[UNK]"]
HIDDEN = 32
VIRTUAL_TOKENS = 5


def build_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate([*SPECIAL, *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##")
    # BOS first, so tests can check the virtual tokens go before it.
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="[PAD]",
        unk_token="[UNK]",
        padding_side="left",
    )


def build_model(vocab_size: int, *, seed: int = 0, hidden: int = HIDDEN) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(autouse=True)
def fresh_prefix_state() -> Iterator[None]:
    """Each test computes its own prefixes and defines the cache-layer classes itself.

    Both are cached per process (the default prefix store, the classes made on first use), so a
    test would otherwise run on what an earlier test made: its result would not depend on the
    code it calls, and mutation testing, which runs for each changed function only the tests
    seen calling it, would credit each function to the first test that happened to reach it.
    """
    from ppatch.runtime import prefix

    prefix.default_prefix_store().clear()
    prefix._DEFINED_LAYERS.clear()
    yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny model with its tokenizer: what `ppatch.load_model` reads."""
    directory = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tokenizer()
    model = build_model(len(tokenizer))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True).eval()


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)


@pytest.fixture(scope="session")
def prompt_embeddings() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(VIRTUAL_TOKENS, HIDDEN)).astype(np.float32)


@pytest.fixture(scope="session")
def second_embeddings() -> np.ndarray:
    return np.random.default_rng(2).normal(size=(3, HIDDEN)).astype(np.float32)


def write_patch_file(
    path: Path,
    embeddings: np.ndarray,
    fingerprint: str,
    *,
    name: str = "acme/first",
    version: str = "1.0.0",
) -> Path:
    """A `.ppatch` for the model with `fingerprint`, as `ppatch pack` would write it."""
    from patchfmt import build_manifest, weights_from_array, write_patch

    weights = weights_from_array(embeddings)
    fields = {
        "name": name,
        "version": version,
        "domain": "toxicity",
        "summary": f"test patch {name}",
        "license": "MIT",
        "base_model": {"id": "tiny-llama", "fingerprint": fingerprint},
    }
    write_patch(path, build_manifest(fields, weights), weights)
    return path


def install_patch_file(path: Path, fingerprint: str) -> None:
    """Record `path` as installed on the model, after those already installed."""
    import shutil

    from patchfmt import read_patch
    from ppatch import store

    manifest = read_patch(path).manifest
    sha256 = store.file_sha256(path)
    copy = path.with_suffix(".copy")
    shutil.copyfile(path, copy)
    store.store_blob(copy, sha256)
    state = store.read_installed(fingerprint)
    state.put(store.InstalledPatch(name=manifest.name, version=manifest.version, sha256=sha256))
    store.write_installed(state)


@pytest.fixture(scope="session")
def tiny_fingerprint(tiny_model_dir: Path) -> str:
    from patchfmt import fingerprint_model

    return fingerprint_model(tiny_model_dir)
