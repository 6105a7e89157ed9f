"""Client speed: `ppatch outdated --json` with 20 installed patches, `ppatch --help` start-up,
and install throughput of a 50 MB artifact against curl fetching the same URL.

Everything runs against a local `ppatch-registry serve` started here in a temporary directory,
so the figures measure the client, not a network. Run:

    .venv/bin/python benchmarks/client.py [--repeat 5] [--outdated-only] [--signed]
        [--baseline DIR]

`import_httpx_s` and `import_http_client_s` are what loading each HTTP stack costs (interpreter
start-up included); `httpx_stream_mb_per_s` downloads the 50 MB artifact through httpx's
streaming API, beside the install's own download stage (standard library where no proxy applies).

`--outdated-only` skips the 50 MB artifact (its publish, curl and the installs), for quick
start-up measurements. `--signed` runs `ppatch-registry tuf init` first, so `outdated` also
refreshes the signed index (tuf.ngclient) and checks every installed patch against it.
`outdated_imports_httpx` says whether the `outdated` run loaded httpx (it should not:
docs/cli.md). `outdated_20_patches_s` runs Python as this shell does; with
PYTHONDONTWRITEBYTECODE set (`bytecode_cache_disabled`), every run compiles the ppatch sources
again, which an installed wheel never does, so `outdated_cached_bytecode_s` repeats the
measurement with a bytecode cache (PYTHONPYCACHEPREFIX in the temporary folder, warmed first).
The `_cpu_s` figures (user + system time of the command) move less than wall times when other
work shares the machine.

`--baseline DIR` also times `outdated` with another version of the client, in the same run and
against the same registry, alternating one run each: DIR holds a `ppatch` entry (a symlink to
another checkout's `client/`), put first on PYTHONPATH. For example, before and after a change:

    git archive OLD | tar -x -C /tmp/old && mkdir /tmp/old/path
    ln -s /tmp/old/client /tmp/old/path/ppatch
    .venv/bin/python benchmarks/client.py --outdated-only --signed --baseline /tmp/old/path

Targets (docs/cli.md, docs/architecture.md): `outdated` under 0.3 s including interpreter
start-up; the download stage of an install at least 0.8x curl's throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from safetensors.numpy import save_file

from patchfmt import (
    build_manifest,
    fingerprint_model,
    pack_patch,
    public_key_to_pem,
    sign_manifest,
    weights_from_array,
)

PATCH_COUNT = 20
BIG_BYTES = 50 * 1024 * 1024
HIDDEN = 4096


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def registry_admin(home: Path, *argv: str) -> str:
    env = {**os.environ, "PPATCH_REGISTRY_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "registry_server.cli", *argv],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@contextlib.contextmanager
def running_registry(home: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PPATCH_")}
    env["PPATCH_REGISTRY_HOME"] = str(home)
    process = subprocess.Popen(
        [sys.executable, "-m", "registry_server.cli", "serve", "--port", str(port),
         "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def patch_bytes(
    name: str, fingerprint: str, key: Ed25519PrivateKey, shape: tuple[int, int]
) -> bytes:
    array = np.random.default_rng(len(name)).standard_normal(shape).astype(np.float32)
    weights = weights_from_array(array)
    manifest = build_manifest(
        {
            "name": name, "version": "1.0.0", "domain": "toxicity", "summary": "benchmark",
            "license": "Apache-2.0", "base_model": {"id": "bench/tiny", "fingerprint": fingerprint},
            "created": "2026-11-28T10:00:00Z", "requires": "0.1.0",
        },
        weights,
    )  # fmt: skip
    return pack_patch(manifest, weights, sign_manifest(manifest.canonical_bytes(), key))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    command: list[str],
    env: dict[str, str],
    repeat: int,
    ok: Callable[[int], bool],
    cpu: list[float] | None = None,
) -> float:
    """Median wall time of a subprocess, in seconds; each run's CPU seconds appended to `cpu`.

    CPU time (user + system of the process) moves far less than wall time when other work
    shares the machine, so it is the steadier figure for before/after comparisons.
    """
    times = []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), children_cpu()
        code = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=False).returncode
        times.append(time.perf_counter() - start)
        if cpu is not None:
            cpu.append(children_cpu() - start_cpu)
        if not ok(code):
            raise SystemExit(f"{' '.join(command)} exited {code}")
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--outdated-only", action="store_true", help="skip the 50 MB download measurements"
    )
    parser.add_argument("--signed", action="store_true", help="the registry signs its index")
    parser.add_argument(
        "--baseline", type=Path, metavar="DIR", help="also time outdated with the client in DIR"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ppatch-bench-"))
    try:
        return run(
            root,
            args.repeat,
            outdated_only=args.outdated_only,
            signed=args.signed,
            baseline=args.baseline,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def imports_httpx(ppatch: list[str], argv: list[str], env: dict[str, str]) -> bool:
    """Whether running `ppatch ARGV` imported httpx (from `python -X importtime`)."""
    done = subprocess.run(
        [ppatch[0], "-X", "importtime", *ppatch[1:], *argv],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return any(line.split("|")[-1].strip() == "httpx" for line in done.stderr.splitlines())


def alternating(
    commands: list[tuple[list[str], dict[str, str]]], repeat: int
) -> list[tuple[float, float]]:
    """(median wall, median CPU) seconds of each command, run in turn `repeat` times, so that
    a change in the machine's load weighs on all of them alike."""
    walls: list[list[float]] = [[] for _ in commands]
    cpus: list[list[float]] = [[] for _ in commands]
    for _ in range(repeat):
        for position, (command, env) in enumerate(commands):
            walls[position].append(timed(command, env, 1, lambda c: c == 0, cpus[position]))
    return [
        (statistics.median(wall), statistics.median(cpu))
        for wall, cpu in zip(walls, cpus, strict=True)
    ]


