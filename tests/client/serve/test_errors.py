"""Bad requests get OpenAI's error shape and a clear message, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.client.serve.conftest import LiveServer


@pytest.fixture
def live(start_server: Any) -> LiveServer:
    server: LiveServer = start_server()
    return server


def post(live: LiveServer, path: str, body: Any) -> httpx.Response:
    with httpx.Client() as client:
        if isinstance(body, bytes):
            headers = {"content-type": "application/json"}
            return client.post(f"{live.base_url}{path}", content=body, headers=headers)
        return client.post(f"{live.base_url}{path}", json=body)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert "Traceback" not in body["error"]["message"]
    assert "\n" not in body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def test_unknown_model_is_404_naming_the_models_served(
    live: LiveServer, serve_model_dir: Path
) -> None:
    response = post(live, "/completions", {"model": "gpt-4", "prompt": "the cat"})
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "'gpt-4'" in error["message"]
    assert repr(f"{serve_model_dir.name}:bare") in error["message"]
    with pytest.raises(openai.NotFoundError):
        live.openai().chat.completions.create(
            model="gpt-4", messages=[{"role": "user", "content": "hi"}]
        )


def test_context_too_long(live: LiveServer, serve_model_dir: Path) -> None:
    long_prompt = " ".join(["the cat sat on the mat"] * 30)  # 180 words, context 128
    response = post(live, "/completions", {"model": serve_model_dir.name, "prompt": long_prompt})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "context_length_exceeded"
    assert "maximum context length is 128 tokens" in error["message"]

    response = post(
        live,
        "/chat/completions",
        {
            "model": serve_model_dir.name,
            "messages": [{"role": "user", "content": "the cat"}],
            "max_tokens": 500,
        },
    )
    assert response.status_code == 400
    assert error_of(response)["param"] == "messages"
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        live.openai().completions.create(model=serve_model_dir.name, prompt="the", max_tokens=200)


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"temperature": 3}, "temperature", "less than or equal to 2"),
        ({"top_p": 0}, "top_p", "greater than 0"),
        ({"n": 0}, "n", "greater than or equal to 1"),
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4 stop sequences"),
        ({"stop": [""]}, "stop", "must not be empty"),
        ({"logprobs": 2}, "logprobs", "not supported"),
        ({"presence_penalty": 0.5}, "presence_penalty", "not supported"),
        ({"echo": True}, "echo", "not supported"),
        ({"best_of": 3}, "best_of", "not supported"),
        ({"colour": "blue"}, "colour", "Unrecognized request argument supplied: colour"),
        ({"prompt": []}, "prompt", "empty"),
        ({"prompt": [5, 99999]}, "prompt", "outside the vocabulary"),
        ({"prompt": None}, "prompt", ""),
    ],
)
def test_invalid_parameters_are_400_naming_the_parameter(
    live: LiveServer, serve_model_dir: Path, body: dict[str, Any], param: str, words: str
) -> None:
    request = {"model": serve_model_dir.name, "prompt": "the cat", **body}
    response = post(live, "/completions", request)
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] is not None and error["param"].startswith(param), error
    assert words in error["message"]


def test_chat_specific_refusals(live: LiveServer, serve_model_dir: Path) -> None:
    base = {"model": serve_model_dir.name, "messages": [{"role": "user", "content": "hi"}]}
    for extra, param in (
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages"),
    ):
        response = post(live, "/chat/completions", {**base, **extra})
        assert response.status_code == 400, extra
        assert error_of(response)["param"].startswith(param)


def test_malformed_json_and_unknown_paths(live: LiveServer) -> None:
    response = post(live, "/completions", b"{not json")
    assert response.status_code == 400
    assert "not valid JSON" in error_of(response)["message"]
    with httpx.Client() as client:
        missing = client.get(f"{live.base_url}/engines")
    assert missing.status_code == 404
    assert error_of(missing)["type"] == "invalid_request_error"


def test_a_model_without_a_chat_template_refuses_chat_but_completes(
    start_server: Any, serve_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live: LiveServer = start_server()
    monkeypatch.setattr(live.server.state.tokenizer, "chat_template", None)
    response = post(
        live,
        "/chat/completions",
        {"model": serve_model_dir.name, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "no_chat_template"
    assert "/v1/completions" in error["message"]


def test_a_failing_batch_answers_500_in_the_error_shape_and_the_server_goes_on(
    live: LiveServer, serve_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ppatch.serve import engine

    real = engine.run_batch
    calls = {"count": 0}

    def fail_once(jobs: Any) -> int:
        calls["count"] += 1
        if calls["count"] == 1:
            raise RuntimeError("out of memory\nwhile decoding")
        return real(jobs)

    monkeypatch.setattr(engine, "run_batch", fail_once)
    request = {"model": serve_model_dir.name, "prompt": "the cat", "max_tokens": 2}
    response = post(live, "/completions", request)
    assert response.status_code == 500
    error = error_of(response)
    assert error["type"] == "server_error"
    assert error["message"] == "generation failed: out of memory while decoding"
    assert response.headers["ppatch-patches"] == ""
    assert post(live, "/completions", request).status_code == 200
