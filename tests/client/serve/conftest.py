"""Fixtures for `ppatch serve`'s tests: a tiny saved model with a chat template, patches for
it, and a live server (uvicorn on a loopback port, in a thread of this process).

Each test gets its own server, because each test has its own PPATCH_HOME and so its own
installed set; loading the tiny model takes a fraction of a second.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ppatch import store

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }} : {{ message['content'] }} "
    "{% endfor %}{% if add_generation_prompt %}the{% endif %}"
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run far faster on one thread, above all on a shared machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def serve_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random miniature Llama (context 128) whose tokenizer has a chat template.

    Its weights are scaled up from the usual small initialisation, so that greedy decoding
    wanders through the vocabulary and different virtual tokens visibly steer it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ppatch.miniature.lm import ModelShape
    from ppatch.miniature.world import save_untrained_model

    shape = ModelShape(hidden_size=32, layers=2, heads=4, intermediate_size=64, max_positions=128)
    path = save_untrained_model(tmp_path_factory.mktemp("serve") / "tiny-chat", shape=shape, seed=3)
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "norm" not in name:
                weight.mul_(25)
    model.save_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def serve_fingerprint(serve_model_dir: Path) -> str:
    from patchfmt import fingerprint_model

    return fingerprint_model(serve_model_dir)


@pytest.fixture(scope="session")
def hidden_size(serve_model_dir: Path) -> int:
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(serve_model_dir).hidden_size)


def patch_bytes(
    name: str,
    version: str,
    fingerprint: str,
    hidden: int,
    *,
    seed: int,
    key: Ed25519PrivateKey | None = None,
    tokens: int = 4,
) -> bytes:
    """A `.ppatch` of `tokens` random virtual tokens for the model with `fingerprint`."""
    from patchfmt import build_manifest, pack_patch, sign_manifest, weights_from_array

    array = np.random.default_rng(seed).normal(scale=3.0, size=(tokens, hidden))
    weights = weights_from_array(array.astype(np.float32))
    manifest = build_manifest(
        {
            "name": name,
            "version": version,
            "domain": "toxicity",
            "summary": f"{name} for the serve tests",
            "license": "Apache-2.0",
            "base_model": {"id": "tests/tiny-chat", "fingerprint": fingerprint},
            "created": "2026-11-29T10:00:00Z",
            "requires": "0.1.0",
        },
        weights,
    )
    signature = sign_manifest(manifest.canonical_bytes(), key) if key is not None else None
    return pack_patch(manifest, weights, signature)


def install_bytes(data: bytes, fingerprint: str, tmp_path: Path) -> None:
    """Record a patch as installed, as `ppatch install` leaves it (blob, then installed set)."""
    from patchfmt import read_patch

    manifest = read_patch(data).manifest
    staged = tmp_path / f"staged-{manifest.name.replace('/', '-')}-{manifest.version}.ppatch"
    staged.write_bytes(data)
    sha256 = store.file_sha256(staged)
    store.store_blob(staged, sha256)
    with store.model_lock(fingerprint):
        state = store.read_installed(fingerprint)
        entry = store.InstalledPatch(manifest.name, str(manifest.version), sha256, len(data))
        state.put(entry)
        store.write_installed(state)


@dataclass
class LiveServer:
    """A running `ppatch serve` app and the objects behind it."""

    url: str
    server: Any  # ppatch.serve.server.ModelServer
    clients: list[Any] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def openai(self) -> Any:
        from openai import OpenAI

        client = OpenAI(base_url=self.base_url, api_key="unused", max_retries=0, timeout=60)
        self.clients.append(client)
        return client

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def metric(self, name: str) -> float:
        """The value of one sample line of /metrics (`name` with its labels), 0 if absent."""
        with httpx.Client() as client:
            text = client.get(f"{self.url}/metrics").text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0


@pytest.fixture
def start_server(serve_model_dir: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start servers for the test (options as `ServeOptions` fields); all stop at its end."""
    import uvicorn

    from ppatch.serve.app import create_app
    from ppatch.serve.server import ServeOptions, load_server

    running: list[tuple[LiveServer, uvicorn.Server, threading.Thread, socket.socket]] = []

    def start(**options: Any) -> LiveServer:
        options.setdefault("watch_seconds", 0.05)
        server = load_server(serve_model_dir, ServeOptions(**options), device="cpu")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        config = uvicorn.Config(create_app(server), log_level="warning", lifespan="on")
        web = uvicorn.Server(config)
        thread = threading.Thread(target=web.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        live = LiveServer(f"http://127.0.0.1:{port}", server)
        running.append((live, web, thread, listener))
        live.wait_for(lambda: web.started, "the server to start")
        return live

    yield start
    for live, web, thread, listener in running:
        for client in live.clients:
            client.close()
        web.should_exit = True
        thread.join(timeout=30)
        listener.close()
