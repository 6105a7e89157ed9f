"""Formatting prompts with a tokenizer's chat template, and without one."""

from __future__ import annotations

from typing import Any

import pytest

from ppatch.chat import format_chat, has_chat_template, messages_of, prompt_token_ids
from ppatch.errors import UsageError

# A template in the style of ChatML (SmolLM2's): a default system turn, each message between
# markers, and the assistant's turn opened at the end.
TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<s> system : be kind . </s>{% endif %}"
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s>{% endfor %}"
    "{% if add_generation_prompt %}<s> assistant :{% endif %}"
)


@pytest.fixture
def tokenizer() -> Any:
    from ppatch.miniature.tokenizer import build_tokenizer

    plain = build_tokenizer()
    plain.chat_template = TEMPLATE
    return plain


@pytest.fixture
def plain_tokenizer() -> Any:
    from ppatch.miniature.tokenizer import build_tokenizer

    return build_tokenizer()


def test_a_prompt_becomes_one_user_turn_and_an_open_assistant_turn(tokenizer: Any) -> None:
    text = format_chat(tokenizer, "the cat")
    assert text == "<s> system : be kind . </s><s> user : the cat </s><s> assistant :"


def test_a_system_prompt_replaces_the_default_one(tokenizer: Any) -> None:
    text = format_chat(tokenizer, "the cat", system="be safe")
    assert text.startswith("<s> system : be safe </s><s> user : the cat")
    assert "be kind" not in text


def test_token_ids_are_the_templated_text_without_extra_special_tokens(tokenizer: Any) -> None:
    ids = prompt_token_ids(tokenizer, "the cat")
    expected = tokenizer(format_chat(tokenizer, "the cat"), add_special_tokens=False)["input_ids"]
    assert ids == expected
    # The plain reading adds the tokenizer's beginning-of-text token and nothing else.
    plain = prompt_token_ids(tokenizer, "the cat", chat_template=False)
    assert plain == tokenizer("the cat")["input_ids"]
    assert plain != ids


def test_a_tokenizer_without_a_template_reads_the_prompt_plainly(plain_tokenizer: Any) -> None:
    assert not has_chat_template(plain_tokenizer)
    assert prompt_token_ids(plain_tokenizer, "the cat") == plain_tokenizer("the cat")["input_ids"]
    with pytest.raises(UsageError, match="system prompt needs a tokenizer with a chat template"):
        prompt_token_ids(plain_tokenizer, "the cat", system="be safe")
    with pytest.raises(UsageError, match="no chat template"):
        format_chat(plain_tokenizer, "the cat")


def test_messages_are_checked() -> None:
    assert messages_of([{"role": "user", "content": "hi"}], system="s") == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "hi"},
    ]
    with pytest.raises(UsageError, match="message 0 must have a role"):
        messages_of([{"role": "robot", "content": "hi"}])
    with pytest.raises(UsageError, match="at least one message"):
        messages_of([])
