"""MiniLM behind `onnxport serve`: throughput and latency, dynamic batching on and off.

A load generator (aiohttp, one event loop, on loopback) keeps C requests in flight, for C in
--concurrency, against local Ray Serve deployments of the exported all-MiniLM-L6-v2
(feature-extraction: each answer is the pipeline's token embeddings as JSON), behind Ray
Serve's default Python HTTP proxy and behind its bundled HAProxy (--ingress haproxy). The
baseline is the same pipeline called in a loop in this process, one request at a time.

The machine flips between speed states every few seconds, so every served block is paired
with a baseline block run just before it: the table gives the median block's requests/s, p50
and p99 latency over all measured requests, and the median of the paired ratios
(served / baseline). One warm-up pair runs first for every setting.

    python benchmarks/serve.py                      # defaults below
    python benchmarks/serve.py --requests 200 --blocks 5 --concurrency 1,8,32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

TEXTS = [
    "Hi.",
    "The cat sat on the mat.",
    "ONNX Runtime runs exported models on servers, phones and browsers alike.",
    "How do I export a transformer?",
    "Paris is the capital of France.",
    "Quantization makes models smaller.",
    "I love this film!",
    "Embeddings turn sentences into vectors that can be compared by cosine similarity.",
]
Block = Callable[[], tuple[float, list[float]]]  # -> (seconds, per-request latencies)


@dataclass
class Row:
    setting: str
    concurrency: int
    rps: float
    ratio: float
    p50_ms: float
    p99_ms: float


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def paired(
    run: Block, base: Block, count: int, baseline_rates: list[float]
) -> tuple[float, float, list[float]]:
    """Median rate of `run`, median of its ratios to `base` blocks run just before each."""
    base()
    run()  # warm-up pair
    rates, ratios, latencies = [], [], []
    for _ in range(count):
        base_seconds, base_latencies = base()
        seconds, block_latencies = run()
        base_rate = len(base_latencies) / base_seconds
        rate = len(block_latencies) / seconds
        baseline_rates.append(base_rate)
        rates.append(rate)
        ratios.append(rate / base_rate)
        latencies.extend(block_latencies)
    return statistics.median(rates), statistics.median(ratios), latencies


def baseline_block(model_dir: Path, requests: int) -> tuple[Block, list[float]]:
    """A block of the in-process pipeline loop, and the list its latencies collect in."""
    from onnxport import pipeline

    pipe = pipeline("feature-extraction", model_dir)
    all_latencies: list[float] = []

    def run_block() -> tuple[float, list[float]]:
        latencies = []
        start = time.perf_counter()
        for i in range(requests):
            began = time.perf_counter()
            pipe(TEXTS[i % len(TEXTS)])
            latencies.append(time.perf_counter() - began)
        all_latencies.extend(latencies)
        return time.perf_counter() - start, latencies

    return run_block, all_latencies


def _ms(latencies: list[float]) -> tuple[float, float]:
    return percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000


async def _load(url: str, concurrency: int, requests: int) -> tuple[float, list[float]]:
    import aiohttp

    latencies: list[float] = []
    queue = list(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while queue:
                i = queue.pop()
                body = json.dumps({"inputs": TEXTS[i % len(TEXTS)]})
                began = time.perf_counter()
                async with session.post(url, data=body) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}: {await response.text()}")
                latencies.append(time.perf_counter() - began)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, latencies


def served(
    model_dir: Path,
    ingress: str,
    replicas: int,
    base: Block,
    baseline_rates: list[float],
    args: argparse.Namespace,
) -> list[Row]:
    """One local Ray instance per ingress: the batching and non-batching apps side by side."""
    import ray
    from ray import serve as ray_serve

    from onnxport import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Ray reserves 0.5 CPU per replica so both apps fit; threads are set explicitly.
    options = {"replicas": replicas, "cpus_per_replica": 0.5, "threads": 2 // replicas}
    service = serve.start(
        model_dir,
        port=port,
        ingress=ingress,
        route_prefix="/batched",
        batch_wait_ms=args.batch_wait_ms,
        **options,
    )
    ray_serve.run(
        serve.deployment(model_dir, max_batch_size=1, **options),
        name="unbatched",
        route_prefix="/unbatched",
    )
    root = service.url.removesuffix("/batched")
    rows = []
    try:
        for route, label in (("batched", "batch <= 16"), ("unbatched", "batching off")):
            label = f"{ingress}, {replicas} replica(s), {label}"
            for concurrency in args.concurrency:

                def run(c: int = concurrency, r: str = route) -> tuple[float, list[float]]:
                    return asyncio.run(_load(f"{root}/{r}/predict", c, args.requests))

                rate, ratio, latencies = paired(run, base, args.blocks, baseline_rates)
                rows.append(Row(label, concurrency, rate, ratio, *_ms(latencies)))
                print(f"  {label}, concurrency {concurrency}: {rate:.1f} req/s, {ratio:.2f}x")
    finally:
        ray_serve.shutdown()
        ray.shutdown()
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    from onnxport.serve.app import DEFAULT_BATCH_WAIT_MS

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="an exported MiniLM (default: export it)")
    parser.add_argument("--requests", type=int, default=200, help="requests per block")
    parser.add_argument("--blocks", type=int, default=5, help="measured block pairs per setting")
    parser.add_argument(
        "--concurrency", type=lambda text: [int(c) for c in text.split(",")], default=[1, 8, 32]
    )
    parser.add_argument("--batch-wait-ms", type=float, default=DEFAULT_BATCH_WAIT_MS)
    args = parser.parse_args(argv)

    from onnxport import export
    from onnxport.cli.demo import default_model_path
    from onnxport.logs import quiet_import_chatter

    quiet_import_chatter()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = Path(tmp) / "minilm"
            print("Exporting all-MiniLM-L6-v2...", flush=True)
            export(
                default_model_path(), model_dir, task="feature-extraction", library="transformers"
            )
        base, base_latencies = baseline_block(model_dir, args.requests)
        base_rates: list[float] = []
        rows = []
        for ingress, replicas in (("ray", 1), ("haproxy", 2)):
            rows += served(model_dir, ingress, replicas, base, base_rates, args)
    base_rate = statistics.median(base_rates)
    rows.insert(0, Row("pipeline loop, 1 process", 1, base_rate, 1.0, *_ms(base_latencies)))
    header = f"{'setting':<38} {'conc.':>5} {'req/s':>8} {'x base':>7} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"\n{header}")
    for row in rows:
        print(
            f"{row.setting:<38} {row.concurrency:>5} {row.rps:>8.1f} {row.ratio:>7.2f} "
            f"{row.p50_ms:>8.1f} {row.p99_ms:>8.1f}"
        )
    batched = [r for r in rows if "batch <=" in r.setting and r.concurrency == 32]
    if batched:
        best = max(batched, key=lambda r: r.ratio)
        verdict = "met" if best.ratio >= 1.5 else "NOT met"
        print(
            f"\nTarget (batching on, concurrency 32 >= 1.5x the baseline): {best.ratio:.2f}x "
            f"({best.setting}), {verdict}."
        )


if __name__ == "__main__":
    main()
