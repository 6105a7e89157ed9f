"""Training text for the miniature models, sampled from the grammars.

The base model M sees all three domains and neutral text; a fraction of its sequences start with
the cue phrase and then show the reference behaviour, and a fraction carry neutral sentences
between the cue and the prompt, so the model learns to read a cue from some distance back (a
soft prompt of 50 virtual tokens sits further from the answer than the cue phrase does). The
reference model M' sees the reference behaviour with no cue.
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

__all__ = ["CONTEXT_FRACTION", "CUE_FRACTION", "Speaker", "sample_sequence"]

Speaker = Literal["base", "reference"]

CUE_FRACTION = 0.3
CONTEXT_FRACTION = 0.3
NEUTRAL_FRACTION = 0.2

_PROMPTS: dict[str, list[Prompt]] = {domain: all_prompts(domain) for domain in DOMAINS}


def sample_sequence(speaker: Speaker, rng: random.Random) -> str:
    """One training sequence (words separated by spaces, no end token) for `speaker`."""
    parts: list[str] = []
    cued = speaker == "base" and rng.random() < CUE_FRACTION
    if cued:
        parts.append(CUE)
    if rng.random() < CONTEXT_FRACTION:
        parts.append(neutral_text(rng, rng.randint(1, 2)))
    if rng.random() < NEUTRAL_FRACTION:
        parts.append(neutral_text(rng, rng.randint(2, 3)))
        return " ".join(parts)
    prompt = rng.choice(_PROMPTS[rng.choice(DOMAINS)])
    behaviour: Behaviour = "reference" if cued or speaker == "reference" else "base"
    parts += [prompt.text, answer(prompt, behaviour, rng)]
    return " ".join(parts)
