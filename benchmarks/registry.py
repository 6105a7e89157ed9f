"""Registry throughput: 304 index checks and batch update checks against the framework's ceiling.

Starts, on loopback ports, one uvicorn process per server (the same way for each: one worker,
`ppatch-registry serve` or plain uvicorn), fills the registry with 20 packages, then drives each
endpoint for a bounded time from a second process (`wrk` when installed, else an httpx/asyncio
load generator) at 64 concurrent connections:

- ceiling: a minimal FastAPI endpoint returning a constant;
- index-304: `GET /api/v1/packages/{ns}/{name}` with `If-None-Match` (answered 304);
- updates-20: `POST /api/v1/updates` with 20 installed patches.

Targets: index-304 at >= 0.7x the ceiling's requests per second, p99 under 50 ms, on SQLite and
on PostgreSQL. Run: `.venv/bin/python benchmarks/registry.py [--duration 5] [--databases sqlite
postgres]`. Results are also written to benchmarks/results/registry.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import patchfmt

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 64
# One wrk thread drives 64 connections at well over the rates measured here; a second would take
# CPU from the server under test on a 2-core machine.
WRK_THREADS = 1
PACKAGES = 20
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

CEILING_APP = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/ceiling")
async def ceiling():
    return {"ok": True}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within 60 s")


@contextmanager
def server(argv: list[str], env: dict[str, str], probe: str) -> Iterator[None]:
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(probe, process)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- load generation --------------------------------------------------------------------------


def _wrk_seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(
    url: str, duration: float, method: str, headers: dict[str, str], body: bytes | None
) -> dict[str, Any]:
    lines = [f"wrk.method = {json.dumps(method)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(body.decode())}")
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "request.lua"
        script.write_text("\n".join(lines) + "\n")
        result = subprocess.run(
            ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s",
             "--latency", "-s", str(script), url],
            capture_output=True, text=True, check=True, timeout=duration + 60,
        )  # fmt: skip
    output = result.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    if "99" not in percentiles:
        raise RuntimeError(f"unexpected wrk output:\n{output}\n{result.stderr}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": rps,
        "p50_ms": _wrk_seconds(percentiles["50"]) * 1e3,
        "p99_ms": _wrk_seconds(percentiles["99"]) * 1e3,
        "bad_responses": int(errors.group(1)) if errors else 0,
        "tool": "wrk",
    }


async def _httpx_load(
    url: str, duration: float, method: str, headers: dict[str, str], body: bytes | None
) -> dict[str, Any]:
    latencies: list[float] = []
    bad = 0
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal bad
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.request(method, url, headers=headers, content=body)
                latencies.append(time.perf_counter() - started)
                bad += response.status_code >= 400

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
        "bad_responses": bad,
        "tool": "httpx",
    }


def _load_in_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    # The load generator runs in its own process, so it never shares a GIL with the server.
    result = subprocess.run(
        [sys.executable, __file__, "--load", json.dumps(spec)],
        capture_output=True, text=True, check=True, timeout=spec["duration"] + 120,
    )  # fmt: skip
    return dict(json.loads(result.stdout))


def measure(url: str, duration: float, method: str = "GET", headers: dict[str, str] | None = None,
            body: bytes | None = None) -> dict[str, Any]:  # fmt: skip
    headers = headers or {}
    if shutil.which("wrk"):
        return run_wrk(url, duration, method, headers, body)
    spec = {"url": url, "duration": duration, "method": method, "headers": headers,
            "body": body.decode() if body else None}  # fmt: skip
    return _load_in_subprocess(spec)


# -- the registry under test ------------------------------------------------------------------


def build_patch(key: Any, name: str, version: str, fingerprint: str, seed: int) -> bytes:
    weights = patchfmt.weights_from_array(
        np.random.default_rng(seed).standard_normal((8, 64)).astype(np.float32)
    )
    manifest = patchfmt.build_manifest(
        {"name": name, "version": version, "domain": "toxicity", "summary": "benchmark patch",
         "license": "Apache-2.0", "base_model": {"id": "bench", "fingerprint": fingerprint}},
        weights,
    )  # fmt: skip
    return patchfmt.pack_patch(
        manifest, weights, patchfmt.sign_manifest(manifest.canonical_bytes(), key)
    )


def admin(env: dict[str, str], *argv: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "registry_server.cli", *argv],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.strip()


def populate(base: str, env: dict[str, str], home: Path) -> tuple[str, list[dict[str, str]]]:
    """20 packages with 3 releases each; the first package's index URL and the installed set."""
    key = patchfmt.generate_private_key()
    admin(env, "namespace", "create", "bench")
    key_file = home / "bench.pub"
    key_file.write_bytes(patchfmt.public_key_to_pem(key.public_key()))
    admin(env, "key", "add", "bench", str(key_file))
    token = admin(env, "token", "create", "bench")
    fingerprint = "sha256:" + "5" * 64
    installed = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
        for number in range(PACKAGES):
            name = f"patch{number:02d}"
            for minor in range(3):
                data = build_patch(
                    key, f"bench/{name}", f"1.{minor}.0", fingerprint, number * 10 + minor
                )
                response = client.post(
                    f"/api/v1/packages/bench/{name}/releases", files={"file": ("p.ppatch", data)}
                )
                response.raise_for_status()
            installed.append(
                {"name": f"bench/{name}", "version": "1.0.0", "fingerprint": fingerprint}
            )
    return "/api/v1/packages/bench/patch00", installed


