"""Chat messages to prompt tokens through the tokenizer's own chat template.

The virtual tokens of the patches go before all of the templated text (DESIGN.md, "Applying a
patch"); `PatchedModel` puts them there, so this module only renders the template. The template
adds BOS and the other special tokens itself, so the text is tokenized without adding more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ppatch.serve.errors import OpenAIError
from ppatch.serve.schemas import ChatMessage

__all__ = ["NoChatTemplateError", "chat_prompt_ids", "chat_prompt_text"]


class NoChatTemplateError(OpenAIError):
    def __init__(self) -> None:
        super().__init__(
            "this model's tokenizer has no chat template, so chat messages cannot be formatted; "
            "use /v1/completions with a plain prompt",
            param="messages",
            code="no_chat_template",
        )


def chat_prompt_text(tokenizer: Any, messages: Sequence[ChatMessage]) -> str:
    """The conversation as the model was trained to see it, ending where the assistant speaks."""
    if not getattr(tokenizer, "chat_template", None):
        raise NoChatTemplateError()
    conversation = [{"role": message.role, "content": message.text()} for message in messages]
    text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    return str(text)


def chat_prompt_ids(tokenizer: Any, messages: Sequence[ChatMessage]) -> list[int]:
    text = chat_prompt_text(tokenizer, messages)
    return [int(token) for token in tokenizer(text, add_special_tokens=False)["input_ids"]]
