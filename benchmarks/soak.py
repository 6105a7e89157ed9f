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
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

import patchfmt

# The server-start loop, namespace setup and patch builder are the hardening tests' own.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.hardening import live_registry as live

FINGERPRINT = live.FINGERPRINT


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
    url = live.sqlite_database(home)
    key = patchfmt.generate_private_key()
    token = live.prepare_registry(url, key)
    registry = live.LiveRegistry(home, url)
    registry.start()
    assert registry.process is not None
    server = registry.process
    base = registry.url
    try:
        blobs = []
        with httpx.Client(base_url=base, timeout=30) as client:
            for i in range(3):
                patch = live.build_patch(key, f"1.0.{i}", seed=i, size=20, width=64)
                answer = live.publish(client, token, patch)
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
        registry.kill()


if __name__ == "__main__":
    sys.exit(main())
