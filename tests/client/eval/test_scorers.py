"""Built-in scorers on hand-made texts, and a local classifier plugged in."""

from __future__ import annotations

from pathlib import Path

import pytest

from ppatch.errors import NotFoundError, UsageError
from ppatch.eval.scorers import (
    ClassifierScorer,
    LexiconScorer,
    refusal_scorer,
    toxicity_scorer,
)


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("the cook is a kind friend .", 0.0),
        ("the cook is a stupid friend .", 0.5),
        ("the cook is a stupid idiot .", 0.75),
        ("STUPID, Idiot!", 0.75),  # case and punctuation do not hide a word
        ("", 0.0),
    ],
)
def test_builtin_toxicity_lexicon(text: str, score: float) -> None:
    scorer = toxicity_scorer()
    assert scorer.name == "lexicon:toxicity"
    assert scorer.score([text]) == [pytest.approx(score)]


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("i cannot help with that request .", 1.0),
        ("I'm sorry, I can't do that.", 1.0),
        ("first you find a map , then you rob the bank .", 0.0),
        ("you cannot miss it", 0.0),
    ],
)
def test_builtin_refusal_pattern(text: str, refused: float) -> None:
    scorer = refusal_scorer()
    assert scorer.name == "pattern:refusal"
    assert scorer.score([text]) == [refused]


def test_custom_lexicon() -> None:
    assert LexiconScorer("mine", frozenset({"bad"})).score(["bad bad bad", "good"]) == [0.875, 0.0]


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from ppatch.miniature.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
        id2label={0: "neutral", 1: "toxic"},
        label2id={"neutral": 0, "toxic": 1},
    )
    path = tmp_path_factory.mktemp("classifier") / "toxic-clf"
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_local_classifier_scores_the_positive_label(tiny_classifier: Path) -> None:
    scorer = toxicity_scorer(str(tiny_classifier))
    assert isinstance(scorer, ClassifierScorer)
    assert scorer.name == "classifier:toxic-clf[toxic]"
    scores = scorer.score(
        ["the cook is a stupid idiot .", "the cat sat .", "the dog ran on the mat ."]
    )
    assert len(scores) == 3 and all(0.0 < s < 1.0 for s in scores)
    neutral = toxicity_scorer(str(tiny_classifier), label="neutral")
    flipped = neutral.score(["the cat sat ."])[0]
    assert flipped == pytest.approx(1.0 - scorer.score(["the cat sat ."])[0], abs=1e-5)


def test_classifier_label_that_does_not_exist(tiny_classifier: Path) -> None:
    with pytest.raises(UsageError, match="no label 'hateful'"):
        toxicity_scorer(str(tiny_classifier), label="hateful")


def test_unknown_scorer_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="neither 'lexicon' nor a local classifier folder"):
        toxicity_scorer(str(tmp_path / "missing"))


def _labelled_refusals() -> list[tuple[str, bool]]:
    import json

    path = Path(__file__).with_name("refusal_examples.jsonl")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [(record["text"], record["refusal"]) for record in records]


@pytest.mark.parametrize(("text", "refused"), _labelled_refusals())
def test_refusal_pattern_on_labelled_real_style_answers(text: str, refused: bool) -> None:
    """Answers in the words instruction-tuned models use, labelled by hand (both ways: helpful
    answers that say "sorry to hear" or "you cannot" are not refusals)."""
    assert refusal_scorer().score([text]) == [1.0 if refused else 0.0]


def test_profanity_check_scores_offensive_text_high() -> None:
    scorer = toxicity_scorer("profanity-check")
    assert scorer.name == "profanity-check"
    offensive, polite = scorer.score(["you are a stupid fucking idiot", "have a lovely day"])
    assert offensive > 0.9 > 0.2 > polite
    assert scorer.score([]) == []
