"""A bounded soak of one `ppatch-registry serve` process on loopback (not part of the suite).

    python benchmarks/soak.py --seconds 120 --clients 8

Mixed traffic for a fixed time: 50% update checks, 30% index reads (half of them polls with
the current ETag, answered 304), 20% blob downloads. Prints one JSON report: requests served,
errors (any status other than the expected 200/304, or a transport error; target 0), p50 and
p99 latency, and the server's RSS sampled every 10 s (a leak shows as a rising trend).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

import patchfmt
from registry_server import admin
from registry_server.db import create_registry_engine, session_factory
from registry_server.migrations import upgrade

FINGERPRINT = "sha256:" + "d" * 64


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _patch(key: patchfmt.Ed25519PrivateKey, version: str, seed: int) -> bytes:
    array = np.random.default_rng(seed).standard_normal((20, 64)).astype(np.float32)
    weights = patchfmt.weights_from_array(array)
    manifest = patchfmt.build_manifest(
        {
            "name": "acme/toxicity",
            "version": version,
            "domain": "toxicity",
            "summary": "soak",
            "license": "Apache-2.0",
            "base_model": {"id": "tiny", "fingerprint": FINGERPRINT},
            "evaluation": {"toxicity_probability": 0.1},
            "created": "2026-11-28T10:00:00Z",
        },
        weights,
    )
    return patchfmt.pack_patch(
        manifest, weights, patchfmt.sign_manifest(manifest.canonical_bytes(), key)
    )


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sample-every", type=float, default=10)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="ppatch-soak-"))
    url = f"sqlite:///{home / 'registry.db'}"
    engine = create_registry_engine(url)
    upgrade(engine)
    key = patchfmt.generate_private_key()
    with session_factory(engine)() as session:
        admin.create_namespace(session, "acme", admin.CLI_ACTOR)
        admin.add_key(
            session, "acme", patchfmt.public_key_to_pem(key.public_key()), admin.CLI_ACTOR
        )
        token = admin.create_token(session, "acme", "publish", admin.CLI_ACTOR).value
        session.commit()
    engine.dispose()

    port = _free_port()
    env = {
        **os.environ,
        "PPATCH_REGISTRY_HOME": str(home),
        "PPATCH_REGISTRY_DATABASE_URL": url,
    }
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "ppatch-registry"), "serve", "--port", str(port),
         "--log-level", "warning"],
        env=env,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        blobs = []
        with httpx.Client(base_url=base, timeout=30) as client:
            for i in range(3):
                answer = client.post(
                    "/api/v1/packages/acme/toxicity/releases",
                    files={"file": ("p.ppatch", _patch(key, f"1.0.{i}", i))},
                    headers={"Authorization": f"Bearer {token}"},
                )
                answer.raise_for_status()
                blobs.append(answer.json()["url"])
            etag = client.get("/api/v1/packages/acme/toxicity").headers["etag"]
        check = {
            "installed": [{"name": "acme/toxicity", "version": "1.0.0", "fingerprint": FINGERPRINT}]
        }
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=base, timeout=30) as client:
                while not stop.is_set():
                    pick = rng.random()
                    started = time.perf_counter()
                    try:
                        if pick < 0.5:
                            response = client.post("/api/v1/updates", json=check)
                            ok = response.status_code == 200
                        elif pick < 0.8:
                            poll = {"If-None-Match": etag} if rng.random() < 0.5 else {}
                            response = client.get("/api/v1/packages/acme/toxicity", headers=poll)
                            ok = response.status_code == (304 if poll else 200)
                        else:
                            response = client.get(rng.choice(blobs))
                            ok = response.status_code == 200
                        problem = None if ok else f"{response.status_code} {response.url.path}"
                    except httpx.HTTPError as error:
                        problem = type(error).__name__
                    elapsed = time.perf_counter() - started
                    with lock:
                        latencies.append(elapsed)
                        if problem:
                            errors.append(problem)

        rss = [(0.0, _rss_kib(server.pid))]
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while (elapsed := time.monotonic() - started) < args.seconds:
            time.sleep(min(args.sample_every, args.seconds - elapsed))
            rss.append((round(time.monotonic() - started, 1), _rss_kib(server.pid)))
        stop.set()
        for thread in threads:
            thread.join()
        duration = time.monotonic() - started
        ordered = sorted(latencies)
        report = {
            "seconds": round(duration, 1),
            "clients": args.clients,
            "requests": len(latencies),
            "requests_per_second": round(len(latencies) / duration, 1),
            "errors": len(errors),
            "error_kinds": sorted(set(errors))[:10],
            "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2),
            "rss_mib": [(t, round(kib / 1024, 1)) for t, kib in rss],
        }
        print(json.dumps(report))
        return 0 if not errors else 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
