"""The official `openai` client against a live `ppatch serve`: plain, streaming, concurrent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.client.serve.conftest import LiveServer, install_bytes, patch_bytes

PROMPT = "the cat sat on"


def library_completion(model_dir: Path, prompt_ids: list[int], max_tokens: int) -> str:
    """What `ppatch.load_model` (the installed patches) generates greedily for `prompt_ids`."""
    import torch

    import ppatch

    patched = ppatch.load_model(model_dir, device="cpu")
    tokenizer = patched.tokenizer
    sequences = patched.generate(
        input_ids=torch.tensor([prompt_ids]),
        max_new_tokens=max_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    return str(tokenizer.decode(sequences[0, len(prompt_ids) :], skip_special_tokens=True))


@pytest.fixture
def patched_server(
    start_server: Any, serve_fingerprint: str, hidden_size: int, tmp_path: Path
) -> LiveServer:
    install_bytes(patch_bytes("acme/first", "1.0.0", serve_fingerprint, hidden_size, seed=1),
                  serve_fingerprint, tmp_path)  # fmt: skip
    install_bytes(patch_bytes("acme/second", "2.1.0", serve_fingerprint, hidden_size, seed=2),
                  serve_fingerprint, tmp_path)  # fmt: skip
    live: LiveServer = start_server()
    return live


def test_models_lists_the_installed_set_the_bare_model_and_each_patch(
    patched_server: LiveServer, serve_model_dir: Path
) -> None:
    models = patched_server.openai().models.list()
    base = serve_model_dir.name
    ids = [model.id for model in models.data]
    assert ids == [base, f"{base}:bare", f"{base}:acme/first", f"{base}:acme/second"]
    by_id = {model.id: model.model_dump() for model in models.data}
    assert by_id[base]["patches"] == ["acme/first@1.0.0", "acme/second@2.1.0"]
    assert by_id[base]["default"] is True
    assert by_id[f"{base}:bare"]["patches"] == []


def test_completion_is_the_patched_models_greedy_output_with_the_header_and_usage(
    patched_server: LiveServer, serve_model_dir: Path
) -> None:
    client = patched_server.openai()
    raw = client.completions.with_raw_response.create(
        model=serve_model_dir.name, prompt=PROMPT, max_tokens=6, temperature=0
    )
    assert raw.headers["ppatch-patches"] == "acme/first@1.0.0,acme/second@2.1.0"
    completion = raw.parse()
    tokenizer = patched_server.server.state.tokenizer
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    expected = library_completion(serve_model_dir, prompt_ids, 6)
    assert completion.choices[0].text == expected
    assert completion.usage.prompt_tokens == len(prompt_ids)
    assert 1 <= completion.usage.completion_tokens <= 6
    assert completion.usage.total_tokens == len(prompt_ids) + completion.usage.completion_tokens

    bare = client.completions.with_raw_response.create(
        model=f"{serve_model_dir.name}:bare", prompt=PROMPT, max_tokens=6, temperature=0
    )
    assert bare.headers["ppatch-patches"] == ""
    alone = client.completions.with_raw_response.create(
        model=f"{serve_model_dir.name}:acme/second", prompt=PROMPT, max_tokens=6, temperature=0
    )
    assert alone.headers["ppatch-patches"] == "acme/second@2.1.0"
    texts = {expected, bare.parse().choices[0].text, alone.parse().choices[0].text}
    assert len(texts) == 3, "the patch sets should steer the random model differently"


def test_chat_uses_the_chat_template_after_the_virtual_tokens(
    patched_server: LiveServer, serve_model_dir: Path
) -> None:
    messages = [{"role": "user", "content": "hello how are you"}]
    chat = patched_server.openai().chat.completions.create(
        model=serve_model_dir.name, messages=messages, max_tokens=5, temperature=0
    )
    tokenizer = patched_server.server.state.tokenizer
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == library_completion(serve_model_dir, prompt_ids, 5)
    assert chat.usage.prompt_tokens == len(prompt_ids)
    assert chat.object == "chat.completion"


def test_streaming_chat_sends_the_same_text_in_pieces_with_the_header(
    patched_server: LiveServer, serve_model_dir: Path
) -> None:
    client = patched_server.openai()
    messages = [{"role": "user", "content": "tell me about the dog"}]
    whole = client.chat.completions.create(
        model=serve_model_dir.name, messages=messages, max_tokens=8, temperature=0
    )
    raw = client.chat.completions.with_raw_response.create(
        model=serve_model_dir.name,
        messages=messages,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["ppatch-patches"] == "acme/first@1.0.0,acme/second@2.1.0"
    chunks = list(raw.parse())
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == whole.choices[0].message.content
    assert len([piece for piece in pieces if piece]) > 1
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_streaming_completion(patched_server: LiveServer, serve_model_dir: Path) -> None:
    client = patched_server.openai()
    whole = client.completions.create(
        model=serve_model_dir.name, prompt=PROMPT, max_tokens=7, temperature=0
    )
    stream = client.completions.create(
        model=serve_model_dir.name, prompt=PROMPT, max_tokens=7, temperature=0, stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in stream) == whole.choices[0].text


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(
    patched_server: LiveServer, serve_model_dir: Path
) -> None:
    client = patched_server.openai()
    prompts = ["the cat sat on", "a dog ran to the", "the big red house", "hello world"] * 3
    alone = {
        prompt: client.completions.create(
            model=serve_model_dir.name, prompt=prompt, max_tokens=5, temperature=0
        )
        .choices[0]
        .text
        for prompt in set(prompts)
    }

    def ask(prompt: str) -> tuple[str, str]:
        answer = client.completions.create(
            model=serve_model_dir.name, prompt=prompt, max_tokens=5, temperature=0
        )
        return prompt, answer.choices[0].text

    batches_before = patched_server.metric("ppatch_serve_batch_rows_count")
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        answers = list(pool.map(ask, prompts))
    assert all(text == alone[prompt] for prompt, text in answers)
    batches = patched_server.metric("ppatch_serve_batch_rows_count") - batches_before
    assert batches < len(prompts), "concurrent requests should share batches"


def test_n_stop_max_tokens_and_seed(patched_server: LiveServer, serve_model_dir: Path) -> None:
    client = patched_server.openai()
    model = serve_model_dir.name
    greedy = client.completions.create(model=model, prompt=PROMPT, max_tokens=6, temperature=0)
    text = greedy.choices[0].text
    assert greedy.choices[0].finish_reason in ("length", "stop")

    words = text.split()
    assert len(words) >= 2, text
    stopped = client.completions.create(
        model=model, prompt=PROMPT, max_tokens=6, temperature=0, stop=[words[1]]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].text == text[: text.index(words[1])]

    short = client.completions.create(model=model, prompt=PROMPT, max_tokens=1, temperature=0)
    assert short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 1

    sampled = [
        client.completions.create(
            model=model, prompt=PROMPT, max_tokens=8, temperature=1.0, top_p=0.9, seed=7, n=3
        )
        for _ in range(2)
    ]
    assert [c.text for c in sampled[0].choices] == [c.text for c in sampled[1].choices]
    assert [c.index for c in sampled[0].choices] == [0, 1, 2]
    prompt_ids = patched_server.server.state.tokenizer(PROMPT)["input_ids"]
    assert sampled[0].usage.prompt_tokens == len(prompt_ids)  # counted once, not per choice
