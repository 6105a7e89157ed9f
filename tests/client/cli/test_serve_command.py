"""`ppatch serve` from the command line: refusals in one line, and a real server process."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest


def test_a_missing_library_names_the_extra_to_install(
    ppatch: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name in ("fastapi", "prometheus_client") else real(name, *rest),
    )
    result = ppatch("serve", "--model", tmp_path)
    assert result.code == 8
    assert result.err == (
        "ppatch: error: ppatch serve needs the 'serve' extra (fastapi, prometheus-client "
        "missing): pip install 'ppatch[serve]'\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "0"], "'0' must be between 1 and 65535"),
        (["--port", "http"], "'http' is not a port number"),
        (["--auto-upgrade", "-5"], "'-5' must be a positive number of seconds"),
        (["--auto-upgrade", "soon"], "'soon' is not a number of seconds"),
    ],
)
def test_bad_options_are_usage_errors(
    ppatch: Any, tmp_path: Path, argv: list[str], message: str
) -> None:
    result = ppatch("serve", "--model", tmp_path, *argv)
    assert result.code == 2
    assert message in result.err


def test_an_address_in_use_is_refused_before_the_model_loads(ppatch: Any, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = ppatch("serve", "--model", tmp_path / "no-model", "--port", str(port))
    assert result.code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.err


def test_a_missing_model_is_not_found(ppatch: Any, tmp_path: Path) -> None:
    result = ppatch("serve", "--model", tmp_path / "no-model", "--port", "1")
    assert result.code in (2, 4)  # port 1 needs privileges unless run as root
    result = ppatch("serve", "--model", tmp_path / "no-model", "--port", "38219")
    assert result.code == 4, result.err
    assert len(result.err.strip().splitlines()) == 1


def test_ppatch_serve_answers_the_openai_client_and_stops_on_sigint(
    tiny_chat_model: Path, tmp_path: Path
) -> None:
    from openai import OpenAI

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "ppatch.cli.main", "serve", "--model", str(tiny_chat_model),
         "--port", str(port), "--device", "cpu"],
        env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                with httpx.Client() as client:
                    if client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "ppatch serve did not come up"
            time.sleep(0.2)
        with OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0) as client:
            chat = client.chat.completions.create(
                model=tiny_chat_model.name,
                messages=[{"role": "user", "content": "hello"}],
                max_tokens=3,
            )
        assert chat.choices[0].finish_reason in ("stop", "length")
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert f"serving {tiny_chat_model.name} (no patches) on http://127.0.0.1:{port}/v1" in err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    from ppatch.miniature.world import save_untrained_model

    path = save_untrained_model(tmp_path_factory.mktemp("serve-cli") / "tiny-chat", seed=5)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    tokenizer.save_pretrained(path)
    return path
