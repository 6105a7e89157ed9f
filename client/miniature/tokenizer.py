"""The miniature world's word-level tokenizer: one token per word of the grammars.

Saved with `save_pretrained` beside each model, so the models load with `AutoTokenizer` like any
Hugging Face model. The end token doubles as the beginning-of-text token (GPT-2's habit): the
tokenizer puts it before every text, and training text separates its segments with it. A cue
phrase, like PEFT's virtual tokens, comes before it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ppatch.miniature.grammar import vocabulary

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["EOS", "PAD", "SPECIAL_TOKENS", "UNK", "build_tokenizer", "word_ids"]

PAD, UNK, EOS = "[PAD]", "[UNK]", "[EOS]"
SPECIAL_TOKENS = (PAD, UNK, EOS)


def word_ids() -> dict[str, int]:
    """Token ids: the special tokens first, then the grammars' words in sorted order."""
    return {word: index for index, word in enumerate((*SPECIAL_TOKENS, *vocabulary()))}


def build_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(WordLevel(vocab=word_ids(), unk_token=UNK))
    core.pre_tokenizer = WhitespaceSplit()
    core.post_processor = TemplateProcessing(
        single=f"{EOS} $A", special_tokens=[(EOS, word_ids()[EOS])]
    )
    # WordPiece's decoder with no continuation prefix joins words with single spaces.
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, unk_token=UNK, pad_token=PAD, eos_token=EOS, bos_token=EOS
    )
