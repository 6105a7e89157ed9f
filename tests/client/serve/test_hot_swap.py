"""Hot swap: a change of the installed set is served without a restart, atomically, and requests
in flight finish on the set they started with; a bad set or a failed upgrade changes nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from ppatch import store
from tests.client.serve.conftest import LiveServer, install_bytes, patch_bytes

PROMPT = "the cat sat on"


def complete(live: LiveServer, model: str, max_tokens: int = 6) -> tuple[str, str]:
    """(the `ppatch-patches` header, the text) of a greedy completion."""
    with httpx.Client(timeout=60) as client:
        response = client.post(
            f"{live.base_url}/completions",
            json={"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0},
        )
    assert response.status_code == 200, response.text
    return response.headers["ppatch-patches"], response.json()["choices"][0]["text"]


def served_header(live: LiveServer) -> str:
    with httpx.Client() as client:
        header: str = client.get(f"{live.url}/healthz").json()["patches"]
    return header


def test_install_and_remove_by_another_process_are_swapped_in_without_a_restart(
    start_server: Any, serve_model_dir: Path, serve_fingerprint: str, hidden_size: int,
    tmp_path: Path,
) -> None:  # fmt: skip
    live: LiveServer = start_server()
    model = serve_model_dir.name
    assert complete(live, model)[0] == ""
    bare_text = complete(live, model)[1]

    install_bytes(patch_bytes("acme/first", "1.0.0", serve_fingerprint, hidden_size, seed=1),
                  serve_fingerprint, tmp_path)  # fmt: skip
    live.wait_for(lambda: served_header(live) == "acme/first@1.0.0", "the install to be served")
    header, text = complete(live, model)
    assert header == "acme/first@1.0.0"
    assert text != bare_text
    ids = [entry.id for entry in live.openai().models.list().data]
    assert f"{model}:acme/first" in ids
    assert live.metric("ppatch_serve_swaps_total") == 1

    removed = subprocess.run(
        [sys.executable, "-m", "ppatch.cli.main", "remove", "acme/first", "--model",
         str(serve_model_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert removed.returncode == 0, removed.stderr
    live.wait_for(lambda: served_header(live) == "", "the removal to be served")
    assert complete(live, model) == ("", bare_text)
    assert live.metric("ppatch_serve_swaps_total") == 2
    assert live.metric("ppatch_serve_patch_set_generation") == 2


def test_a_request_in_flight_finishes_on_the_set_it_started_with(
    start_server: Any, serve_model_dir: Path, serve_fingerprint: str, hidden_size: int,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from ppatch.serve import engine

    old = patch_bytes("acme/first", "1.0.0", serve_fingerprint, hidden_size, seed=1)
    new = patch_bytes("acme/first", "1.1.0", serve_fingerprint, hidden_size, seed=5)
    install_bytes(old, serve_fingerprint, tmp_path)
    live: LiveServer = start_server()
    model = serve_model_dir.name
    expected_old = complete(live, model, max_tokens=12)

    entered, release = threading.Event(), threading.Event()
    real = engine.run_batch

    def held(jobs: Any) -> int:
        entered.set()
        release.wait(timeout=60)
        return real(jobs)

    monkeypatch.setattr(engine, "run_batch", held)
    results: list[tuple[str, str]] = []
    in_flight = threading.Thread(target=lambda: results.append(complete(live, model, 12)))
    in_flight.start()
    assert entered.wait(timeout=60)
    install_bytes(new, serve_fingerprint, tmp_path)  # upgrade while the request runs
    live.wait_for(lambda: served_header(live) == "acme/first@1.1.0", "the upgrade to be served")
    release.set()
    in_flight.join(timeout=60)
    monkeypatch.setattr(engine, "run_batch", real)
    assert results == [expected_old]
    header, text = complete(live, model, max_tokens=12)
    assert header == "acme/first@1.1.0"
    assert text != expected_old[1]


def test_a_broken_installed_set_is_refused_and_the_running_set_keeps_serving(
    start_server: Any, serve_model_dir: Path, serve_fingerprint: str, hidden_size: int,
    tmp_path: Path,
) -> None:  # fmt: skip
    install_bytes(patch_bytes("acme/first", "1.0.0", serve_fingerprint, hidden_size, seed=1),
                  serve_fingerprint, tmp_path)  # fmt: skip
    live: LiveServer = start_server()
    model = serve_model_dir.name
    before = complete(live, model)
    state_file = store.installed_set_path(serve_fingerprint)
    good = state_file.read_text()

    state_file.write_text("{not json")
    live.wait_for(lambda: live.metric("ppatch_serve_swap_failures_total") >= 1, "a failed swap")
    assert complete(live, model) == before
    with httpx.Client() as client:
        health = client.get(f"{live.url}/healthz").json()
    assert health["status"] == "ok"
    assert "not valid JSON" in health["last_swap_error"]

    # A set naming a file that is not in the store is refused whole, too.
    document = json.loads(good)
    document["patches"].append({**document["patches"][0], "name": "acme/ghost",
                                "sha256": hashlib.sha256(b"ghost").hexdigest()})  # fmt: skip
    state_file.write_text(json.dumps(document))
    live.wait_for(lambda: live.metric("ppatch_serve_swap_failures_total") >= 2, "a failed swap")
    assert complete(live, model) == before
    assert live.server.state.current.generation == 0

    state_file.write_text(good)  # the same set again: nothing to swap
    live.wait_for(lambda: live.server.state.last_error is None, "the error to clear")
    assert live.metric("ppatch_serve_swaps_total") == 0
    assert complete(live, model) == before


def test_auto_upgrade_serves_a_published_release_and_leaves_a_yanked_one(
    start_server: Any, ppatch: Any, registry: Any, serve_model_dir: Path,
    serve_fingerprint: str, hidden_size: int, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("PPATCH_REGISTRY", registry.url)
    key = registry.keys["acme"]

    def publish(version: str, seed: int) -> None:
        registry.publish(patch_bytes("acme/serve-swap", version, serve_fingerprint,
                                     hidden_size, seed=seed, key=key))  # fmt: skip

    publish("1.0.0", 21)
    assert ppatch("install", "acme/serve-swap", "--model", serve_model_dir).code == 0
    live: LiveServer = start_server(auto_upgrade_seconds=0.2)
    model = serve_model_dir.name
    assert complete(live, model)[0] == "acme/serve-swap@1.0.0"

    publish("1.1.0", 22)
    live.wait_for(lambda: served_header(live) == "acme/serve-swap@1.1.0", "the new release")
    header, text = complete(live, model)
    assert header == "acme/serve-swap@1.1.0"
    import ppatch as library

    patched = library.load_model(serve_model_dir, device="cpu")
    assert [(p.name, p.version) for p in patched.patches] == [("acme/serve-swap", "1.1.0")]
    assert patched.complete(PROMPT, max_new_tokens=6, do_sample=False) == [text]

    monkeypatch.setenv("PPATCH_TOKEN", registry.tokens["acme"])
    assert ppatch("yank", "acme/serve-swap@1.1.0", "--reason", "too lax").code == 0
    live.wait_for(lambda: served_header(live) == "acme/serve-swap@1.0.0", "the move off the yank")
    assert ppatch("yank", "acme/serve-swap@1.0.0", "--reason", "withdrawn").code == 0
    live.wait_for(lambda: served_header(live) == "", "the yanked patch to be removed")
    assert store.read_installed(serve_fingerprint).patches == []
    assert complete(live, model)[0] == ""
    assert live.metric("ppatch_serve_swaps_total") == 3
    assert live.metric('ppatch_serve_upgrade_checks_total{outcome="changed"}') == 3


def test_a_failed_upgrade_leaves_the_running_set_serving(
    start_server: Any, ppatch: Any, registry: Any, serve_model_dir: Path,
    serve_fingerprint: str, hidden_size: int, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("PPATCH_REGISTRY", registry.url)
    key = registry.keys["acme"]
    first = patch_bytes("acme/serve-fail", "1.0.0", serve_fingerprint, hidden_size, seed=31,
                        key=key)  # fmt: skip
    registry.publish(first)
    assert ppatch("install", "acme/serve-fail", "--model", serve_model_dir).code == 0
    installed_before = store.read_installed(serve_fingerprint)
    live: LiveServer = start_server(auto_upgrade_seconds=0.2)
    model = serve_model_dir.name
    before = complete(live, model)

    second = patch_bytes("acme/serve-fail", "1.1.0", serve_fingerprint, hidden_size, seed=32,
                         key=key)  # fmt: skip
    registry.publish(second)
    blob = registry.blob_file(hashlib.sha256(second).hexdigest())
    blob.write_bytes(bytes(len(second)))  # the mirror serves damaged bytes
    failed = 'ppatch_serve_upgrade_checks_total{outcome="failed"}'
    live.wait_for(lambda: live.metric(failed) >= 2, "failed upgrade checks")
    assert complete(live, model) == before
    assert store.read_installed(serve_fingerprint) == installed_before
    with httpx.Client() as client:
        health = client.get(f"{live.url}/healthz").json()
    assert "does not match the index" in health["last_upgrade_error"]
    assert health["patches"] == "acme/serve-fail@1.0.0"
    assert live.metric("ppatch_serve_swaps_total") == 0

    blob.write_bytes(second)  # repaired: the next check upgrades
    live.wait_for(lambda: served_header(live) == "acme/serve-fail@1.1.0", "the repaired upgrade")