def run(
    root: Path,
    repeat: int,
    *,
    outdated_only: bool = False,
    signed: bool = False,
    baseline: Path | None = None,
) -> int:
    registry_home, client_home, model = root / "registry", root / "client", root / "model"
    registry_home.mkdir()
    model.mkdir()
    rng = np.random.default_rng(0)
    save_file(
        {"w": rng.standard_normal((64, 64)).astype(np.float32)}, str(model / "model.safetensors")
    )
    fingerprint = fingerprint_model(model, cache_dir=root / "fp")
    key = Ed25519PrivateKey.generate()
    (root / "key.pub").write_bytes(public_key_to_pem(key))
    registry_admin(registry_home, "namespace", "create", "bench")
    registry_admin(registry_home, "key", "add", "bench", str(root / "key.pub"))
    token = registry_admin(registry_home, "token", "create", "bench", "--scope", "publish")
    if signed:
        registry_admin(registry_home, "tuf", "init", "--key-dir", str(root / "root-keys"))

    env = {k: v for k, v in os.environ.items() if not k.startswith("PPATCH_")}
    env.update(PPATCH_HOME=str(client_home), PPATCH_NO_PROGRESS="1", PPATCH_TOKEN=token)
    ppatch = [sys.executable, "-m", "ppatch.cli.main"]
    with running_registry(registry_home) as url:
        env["PPATCH_REGISTRY"] = url
        names = [f"bench/p{n:02d}" for n in range(PATCH_COUNT)]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            for name in names:
                data = patch_bytes(name, fingerprint, key, (4, 64))
                short = name.split("/")[1]
                http.post(f"/api/v1/packages/bench/{short}/releases",
                          files={"file": (f"{short}.ppatch", data)}).raise_for_status()  # fmt: skip
        subprocess.run([*ppatch, "install", *names, "--model", str(model)], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip

        bare = timed([sys.executable, "-c", "pass"], env, repeat, lambda c: c == 0)
        help_time = timed([*ppatch, "--help"], env, repeat, lambda c: c == 0)
        # What each HTTP stack costs to load, interpreter start-up included.
        import_httpx = timed([sys.executable, "-c", "import httpx"], env, repeat, lambda c: c == 0)
        import_stdlib = timed(
            [sys.executable, "-c", "import http.client, ssl"], env, repeat, lambda c: c == 0
        )
        outdated_argv = ["outdated", "--model", str(model), "--json"]
        outdated_cpu: list[float] = []
        outdated = timed([*ppatch, *outdated_argv], env, repeat, lambda c: c == 0, outdated_cpu)
        cached_env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached_env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        timed([*ppatch, *outdated_argv], cached_env, 1, lambda c: c == 0)  # fills the cache
        cached_cpu: list[float] = []
        cached = timed([*ppatch, *outdated_argv], cached_env, repeat, lambda c: c == 0, cached_cpu)
        figures: dict[str, object] = {
            "python_startup_s": round(bare, 3),
            "help_s": round(help_time, 3),
            "import_httpx_s": round(import_httpx, 3),
            "import_http_client_s": round(import_stdlib, 3),
            "outdated_20_patches_s": round(outdated, 3),
            "outdated_cpu_s": round(statistics.median(outdated_cpu), 3),
            "bytecode_cache_disabled": bool(env.get("PYTHONDONTWRITEBYTECODE")),
            "outdated_cached_bytecode_s": round(cached, 3),
            "outdated_cached_bytecode_cpu_s": round(statistics.median(cached_cpu), 3),
            "outdated_target_s": 0.3,
            "outdated_imports_httpx": imports_httpx(ppatch, outdated_argv, env),
            "signed_index": signed,
        }
        if baseline is not None:
            baseline_env = {**env, "PYTHONPATH": str(baseline.resolve())}
            command = [*ppatch, *outdated_argv]
            timed(command, baseline_env, 1, lambda c: c == 0)  # the baseline's first contact
            (this_wall, this_cpu), (base_wall, base_cpu) = alternating(
                [(command, env), (command, baseline_env)], repeat
            )
            figures.update(
                {
                    "alternating_outdated_s": round(this_wall, 3),
                    "alternating_outdated_cpu_s": round(this_cpu, 3),
                    "alternating_baseline_outdated_s": round(base_wall, 3),
                    "alternating_baseline_outdated_cpu_s": round(base_cpu, 3),
                    "baseline": str(baseline),
                }
            )
        if not outdated_only:
            figures.update(download_figures(root, url, token, fingerprint, key, model, env, repeat))
    print(json.dumps(figures, indent=2))
    return 0


def download_figures(
    root: Path,
    url: str,
    token: str,
    fingerprint: str,
    key: Ed25519PrivateKey,
    model: Path,
    env: dict[str, str],
    repeat: int,
) -> dict[str, object]:
    """A 50 MB artifact: curl, the install's download stage, and the whole install command."""
    ppatch = [sys.executable, "-m", "ppatch.cli.main"]
    big = patch_bytes("bench/big", fingerprint, key, (BIG_BYTES // (4 * HIDDEN), HIDDEN))
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        answer = http.post("/api/v1/packages/bench/big/releases",
                           files={"file": ("big.ppatch", big)})  # fmt: skip
        answer.raise_for_status()
        big_url = url + answer.json()["url"]
    curl = timed(["curl", "-sf", "-o", str(root / "curl.out"), big_url], env, repeat,
                 lambda c: c == 0)  # fmt: skip
    download = download_stage(url, big_url, big, env, repeat)
    through_httpx = httpx_download(big_url, big, repeat)
    install_cli = timed(
        [*ppatch, "install", "bench/big", "--model", str(model), "--upgrade"],
        {**env, "PPATCH_HOME": str(root / "fresh")},
        1,
        lambda c: c == 0,
    )
    size_mb = len(big) / 1e6
    return {
        "big_artifact_mb": round(size_mb, 1),
        "curl_mb_per_s": round(size_mb / curl, 1),
        "download_stage_mb_per_s": round(size_mb / download, 1),
        "download_vs_curl": round(curl / download, 2),
        "httpx_stream_mb_per_s": round(size_mb / through_httpx, 1),
        "httpx_stream_vs_curl": round(curl / through_httpx, 2),
        "install_command_s": round(install_cli, 3),
        "install_command_vs_curl": round(curl / install_cli, 2),
    }


def download_stage(url: str, big_url: str, data: bytes, env: dict[str, str], repeat: int) -> float:
    """The install's download: stream to a temporary file while hashing, as `install` does."""
    os.environ.update({k: v for k, v in env.items() if k.startswith("PPATCH_")})
    from ppatch import store
    from ppatch.registry.client import RegistryClient

    expected = hashlib.sha256(data).hexdigest()
    times = []
    with RegistryClient(url) as client:
        for _ in range(repeat):
            start = time.perf_counter()
            with store.temporary_download() as (_path, handle):
                digest = client.download(big_url, handle)
                handle.flush()
            times.append(time.perf_counter() - start)
            assert digest == expected
    return statistics.median(times)


def httpx_download(big_url: str, data: bytes, repeat: int) -> float:
    """The same download through httpx's streaming API, for the choice of stack (docs)."""
    expected = hashlib.sha256(data).hexdigest()
    times = []
    with httpx.Client() as client, tempfile.TemporaryFile() as handle:
        for _ in range(repeat):
            handle.seek(0)
            start = time.perf_counter()
            hasher = hashlib.sha256()
            with client.stream("GET", big_url) as answer:
                answer.raise_for_status()
                for chunk in answer.iter_bytes(1024 * 1024):
                    hasher.update(chunk)
                    handle.write(chunk)
            handle.flush()
            times.append(time.perf_counter() - start)
            assert hasher.hexdigest() == expected
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
