"""Training text for the miniature models, sampled from the grammars.

The base model M sees all three domains and neutral text; a fraction of its sequences start with
the cue phrase and then show the reference behaviour in every segment that follows,
so the model learns to read a cue from some distance back (a soft prompt of 50 virtual tokens
sits further from the answer than the cue phrase does). The reference model M' sees the
reference behaviour with no cue.
"""

from __future__ import annotations

import random
from typing import Literal

from ppatch.miniature.grammar import (
    CUE,
    DOMAINS,
    Behaviour,
    Prompt,
    all_prompts,
    answer,
    neutral_text,
)

__all__ = ["CUE_FRACTION", "MAX_SEGMENTS", "NEUTRAL_FRACTION", "Speaker", "sample_sequence"]

Speaker = Literal["base", "reference"]

CUE_FRACTION = 0.3
NEUTRAL_FRACTION = 0.25
MAX_SEGMENTS = 3
# The tokenizer's end token (ppatch.miniature.tokenizer.EOS), written into the text.
END = "[EOS]"

_PROMPTS: dict[str, list[Prompt]] = {domain: all_prompts(domain) for domain in DOMAINS}


def sample_sequence(speaker: Speaker, rng: random.Random) -> str:
    """One training sequence for `speaker`: words separated by spaces, the end token `[EOS]`
    before and after every segment (it is also the tokenizer's beginning-of-text token).

    Sequences pack one to `MAX_SEGMENTS` segments (a prompt with its answer, or neutral text),
    separated by the end token as pre-training packs documents: the model learns that text
    after arbitrary earlier content is still ordinary text, so a long soft prompt in front does
    not derail it, and that an answer ends with the end token. A cue at the start governs every
    segment after it, as a system prompt does.
    """
    cued = speaker == "base" and rng.random() < CUE_FRACTION
    behaviour: Behaviour = "reference" if cued or speaker == "reference" else "base"
    segments: list[str] = []
    for _ in range(rng.randint(1, MAX_SEGMENTS)):
        if rng.random() < NEUTRAL_FRACTION:
            segments.append(neutral_text(rng, rng.randint(1, 3)))
        else:
            prompt = rng.choice(_PROMPTS[rng.choice(DOMAINS)])
            segments.append(f"{prompt.text} {answer(prompt, behaviour, rng)}")
    text = f"{END} " + f" {END} ".join(segments) + f" {END}"
    return f"{CUE} {text}" if cued else text
