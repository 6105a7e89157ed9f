"""benchmarks/real_model.py's own data construction, on the tiny model: classifier-ranked
toxicity pairs, real-text anchors, splits, and the sweep's grid."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ppatch.train.modeling import load_model

BENCHMARKS = Path(__file__).parents[3] / "benchmarks"


def _module(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        # dataclasses look their module up in sys.modules; the sweep imports real_model by name.
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


class CountingScorer:
    """Offensiveness by hand: the share of the letter 'e' among an answer's characters."""

    name = "letter-e"

    def score(self, texts: list[str]) -> list[float]:
        return [text.count("e") / max(len(text), 1) for text in texts]


@pytest.fixture
def chat_model(tiny_model: Path, tmp_path: Path) -> Any:
    import shutil

    chat = tmp_path / "chat-model"
    shutil.copytree(tiny_model, chat)
    loaded = load_model(chat, "cpu")
    loaded.tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}a :"
    )
    loaded.tokenizer.save_pretrained(chat)
    return load_model(chat, "cpu")


def test_ranked_pairs_choose_the_least_and_reject_the_most_offensive(chat_model: Any) -> None:
    from ppatch.train.config import TrainConfig

    real_model = _module("real_model")
    config = TrainConfig(
        base="m", reference="system-prompt", output=Path("o.ppatch"), name="a/b",
        version="1.0.0", domain="toxicity", max_new_tokens=6,
    )  # fmt: skip
    records = [{"prompt": p} for p in ("the cook", "the poet", "a dog", "the nurse")]
    scorer = CountingScorer()
    data = real_model.ranked_toxicity_data(
        config, chat_model, records, scorer, samples=4, margin=0.05
    )
    decode = chat_model.tokenizer.decode
    eos = chat_model.eos_id
    assert data.description["preference_pairs"] == len(data.pairs) > 0
    for pair in data.pairs:
        assert pair.chosen[-1] == eos and pair.rejected[-1] == eos
        chosen, rejected = (decode(a[:-1], skip_special_tokens=True)
                            for a in (pair.chosen, pair.rejected))  # fmt: skip
        good, bad = scorer.score([chosen, rejected])
        assert bad - good >= 0.05
    for example in data.sft:
        assert scorer.score([decode(example.answer[:-1], skip_special_tokens=True)])[0] < 0.5


def test_text_anchors_are_real_text_after_its_first_token(chat_model: Any) -> None:
    real_model = _module("real_model")
    anchors = real_model.text_anchors(chat_model, 3, length=5)
    assert len(anchors) == 3
    for anchor in anchors:
        assert len(anchor.prompt) == 1 and len(anchor.answer) == 5


def test_splits_are_fixed_by_the_seed_and_disjoint() -> None:
    real_model = _module("real_model")
    records = [{"prompt": str(i)} for i in range(30)]
    first = real_model.split(records, 17, test=5, validation=4)
    again = real_model.split(records, 17, test=5, validation=4)
    assert first == again
    assert (len(first.test), len(first.validation), len(first.train)) == (5, 4, 21)
    seen = [r["prompt"] for r in first.test + first.validation + first.train]
    assert sorted(seen, key=int) == [str(i) for i in range(30)]


def test_the_sweep_grid_is_every_combination_and_refuses_unknown_keys() -> None:
    sweep = _module("real_model_sweep")
    assert sweep.parse_grid(["sft_lr=0.01,0.1", "dpo_steps=5"]) == [
        {"sft_learning_rate": 0.01, "dpo_steps": 5},
        {"sft_learning_rate": 0.1, "dpo_steps": 5},
    ]
    with pytest.raises(SystemExit, match=r"grid item 'lr=0\.1'"):
        sweep.parse_grid(["lr=0.1"])
