"""Benchmark stage: PyTorch eager vs each ONNX variant of an export, measured fairly.

The machine this runs on may be shared and change speed from second to second, so runners
are interleaved in blocks (every runner once per block, after a warm-up) and each gets the
median over blocks; speed-ups are ratios within the same run. Output drift is measured on
the same inputs against PyTorch (or the fp32 export when PyTorch is not available).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxport.errors import BenchmarkError, VariantError, first_line
from onnxport.layout import graph_folder
from onnxport.runtime.registry import GENERATIVE_TASKS
from onnxport.sessions import CPU, create_session

logger = logging.getLogger(__name__)

REFERENCE = "pytorch"


@dataclass(frozen=True)
class Measurement:
    """One runner at one shape: median latency, speed-up over the reference, drift."""

    variant: str
    batch_size: int
    sequence_length: int
    median_ms: float
    speedup: float
    max_abs_diff: float | None
    cosine: float | None

    @property
    def shape(self) -> str:
        """`8x128`."""
        return f"{self.batch_size}x{self.sequence_length}"


@dataclass(frozen=True)
class BenchmarkResult:
    """Every measurement of a run, the reference it is relative to, and files written."""

    model_dir: Path
    reference: str
    threads: int
    measurements: tuple[Measurement, ...]
    files: tuple[Path, ...] = ()

    def table(self) -> str:
        """A fixed-width table, one row per runner and shape."""
        header = (
            f"{'variant':<28} {'shape':>7} {'median ms':>10} {'speed-up':>9} {'max diff':>9} "
            f"{'cosine':>9}"
        )
        lines = [header, "-" * len(header)]
        for m in self.measurements:
            diff = "-" if m.max_abs_diff is None else f"{m.max_abs_diff:.2g}"
            cosine = "-" if m.cosine is None else f"{m.cosine:.5f}"
            lines.append(
                f"{m.variant:<28} {m.shape:>7} {m.median_ms:>10.2f} {m.speedup:>8.2f}x "
                f"{diff:>9} {cosine:>9}"
            )
        lines.append(f"(speed-up relative to {self.reference}; {self.threads} threads)")
        return "\n".join(lines)


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """`1x128,8x128` -> [(1, 128), (8, 128)]."""
    shapes = []
    for part in text.split(","):
        batch, _, length = part.strip().lower().partition("x")
        if not (batch.isdigit() and length.isdigit()) or int(batch) < 1 or int(length) < 2:
            raise VariantError(
                f"--shapes takes BATCHxSEQUENCE pairs like 1x128,8x128; '{part}' is not one."
            )
        shapes.append((int(batch), int(length)))
    return shapes


def time_blocks(
    runners: dict[str, Callable[[], Any]], *, blocks: int = 7, repeats: int = 3, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per call of each runner, interleaved in blocks after a warm-up."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(blocks):
        for name, run in runners.items():
            start = time.perf_counter()
            for _ in range(repeats):
                run()
            samples[name].append((time.perf_counter() - start) / repeats)
    return {name: float(np.median(values)) for name, values in samples.items()}


def _inputs(session: Any, config: Any, batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = int(getattr(config, "vocab_size", 1000) or 1000)
    feeds: dict[str, np.ndarray] = {}
    ids = rng.integers(min(5, vocab - 1), vocab, (batch, length), dtype=np.int64)
    for graph_input in session.get_inputs():
        if graph_input.name == "input_ids":
            value = ids
        elif graph_input.name == "attention_mask":
            value = np.ones_like(ids)
        else:
            value = np.zeros_like(ids)
        if len(graph_input.shape) == 3:  # multiple choice: two choices
            value = np.stack([value, value], axis=1)
        feeds[graph_input.name] = value
    return feeds


def _drift(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    a = reference.astype(np.float64).reshape(reference.shape[0], -1)
    b = other.astype(np.float64).reshape(other.shape[0], -1)
    cosines = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)
    return float(np.abs(a - b).max()), float(cosines.min())


def _variants(folder: Path, names: list[str] | None) -> list[str]:
    """The graphs to time, relative to `folder` (`model.onnx`, `onnx/model_q4.onnx`)."""
    found = sorted(p.relative_to(folder).as_posix() for p in graph_folder(folder).glob("*.onnx"))
    if not found:
        raise VariantError(f"No .onnx file in '{folder}'; export one with `onnxport export onnx`.")
    if names is None:
        return sorted(found, key=lambda n: (Path(n).name != "model.onnx", n))
    base = graph_folder(folder).relative_to(folder).as_posix()
    if base != ".":  # `--variants model_q4.onnx` in a transformers.js folder
        names = [n if n in found else f"{base}/{n}" for n in names]
    missing = [n for n in names if n not in found]
    if missing:
        raise VariantError(
            f"No variant {', '.join(missing)} in '{folder}' (found: {', '.join(found)})."
        )
    return names


def _torch_model(source: str | None, task: str) -> Any | None:
    """The PyTorch model the export came from, if it can be loaded from local files."""
    if not source or not Path(source).is_dir():
        logger.info(
            "PyTorch source '%s' is not a local folder: comparing ONNX variants only.", source
        )
        return None
    from onnxport.exporters.load import load_model
    from onnxport.tasks import get_task

    folder = Path(source)
    return load_model(folder, get_task(task).auto_model_class()).eval()


def benchmark(
    model_dir: str | Path,
    *,
    shapes: list[tuple[int, int]] | None = None,
    variants: list[str] | None = None,
    pytorch: str | None = None,
    threads: int = 0,
    blocks: int = 7,
    repeats: int = 3,
    output_dir: str | Path | None = None,
) -> BenchmarkResult:
    """Time PyTorch and every ONNX variant at `shapes`; write JSON and a PNG when asked.

    Example:
        >>> print(benchmark("out/", shapes=[(8, 128)]).table())  # doctest: +SKIP

    """
    import onnx
    import onnxruntime as ort
    import torch

    from onnxport import hub

    folder = Path(model_dir)
    shapes = shapes or [(1, 128), (8, 128)]
    names = _variants(folder, variants)
    first = onnx.load(str(folder / names[0]), load_external_data=False)
    meta = {p.key: p.value for p in first.metadata_props}
    task = meta.get("task", "feature-extraction")
    if task in GENERATIVE_TASKS:
        raise VariantError(
            f"`onnxport benchmark` times single-pass models; '{task}' exports are timed by "
            "benchmarks/generate.py (tokens per second through generate())."
        )
    config = hub.load_config(folder)
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle ORT workers spin by default, taking cores from whichever runner goes next in the
    # block (measured: a fused MiniLM looked 25% slower than alone at 1x128 with spinning).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = {
        name: create_session(folder / name, options, CPU, error=BenchmarkError) for name in names
    }
    model = _torch_model(pytorch or meta.get("source"), task)
    reference = REFERENCE if model is not None else names[0]
    measurements: list[Measurement] = []
    for batch, length in shapes:
        feeds = _inputs(sessions[names[0]], config, batch, length, seed=batch * 1000 + length)
        runners: dict[str, Callable[[], Any]] = {}
        outputs: dict[str, np.ndarray] = {}
        if model is not None:
            accepted = set(inspect.signature(model.forward).parameters)
            tensors = {k: torch.from_numpy(v) for k, v in feeds.items() if k in accepted}

            def run_torch(tensors: dict[str, Any] = tensors) -> Any:
                with torch.inference_mode():
                    return model(**tensors, return_dict=True)

            outputs[REFERENCE] = next(iter(run_torch().values())).float().numpy()
            runners[REFERENCE] = run_torch
        for name, session in sessions.items():
            graph_feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
            main_output = session.get_outputs()[0].name
            try:
                outputs[name] = session.run([main_output], graph_feeds)[0]
            except Exception as err:
                raise BenchmarkError(
                    f"{name} failed at {batch}x{length}: {first_line(err)}"
                ) from err
            runners[name] = functools.partial(session.run, [main_output], graph_feeds)
        logger.info("Timing %d runners at %dx%d...", len(runners), batch, length)
        medians = time_blocks(runners, blocks=blocks, repeats=repeats)
        base = medians[reference]
        for name, seconds in medians.items():
            diff, cosine = (
                (None, None) if name == reference else _drift(outputs[reference], outputs[name])
            )
            measurements.append(
                Measurement(name, batch, length, seconds * 1000, base / seconds, diff, cosine)
            )
    result = BenchmarkResult(folder, reference, threads, tuple(measurements))
    if output_dir is None:
        return result
    return _write(result, Path(output_dir))


def _write(result: BenchmarkResult, folder: Path) -> BenchmarkResult:
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "model_dir": str(result.model_dir),
        "reference": result.reference,
        "threads": result.threads,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },
        "measurements": [asdict(m) for m in result.measurements],
    }
    json_path = folder / "benchmark.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    png_path = folder / "benchmark.png"
    plot(result, png_path)
    return BenchmarkResult(
        result.model_dir,
        result.reference,
        result.threads,
        result.measurements,
        (json_path, png_path),
    )


def plot(result: BenchmarkResult, path: Path) -> None:
    """Bar charts of median latency and speed-up, grouped by shape."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys(m.shape for m in result.measurements))
    variants = list(dict.fromkeys(m.variant for m in result.measurements))
    by_key = {(m.variant, m.shape): m for m in result.measurements}
    figure, (latency, speedup) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(variants)
    for index, variant in enumerate(variants):
        xs = [i + index * width for i in range(len(shapes))]
        latency.bar(xs, [by_key[(variant, s)].median_ms for s in shapes], width, label=variant)
        speedup.bar(xs, [by_key[(variant, s)].speedup for s in shapes], width, label=variant)
    for axis, title in (
        (latency, "median latency (ms)"),
        (speedup, f"speed-up over {result.reference}"),
    ):
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(shapes))], shapes)
        axis.set_title(title)
        axis.set_xlabel("batch x sequence")
    speedup.axhline(1.0, color="grey", linewidth=0.8)
    latency.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