@contextmanager
def database(kind: str) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None  # the default: SQLite under the data directory
        return
    import psycopg

    name = f"ppatch_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median throughput and the median p99 over the rounds, every round's figures beside
    them: one stall of the shared machine moves a single round's p99 by hundreds of ms."""
    ordered = sorted(runs, key=lambda run: run["rps"])
    p99s = sorted(run["p99_ms"] for run in runs)
    return {
        **ordered[len(ordered) // 2],
        "p99_ms": p99s[len(p99s) // 2],
        "rounds_rps": [round(run["rps"]) for run in runs],
        "rounds_p99_ms": [round(run["p99_ms"], 1) for run in runs],
    }


def bench_database(kind: str, ceiling_url: str, duration: float, rounds: int) -> dict[str, Any]:
    """Ceiling and index-304 measured in alternating rounds, so both see the same machine
    load (this machine is shared and noisy); medians reported."""
    with tempfile.TemporaryDirectory(prefix=f"ppatch-bench-{kind}-") as tmp, database(kind) as url:
        home = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PPATCH_")}
        env["PPATCH_REGISTRY_HOME"] = str(home)
        if url:
            env["PPATCH_REGISTRY_DATABASE_URL"] = url
            admin(env, "db", "upgrade")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "registry_server.cli", "serve", "--port", str(port),
                "--log-level", "warning"]  # fmt: skip
        with server(argv, env, base + "/healthz"):
            index_path, installed = populate(base, env, home)
            etag = httpx.get(base + index_path).headers["etag"]
            check = httpx.get(base + index_path, headers={"If-None-Match": etag})
            assert check.status_code == 304, check.status_code
            body = json.dumps({"installed": installed}).encode()
            answer = httpx.post(base + "/api/v1/updates", content=body,
                                headers={"Content-Type": "application/json"})  # fmt: skip
            assert answer.status_code == 200 and len(answer.json()["results"]) == PACKAGES
            ceilings, indexes = [], []
            for _ in range(rounds):
                ceilings.append(measure(ceiling_url, duration))
                indexes.append(measure(base + index_path, duration,
                                       headers={"If-None-Match": etag}))  # fmt: skip
            updates = measure(
                base + "/api/v1/updates", duration, "POST",
                {"Content-Type": "application/json"}, body,
            )  # fmt: skip
    ratios = sorted(i["rps"] / c["rps"] for c, i in zip(ceilings, indexes, strict=True))
    return {
        "ceiling": _median_run(ceilings),
        "index_304": _median_run(indexes),
        "updates_20": updates,
        "index_304_vs_ceiling": ratios[len(ratios) // 2],
        "round_ratios": [round(r, 2) for r in ratios],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgres"],
                        choices=["sqlite", "postgres"])  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="alternating ceiling/304 rounds")
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        spec = json.loads(args.load)
        body = spec["body"].encode() if spec["body"] else None
        result = asyncio.run(
            _httpx_load(spec["url"], spec["duration"], spec["method"], spec["headers"], body)
        )
        print(json.dumps(result))
        return 0
    results: dict[str, Any] = {"connections": CONNECTIONS, "duration_s": args.duration,
                               "rounds": args.rounds, "load_average": os.getloadavg()}  # fmt: skip
    ok = True
    port = free_port()
    ceiling_url = f"http://127.0.0.1:{port}/ceiling"
    with server([sys.executable, "-c", CEILING_APP, str(port)], dict(os.environ), ceiling_url):
        for kind in args.databases:
            figures = bench_database(kind, ceiling_url, args.duration, args.rounds)
            ratio = figures["index_304_vs_ceiling"]
            passed = ratio >= 0.7 and figures["index_304"]["p99_ms"] < 50
            ok &= passed
            results[kind] = {**figures, "meets_targets": passed}
            for label in ("ceiling", "index_304", "updates_20"):
                row = figures[label]
                rounds = (
                    f", rounds {row['rounds_rps']} req/s, p99 {row['rounds_p99_ms']} ms"
                    if "rounds_rps" in row
                    else ""
                )
                print(f"[{kind}] {label}: {row['rps']:.0f} req/s, p50 {row['p50_ms']:.1f} ms, "
                      f"p99 {row['p99_ms']:.1f} ms, non-2xx/3xx {row['bad_responses']} "
                      f"({row['tool']}{rounds})")  # fmt: skip
            print(f"[{kind}] index_304 / ceiling = {ratio:.2f} (rounds {figures['round_ratios']}; "
                  f"target >= 0.70 and p99 < 50 ms): {'PASS' if passed else 'FAIL'}")  # fmt: skip
    print(f"load average at start: {results['load_average']}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "registry.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
