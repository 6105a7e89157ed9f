"""Turning a user's prompt (or a list of chat messages) into the text a chat model expects.

An instruction-tuned model was trained on conversations laid out by its chat template; a bare
prompt is a different distribution and it answers worse. Training, evaluation, generation and
`ppatch serve` all format prompts here, so a patch is trained on exactly the text it later sees.
The patch's virtual tokens go before the whole templated text (PEFT's prompt-tuning semantics),
which is the caller's concern: this module only builds the token ids of the text.

A tokenizer without a chat template, or `chat_template=False`, gives the prompt as plain text
with the tokenizer's special tokens around it (a beginning-of-text token), as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ppatch.errors import UsageError

__all__ = ["Message", "format_chat", "has_chat_template", "messages_of", "prompt_token_ids"]

Message = Mapping[str, str]
_ROLES = frozenset({"system", "user", "assistant"})


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def messages_of(prompt: str | Sequence[Message], system: str | None = None) -> list[dict[str, str]]:
    """One user turn for a string; a copy of the messages otherwise, each checked. `system`,
    when given, becomes the first message unless the messages already start with one."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = []
        for index, message in enumerate(prompt):
            role, content = message.get("role"), message.get("content")
            if role not in _ROLES or not isinstance(content, str):
                raise UsageError(
                    f"message {index} must have a role ({', '.join(sorted(_ROLES))}) and a string "
                    f"content, got {dict(message)!r}"
                )
            messages.append({"role": role, "content": content})
        if not messages:
            raise UsageError("a conversation needs at least one message")
    if system is not None and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    return messages


def format_chat(
    tokenizer: Any, prompt: str | Sequence[Message], *, system: str | None = None
) -> str:
    """The chat template's text for `prompt`, ending where the assistant's answer begins."""
    if not has_chat_template(tokenizer):
        raise UsageError("the tokenizer has no chat template")
    text = tokenizer.apply_chat_template(
        messages_of(prompt, system), tokenize=False, add_generation_prompt=True
    )
    return str(text)


def prompt_token_ids(
    tokenizer: Any,
    prompt: str | Sequence[Message],
    *,
    chat_template: bool = True,
    system: str | None = None,
) -> list[int]:
    """Token ids of a prompt as the model should see it: through the chat template when the
    tokenizer has one and `chat_template` is on, else the plain text with the tokenizer's
    special tokens. A system message needs the template; messages need it too."""
    if chat_template and has_chat_template(tokenizer):
        # The template writes its own special tokens (a beginning-of-text token where the
        # model wants one); the tokenizer must not add a second.
        text = format_chat(tokenizer, prompt, system=system)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if system is not None:
        raise UsageError("a system prompt needs a tokenizer with a chat template")
    if not isinstance(prompt, str):
        raise UsageError("chat messages need a tokenizer with a chat template")
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
