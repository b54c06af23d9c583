"""Quantize stage: int8 (dynamic or static), int4 weight-only and fp16 variants, with a guard.

All modes start from the fp32 export with the O2 fusions applied, keeping Q, K and V as
separate MatMuls (`MultiHeadAttention`) so the attention projections are quantized too.

int8 is per-channel for weights. Before quantizing, activation outliers are migrated into
the weights (SmoothQuant: `x W = (x / s)(s W)`, one explicit `Mul` per MatMul input, fp32,
folded into the value projection after an attention): per-tensor activation scales are
otherwise set by a few outlier channels and a one-word input's embedding loses most of its
precision. ONNX Runtime's quantizer offers smoothing for static mode only and through an
extra package, so it is done here in a few lines. int8-dynamic also quantizes GELU-fed
MatMuls with one activation scale per token (`per_row_int8`) and rounds every int8 weight by
GPTQ (`gptq_round`) from inputs measured on a built-in corpus; SkipLayerNormalization is
written as Sum + LayerNormalization (`split_skip_norms`), which ONNX Runtime runs faster on
CPU.

Every run is compared with the fp32 export (see `guard`). When the worst cosine falls below
`min_cosine`, the MatMuls whose quantization loses the most (ranked once, from their fp32
inputs on the calibration texts) are kept in fp32, a few more each round, until the target
is met; if even that fails, `QuantizationError` says so and nothing is written.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxport.errors import QuantizationError, VariantError, first_line
from onnxport.exporters.genai import GENAI_CONFIG, write_variant_config
from onnxport.exporters.postprocess import read_names
from onnxport.runtime.registry import GENERATIVE_TASKS
from onnxport.sessions import CPU, create_session
from onnxport.variants.files import base_graphs, exported_task, publish, save_graph, variant_file
from onnxport.variants.guard import (
    AccuracyReport,
    cosine,
    encoder_feeds,
    evaluation_texts,
    load_tokenizer,
    read_texts,
)
from onnxport.variants.optimize import (
    _guard,
    basic_optimizations,
    copy_metadata,
    fuse,
    split_skip_norms,
    to_fp16,
)

logger = logging.getLogger(__name__)

MODES = {
    "int8-dynamic": "int8",
    "int8-static": "int8_static",
    "int4-weight-only": "int4",
    "fp16": "fp16",
}
DEFAULT_MIN_COSINE = {
    "int8-dynamic": 0.99,
    "int8-static": 0.99,
    "int4-weight-only": 0.95,
    "fp16": 0.999,
}
# Share of the outlier range moved into the weights (0: none, 1: all). Measured on MiniLM:
# 0.5 -> min cosine 0.985, 0.7 -> 0.990, 0.85 -> 0.945; a per-input choice by simulated
# local error did worse end to end (0.984).
SMOOTHING_ALPHA = 0.7
# The same for inputs quantized per row (below), whose range follows each token: less
# migration keeps the weights easier. On MiniLM with per-row GELU outputs, 0.5 -> min cosine
# 0.9941 on the guard's texts, 0.3 -> 0.9916, 0.7 -> 0.9893 (simulated, GPTQ weights).
ROW_SMOOTHING_ALPHA = 0.5
# Inputs made by a GELU are quantized per row (per token): a GELU output is >= -0.16997
# (-0.17004 for the tanh form), so shifted by GELU_FLOOR it is >= 0 and each row maps to
# uint8 with zero point 0 and a scale of its own, where one scale per batch lets a single
# token's outliers set the step for every other token's (the guard's padded batch showed
# it: MiniLM's feed-forward outputs were the MatMuls it kept in fp32).
GELU_OPS = ("Gelu", "BiasGelu", "FastGelu")
GELU_FLOOR = 0.1701
# GPTQ: MatMuls with more inputs than this keep plain rounding (its cost grows as inputs^2
# x outputs); weights round to nearest also past this many parameters in all.
GPTQ_MAX_INPUTS = 4096
GPTQ_MAX_PARAMETERS = 200_000_000
CALIBRATION_CORPUS = Path(__file__).resolve().parents[1] / "data" / "calibration_texts.txt"
# Texts the quantizer calibrates on (activation ranges, smoothing scales, sensitivity), unlike
# the guard's evaluation texts, so the guard measures inputs the quantizer never saw.
CALIBRATION_TEXTS = (
    "The weather today is sunny with a light breeze from the west.",
    "How many parameters does a small encoder have?",
    "Good tools make hard work feel easy.",
    "yes",
    "Cats sleep for most of the day and hunt at night.",
    "Transformers turn text into vectors that machines can compare, and search engines rank "
    "documents by how close those vectors are to the query, which works in many languages.",
    "Call me tomorrow.",
    "She sells sea shells by the sea shore.",
)


@dataclass(frozen=True)
class QuantizationResult:
    """What `quantize()` wrote, what it kept in fp32, and the guard's verdict."""

    output_dir: Path
    mode: str
    files: tuple[Path, ...]
    accuracy: AccuracyReport | None
    excluded: tuple[str, ...] = ()
    quantized_nodes: int = 0
    seconds: float = 0.0
    # The same comparison on texts the exclusion search never looked at (built-in set only).
    held_out: AccuracyReport | None = None


def read_calibration(
    calibration_file: str | Path | None, dataset: str | None, column: str, split: str, limit: int
) -> list[str]:
    """Calibration texts from a file (one per line), a `datasets` dataset, or built in."""
    if dataset is None:
        texts = read_texts(calibration_file) if calibration_file else list(CALIBRATION_TEXTS)
        return texts[:limit]
    try:
        import datasets
    except ImportError as err:
        raise VariantError(
            "--calibration-dataset needs the `datasets` package: pip install 'onnxport[datasets]'."
        ) from err
    name, _, config = dataset.partition(":")
    local = Path(name)
    try:
        if local.is_file():
            builder = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
            kind = builder.get(local.suffix, "text")
            data = datasets.load_dataset(kind, data_files=str(local), split=split)
        else:
            data = datasets.load_dataset(name, config or None, split=split)
    except Exception as err:
        raise VariantError(
            f"Cannot load calibration dataset '{dataset}': {first_line(err)}"
        ) from err
    if column not in data.column_names:
        raise VariantError(
            f"Calibration dataset '{dataset}' has no column '{column}' (columns: "
            f"{', '.join(data.column_names)}); pass --calibration-column."
        )
    texts = [str(t) for t in data[column][: limit * 4] if str(t).strip()]
    if not texts:
        raise VariantError(f"Calibration dataset '{dataset}' has no text in column '{column}'.")
    return texts[:limit]


# --- activations ---------------------------------------------------------------------------


def _matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """MatMuls with a constant 2-D weight: what every mode quantizes."""
    weights = {i.name: i for i in model.graph.initializer if len(i.dims) == 2}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def _sample_feeds(model_path: Path, folder: Path, texts: list[str]) -> Iterator[dict[str, Any]]:
    """Inputs for one text at a time: tokens, plus an empty cache for a decoder graph."""
    session = create_session(model_path, None, CPU, error=QuantizationError)
    tokenizer = load_tokenizer(folder)
    for text in texts:
        feeds = {}
        for graph_input in session.get_inputs():
            if graph_input.name.startswith("past_key_values."):
                _, heads, _, size = graph_input.shape
                feeds[graph_input.name] = np.zeros((1, heads, 0, size), dtype=np.float32)
        tokens = encoder_feeds(session, tokenizer, text)
        if "position_ids" in tokens:
            tokens["position_ids"] = np.arange(tokens["input_ids"].shape[-1])[None].astype(np.int64)
        yield {**tokens, **feeds}


def _probe(
    model: onnx.ModelProto, feeds: list[dict[str, Any]], names: list[str]
) -> Iterator[list[np.ndarray]]:
    """The fp32 values of tensors `names` (made graph outputs for this), one feed at a time."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    for name in names:
        if name not in present:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    with tempfile.TemporaryDirectory(prefix="onnxport-calib-") as tmp:
        path = Path(tmp) / "probe.onnx"
        save_graph(probe, path)
        session = create_session(path, None, CPU, error=QuantizationError)
        inputs = {i.name for i in session.get_inputs()}
        for feed in feeds:
            yield session.run(names, {k: v for k, v in feed.items() if k in inputs})


def collect_activations(
    model: onnx.ModelProto, feeds: list[dict[str, Any]], names: list[str]
) -> dict[str, list[np.ndarray]]:
    """The fp32 values of tensors `names` on each feed (rows of the last axis)."""
    values: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for outputs in _probe(model, feeds, names):
        for name, value in zip(names, outputs, strict=True):
            values[name].append(value.reshape(-1, value.shape[-1]))
    return values


def smooth(
    model: onnx.ModelProto,
    activations: dict[str, list[np.ndarray]],
    alphas: dict[str, float] | None = None,
) -> int:
    """Migrate activation outliers into MatMul weights, in place; returns MatMuls smoothed.

    MatMuls sharing an input (Q, K, V) share one scale, so they still share one quantized
    input. Exact in real arithmetic: `(x / s) @ (s[:, None] * W) == x @ W`. `alphas` sets
    the share migrated per input name (default SMOOTHING_ALPHA).
    """
    weights = {i.name: i for i in model.graph.initializer}
    groups: dict[str, list[onnx.NodeProto]] = {}
    for node in _matmuls(model):
        groups.setdefault(node.input[0], []).append(node)
    new_nodes, count = [], 0
    for source, nodes in groups.items():
        samples = activations[source]
        matrices = [numpy_helper.to_array(weights[n.input[1]]).astype(np.float32) for n in nodes]
        amax = np.max([np.abs(x).max(0) for x in samples], axis=0)
        wmax = np.max([np.abs(w).max(1) for w in matrices], axis=0)
        alpha = (alphas or {}).get(source, SMOOTHING_ALPHA)
        scale = (amax**alpha) / np.maximum(wmax, 1e-8) ** (1 - alpha)
        scale = np.where((amax > 0) & (wmax > 0), scale, 1.0)
        scale = np.clip(scale, 1e-3, 1e3).astype(np.float32)
        smoothed = f"{source}_smoothed"
        inverse = f"{source}_smooth_inverse"
        model.graph.initializer.append(numpy_helper.from_array(1.0 / scale, inverse))
        new_nodes.append(helper.make_node("Mul", [source, inverse], [smoothed], f"{source}_smooth"))
        for node, matrix in zip(nodes, matrices, strict=True):
            weight = weights[node.input[1]]
            array = (matrix * scale[:, None]).astype(np.float32)
            weight.CopyFrom(numpy_helper.from_array(array, weight.name))
            node.input[0] = smoothed
            count += 1
    _insert_sorted(model, new_nodes)
    return count


def _insert_sorted(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> None:
    """Add `nodes` to the graph, each right before its first consumer (keeps topological order)."""
    by_output = {n.output[0]: n for n in nodes}
    result: list[onnx.NodeProto] = []
    placed: set[str] = set()
    for node in model.graph.node:
        for name in node.input:
            if name in by_output and name not in placed:
                result.append(by_output[name])
                placed.add(name)
        result.append(node)
    del model.graph.node[:]
    model.graph.node.extend(result)


def fold_into_values(model: onnx.ModelProto) -> int:
    """Fold the smoothing Mul on each attention output into the value projection, in place.

    An attention output's channel j is a softmax-weighted sum of value channel j, so dividing
    the value weights' column j and bias j by the smoothing scale divides the output exactly,
    and the Mul (one pass over every token) goes. Returns how many Muls were removed.
    """
    weights = {i.name: i for i in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in read_names(node):
            readers[name] = readers.get(name, 0) + 1
    removed: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type != "Mul" or not node.name.endswith("_smooth"):
            continue
        attention = producers.get(node.input[0])
        inverse = weights.get(node.input[1])
        if attention is None or inverse is None or attention.op_type != "MultiHeadAttention":
            continue
        value = producers.get(attention.input[2]) if len(attention.input) > 2 else None
        bias = attention.input[3] if len(attention.input) > 3 else ""
        if (
            value is None
            or value.op_type != "MatMul"
            or value.input[1] not in weights
            or readers.get(value.input[1]) != 1
            or readers.get(attention.input[2]) != 1
            or (bias and bias not in weights)
        ):
            continue
        scale = numpy_helper.to_array(inverse).astype(np.float32)
        matrix = numpy_helper.to_array(weights[value.input[1]]).astype(np.float32)
        if matrix.shape[1] != scale.shape[0]:
            continue
        weights[value.input[1]].CopyFrom(
            numpy_helper.from_array(matrix * scale[None, :], value.input[1])
        )
        if bias:
            vector = numpy_helper.to_array(weights[bias]).astype(np.float32).copy()
            vector[-scale.shape[0] :] *= scale  # (q, k, v) biases, v last
            if readers.get(bias) == 1:
                weights[bias].CopyFrom(numpy_helper.from_array(vector, bias))
            else:  # shared (equal constants are merged): this attention gets its own
                own = f"{bias}_{attention.name}"
                model.graph.initializer.append(numpy_helper.from_array(vector, own))
                attention.input[3] = own
        removed[node.output[0]] = node.input[0]
    if removed:
        kept = [n for n in model.graph.node if not (n.op_type == "Mul" and n.output[0] in removed)]
        for node in kept:
            for i, name in enumerate(node.input):
                node.input[i] = removed.get(name, name)
        del model.graph.node[:]
        model.graph.node.extend(kept)
        for name in {n for n in weights if n.endswith("_smooth_inverse")} - {
            x for node in kept for x in read_names(node)
        }:
            model.graph.initializer.remove(weights[name])
    return len(removed)


def unbias_skip_norms(model: onnx.ModelProto) -> int:
    """Move the bias out of SkipLayerNormalization into an Add after its MatMul, in place.

    ONNX Runtime then folds that Add into the quantized MatMul it follows (as the bias of
    DynamicQuantizeMatMul), and a SkipLayerNormalization without bias runs twice as fast on
    CPU (measured on MiniLM at 8x128: 10.2 ms -> ~5 ms for its 12 nodes).
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    matmuls = {n.name for n in _matmuls(model)}
    added = []
    for node in model.graph.node:
        if node.op_type != "SkipLayerNormalization" or len(node.input) < 5 or not node.input[4]:
            continue
        source = producers.get(node.input[0])
        if source is None or source.name not in matmuls:
            continue
        biased = f"{node.input[0]}_biased"
        added.append(
            helper.make_node("Add", [node.input[0], node.input[4]], [biased], f"{node.name}_bias")
        )
        node.input[0] = biased
        del node.input[4]
    _insert_sorted(model, added)
    return len(added)


def rank_sensitivity(
    model: onnx.ModelProto, activations: dict[str, list[np.ndarray]], mode: str
) -> list[str]:
    """MatMul names, the most damaged by quantization first (relative error of x @ W).

    Simulates the kernel's arithmetic on the real fp32 inputs: int8 per-channel weights with
    per-tensor uint8 activations for int8 modes, 4-bit blocks of 32 for int4.
    """
    weights = {i.name: i for i in model.graph.initializer}
    errors = []
    for node in _matmuls(model):
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        wq = _fake_int4(w) if mode == "int4-weight-only" else _fake_int8_channels(w)
        error = 0.0
        for x in activations[node.input[0]]:
            xq = x if mode == "int4-weight-only" else _fake_uint8(x)
            exact = x @ w
            relative = np.linalg.norm(xq @ wq - exact) / (np.linalg.norm(exact) + 1e-12)
            error = max(error, float(relative))
        errors.append((error, node.name))
    return [name for _, name in sorted(errors, reverse=True)]


def _fake_int8_channels(w: np.ndarray) -> np.ndarray:
    codes, scale = round_int8(w)
    return codes * scale


def round_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output int8 codes and scales, as ONNX Runtime's quantizer makes them."""
    scale = (np.maximum(np.abs(weight).max(0), 1e-12) / 127).astype(np.float32)
    return np.round(weight / scale).clip(-127, 127).astype(np.int8), scale


def _fake_uint8(x: np.ndarray) -> np.ndarray:
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (high - low) / 255 or 1.0
    zero = np.round(-low / scale)
    return (np.round(x / scale + zero).clip(0, 255) - zero) * scale


def _fake_int4(w: np.ndarray, block: int = 32) -> np.ndarray:
    rows = w.shape[0] - w.shape[0] % block
    out = w.copy()
    blocks = w[:rows].reshape(-1, block, w.shape[1])
    scale = np.maximum(np.abs(blocks).max(1, keepdims=True), 1e-12) / 7
    out[:rows] = (np.round(blocks / scale).clip(-8, 7) * scale).reshape(rows, w.shape[1])
    return out


# Up to this many MatMuls, sensitivity is measured end to end (one quantized at a time);
# beyond, the simulated local error ranks them (one pass, but a weaker predictor).
END_TO_END_RANKING_LIMIT = 64


def rank_end_to_end(model: onnx.ModelProto, feeds: list[dict[str, Any]], mode: str) -> list[str]:
    """MatMul names, most damaging first: each quantized alone, outputs compared with fp32."""

    def outputs(graph: onnx.ModelProto) -> list[np.ndarray]:
        with tempfile.TemporaryDirectory(prefix="onnxport-rank-") as tmp:
            path = Path(tmp) / "m.onnx"
            save_graph(graph, path)
            session = create_session(path, None, CPU, error=QuantizationError)
            names = {i.name for i in session.get_inputs()}
            first = session.get_outputs()[0].name
            return [
                session.run([first], {k: v for k, v in f.items() if k in names})[0] for f in feeds
            ]

    reference = outputs(model)
    losses = []
    for node in _matmuls(model):
        candidate = outputs(_QUANTIZERS[mode](model, [], include=[node.name], feeds=feeds))
        worst = max(1 - cosine(a, b) for a, b in zip(reference, candidate, strict=True))
        losses.append((worst, node.name))
    return [name for _, name in sorted(losses, reverse=True)]


# --- per-row activations and GPTQ weights (int8-dynamic) -----------------------------------


def gelu_fed(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """MatMuls whose input a GELU makes (feed-forward outputs): quantized per row."""
    producers = {out: node for node in model.graph.node for out in node.output}
    return [
        node
        for node in _matmuls(model)
        if (source := producers.get(node.input[0])) is not None and source.op_type in GELU_OPS
    ]


def hessians(
    model: onnx.ModelProto, feeds: list[dict[str, Any]], names: list[str]
) -> dict[str, np.ndarray]:
    """`X^T X` of each tensor in `names` (rows: tokens) over `feeds`, summed in float64.

    Summed feed by feed: a few hundred texts' activations would not fit in memory at once.
    """
    totals: dict[str, np.ndarray] = {}
    for outputs in _probe(model, feeds, names):
        for name, value in zip(names, outputs, strict=True):
            rows = value.reshape(-1, value.shape[-1]).astype(np.float64)
            totals[name] = totals.get(name, 0.0) + rows.T @ rows
    return totals


def gptq_round(
    weight: np.ndarray, scale: np.ndarray, hessian: np.ndarray, *, damp: float = 0.01
) -> np.ndarray:
    """int8 codes of `weight` (inputs x outputs) for per-output `scale`, rounded by GPTQ.

    Rounds one input row at a time and spreads its rounding error over the rows not yet
    rounded, weighted by the inverse of the inputs' second moments (`hessian`), so that
    `x @ (codes * scale)` stays close to `x @ weight` on inputs like the calibration's
    (Frantar et al., 2022). On MiniLM it cuts the MatMuls' output error on held-out text
    from 0.91% to 0.66% (mean of 36). ONNX Runtime ships GPTQ for 4-bit weights only, through
    another package, so the few lines are here.
    """
    w = weight.astype(np.float64).copy()
    inputs = w.shape[0]
    h = hessian.copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[dead] = 0.0
    h[np.diag_indices(inputs)] += damp * float(np.mean(np.diag(h)))
    try:
        upper = np.linalg.cholesky(np.linalg.inv(h)).T
    except np.linalg.LinAlgError:
        return np.round(weight / scale).clip(-127, 127).astype(np.int8)
    codes = np.zeros(w.shape, dtype=np.int8)
    block = 128
    for start in range(0, inputs, block):
        end = min(start + block, inputs)
        errors = np.zeros((end - start, w.shape[1]))
        for i in range(start, end):
            q = np.round(w[i] / scale).clip(-127, 127)
            codes[i] = q
            error = (w[i] - q * scale) / upper[i, i]
            w[i + 1 : end] -= np.outer(upper[i, i + 1 : end], error)
            errors[i - start] = error
        w[end:] -= upper[start:end, end:].T @ errors
    return codes


Rounded = dict[str, tuple[np.ndarray, np.ndarray]]


def int8_weights(model: onnx.ModelProto, moments: dict[str, np.ndarray]) -> Rounded:
    """Per-output symmetric int8 codes and scales of each MatMul weight, by name.

    GPTQ-rounded where `moments` has the MatMul's input (and it has at most GPTQ_MAX_INPUTS
    inputs), else rounded to nearest; the scales are ONNX Runtime's (max |w| / 127).
    """
    weights = {i.name: i for i in model.graph.initializer}
    rounded: Rounded = {}
    for node in _matmuls(model):
        weight = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        codes, scale = round_int8(weight)
        hessian = moments.get(node.input[0])
        if hessian is not None and weight.shape[0] <= GPTQ_MAX_INPUTS:
            codes = gptq_round(weight, scale.astype(np.float64), hessian)
        rounded[node.input[1]] = (codes, scale)
    return rounded


def per_row_int8(model: onnx.ModelProto, names: set[str], rounded: Rounded) -> int:
    """Quantize the fp32 MatMuls `names` (GELU-fed) with one activation scale per row.

    Each becomes: shift by GELU_FLOOR (per channel when smoothed), row max, QuantizeLinear
    per row to uint8, MatMulIntegerToFloat with the per-output int8 weight, times the row
    scale, plus the shift's product with the weights. ONNX Runtime's DynamicQuantizeMatMul
    takes one scale per tensor, so the rows are written out in standard ops around it.
    """
    if not names:
        return 0
    weights = {i.name: i for i in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    constants: dict[str, np.ndarray] = {
        "rows_axis": np.array([-1], dtype=np.int64),
        "rows_flat": np.array([-1], dtype=np.int64),
        "rows_tiny": np.array(1e-12, dtype=np.float32),
        "rows_inv_255": np.array(1 / 255, dtype=np.float32),
        "rows_one": np.array(1.0, dtype=np.float32),
    }
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in read_names(node):
            readers.setdefault(name, []).append(node)
    nodes: list[onnx.NodeProto] = []
    count = 0
    replaced: set[str] = set()
    folded: set[int] = set()  # bias Adds merged into the correction
    for node in model.graph.node:
        if id(node) in folded:
            continue
        if node.name not in names or node.op_type != "MatMul":
            nodes.append(node)
            continue
        replaced.add(node.input[1])
        x, y, p = node.input[0], node.output[0], f"{node.name}_rows"
        bias = None
        after = readers.get(y, [])
        if len(after) == 1 and after[0].op_type == "Add" and after[0].domain in ("", "ai.onnx"):
            other = [name for name in after[0].input if name != y]
            if len(other) == 1 and other[0] in weights and len(readers[other[0]]) == 1:
                vector = numpy_helper.to_array(weights[other[0]])
                if vector.shape == (weights[node.input[1]].dims[1],):
                    bias = vector.astype(np.float64)  # added with the correction, in one Add
                    folded.add(id(after[0]))
                    replaced.add(other[0])
                    y = after[0].output[0]
        weight = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        inputs, outputs = weight.shape
        # The floor, through the smoothing Mul when there is one: x * inverse >= -floor * inverse.
        source = producers.get(x)
        inverse = np.ones(inputs, dtype=np.float32)
        if source is not None and source.op_type == "Mul" and source.input[1] in weights:
            inverse = numpy_helper.to_array(weights[source.input[1]]).astype(np.float32)
        shift = (GELU_FLOOR * inverse).astype(np.float32)
        q, step = rounded[node.input[1]] if node.input[1] in rounded else round_int8(weight)
        codes = numpy_helper.from_array(q, f"{p}_codes")
        scale = numpy_helper.from_array(step, f"{p}_scales")
        correction = -(shift.astype(np.float64) @ (q * step.astype(np.float64)))
        if bias is not None:
            correction += bias
        correction = correction.astype(np.float32)
        model.graph.initializer.extend(
            [
                codes,
                scale,
                numpy_helper.from_array(shift, f"{p}_shift"),
                numpy_helper.from_array(correction, f"{p}_correction"),
                numpy_helper.from_array(np.array([-1, inputs], dtype=np.int64), f"{p}_2d"),
                numpy_helper.from_array(np.array([outputs], dtype=np.int64), f"{p}_width"),
            ]
        )
        nodes += [
            helper.make_node("Add", [x, f"{p}_shift"], [f"{p}_shifted"], f"{p}_shift"),
            helper.make_node("Reshape", [f"{p}_shifted", f"{p}_2d"], [f"{p}_x"], f"{p}_x"),
            helper.make_node("ReduceMax", [f"{p}_x", "rows_axis"], [f"{p}_max"], f"{p}_max"),
            helper.make_node("Max", [f"{p}_max", "rows_tiny"], [f"{p}_range"], f"{p}_range"),
            helper.make_node("Mul", [f"{p}_range", "rows_inv_255"], [f"{p}_step"], f"{p}_step"),
            helper.make_node("Reshape", [f"{p}_step", "rows_flat"], [f"{p}_steps"], f"{p}_steps"),
            helper.make_node(
                "QuantizeLinear", [f"{p}_x", f"{p}_steps"], [f"{p}_q"], f"{p}_q", axis=0
            ),
            helper.make_node(
                "MatMulIntegerToFloat",
                [f"{p}_q", codes.name, "rows_one", scale.name],
                [f"{p}_int"],
                f"{p}_matmul",
                domain="com.microsoft",
            ),
            helper.make_node("Mul", [f"{p}_int", f"{p}_step"], [f"{p}_scaled"], f"{p}_scaled"),
            helper.make_node("Add", [f"{p}_scaled", f"{p}_correction"], [f"{p}_y"], f"{p}_correct"),
            helper.make_node("Shape", [x], [f"{p}_lead"], f"{p}_lead", end=-1),
            helper.make_node(
                "Concat", [f"{p}_lead", f"{p}_width"], [f"{p}_shape"], f"{p}_shape", axis=0
            ),
            helper.make_node("Reshape", [f"{p}_y", f"{p}_shape"], [y], f"{p}_out"),
        ]
        count += 1
    if count:
        present = {i.name for i in model.graph.initializer}
        model.graph.initializer.extend(
            numpy_helper.from_array(v, k) for k, v in constants.items() if k not in present
        )
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        used = {name for node in nodes for name in read_names(node)}
        for name in replaced - used:  # the fp32 weights the int8 codes replace
            model.graph.initializer.remove(weights[name])
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return count


def refine_weights(quantized: onnx.ModelProto, rounded: Rounded) -> int:
    """Put `rounded`'s codes in place of ONNX Runtime's per-channel int8 weights; how many.

    ONNX Runtime's quantizer writes `<weight>_quantized` with `<weight>_scale` and zero points
    0 (symmetric int8); codes are replaced only where its scales equal `rounded`'s.
    """
    initializers = {i.name: i for i in quantized.graph.initializer}
    count = 0
    for name, (codes, scale) in rounded.items():
        old = initializers.get(f"{name}_quantized")
        steps = initializers.get(f"{name}_scale")
        zero = initializers.get(f"{name}_zero_point")
        if old is None or steps is None or zero is None or old.data_type != onnx.TensorProto.INT8:
            continue
        if numpy_helper.to_array(zero).any() or tuple(old.dims) != codes.shape:
            continue
        if not np.allclose(numpy_helper.to_array(steps).reshape(-1), scale, rtol=1e-5):
            continue
        old.CopyFrom(numpy_helper.from_array(codes, old.name))
        count += 1
    return count


def calibration_corpus() -> list[str]:
    """The built-in texts GPTQ measures inputs on: CALIBRATION_CORPUS plus CALIBRATION_TEXTS."""
    lines = CALIBRATION_CORPUS.read_text(encoding="utf-8").splitlines()
    return [*CALIBRATION_TEXTS, *(line for line in lines if line.strip())]


# --- the modes -----------------------------------------------------------------------------


def _quantize_int8_dynamic(
    model: onnx.ModelProto, exclude: list[str], *, include: list[str] | None = None, **_: Any
) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="onnxport-q-") as tmp:
        source, target = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        save_graph(model, source)
        quantize_dynamic(
            source,
            target,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=include,
            nodes_to_exclude=exclude,
            # EnableSubgraph: a seq2seq decoder's cross-attention projections sit in an If.
            extra_options={"MatMulConstBOnly": True, "EnableSubgraph": True},
        )
        return onnx.load(str(target))


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict[str, Any]], names: set[str]) -> None:
        self._feeds = iter([{k: v for k, v in f.items() if k in names} for f in feeds])

    def get_next(self) -> dict[str, Any] | None:
        return next(self._feeds, None)


def _quantize_int8_static(
    model: onnx.ModelProto,
    exclude: list[str],
    *,
    feeds: list[dict[str, Any]],
    include: list[str] | None = None,
    **_: Any,
) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory(prefix="onnxport-q-") as tmp:
        source, target = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        save_graph(model, source)
        names = {i.name for i in model.graph.input}
        quantize_static(
            source,
            target,
            _Reader(feeds, names),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=include,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"MatMulConstBOnly": True},
        )
        return onnx.load(str(target))


def _quantize_int4(
    model: onnx.ModelProto, exclude: list[str], *, include: list[str] | None = None, **_: Any
) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # MatMulNBitsQuantizer rewrites the model it is given in place. The guard quantizes the
    # same fused graph again with sensitive MatMuls excluded, and the ranking once per MatMul:
    # each needs the fp32 graph, so the quantizer gets a copy.
    work = onnx.ModelProto()
    work.CopyFrom(model)
    quantizer = MatMulNBitsQuantizer(
        work,
        block_size=32,
        is_symmetric=True,
        accuracy_level=4,
        nodes_to_exclude=exclude,
        nodes_to_include=include,
    )
    quantizer.process()
    result: onnx.ModelProto = quantizer.model.model
    return result


_QUANTIZERS: dict[str, Callable[..., onnx.ModelProto]] = {
    "int8-dynamic": _quantize_int8_dynamic,
    "int8-static": _quantize_int8_static,
    "int4-weight-only": _quantize_int4,
}


def quantize(
    model_dir: str | Path,
    mode: str = "int8-dynamic",
    output_dir: str | Path | None = None,
    *,
    min_cosine: float | None = None,
    eval_file: str | Path | None = None,
    calibration_file: str | Path | None = None,
    calibration_dataset: str | None = None,
    calibration_column: str = "text",
    calibration_split: str = "train",
    calibration_size: int = 64,
    fp16_io: bool = False,
    smoothing: bool = True,
    force: bool = False,
) -> QuantizationResult:
    """Write `<graph>_<mode>.onnx` beside each exported graph, guarded against the fp32 one.

    Written to `output_dir`, a folder's `genai_config.json` is pointed at the variant there.

    Example:
        >>> result = quantize("out/", "int8-dynamic")  # doctest: +SKIP
        >>> result.accuracy.min_cosine >= 0.99  # doctest: +SKIP
        True

    """
    start = time.perf_counter()
    if mode not in MODES:
        raise VariantError(f"--mode must be one of {', '.join(MODES)} (got '{mode}').")
    threshold = DEFAULT_MIN_COSINE[mode] if min_cosine is None else min_cosine
    if not 0 < threshold <= 1:
        raise VariantError(f"--min-cosine must be in (0, 1], not {threshold}.")
    folder = Path(model_dir)
    graphs = base_graphs(folder)
    generative = exported_task(folder / graphs[-1]) in GENERATIVE_TASKS
    evaluation = evaluation_texts(eval_file, generative=generative)
    eval_texts = list(evaluation.search)
    calibration = read_calibration(
        calibration_file, calibration_dataset, calibration_column, calibration_split,
        calibration_size,
    )  # fmt: skip
    user_calibration = calibration if calibration_file or calibration_dataset else None
    tag = MODES[mode]
    target = Path(output_dir) if output_dir is not None else folder
    single = len(graphs) == 1
    excluded: list[str] = []
    quantized = 0
    with publish(folder, None if output_dir is None else target, force=force) as staging:
        fused: dict[str, onnx.ModelProto] = {}
        for name in graphs:
            source = onnx.load(str(folder / name))
            logger.info("Fusing %s before quantizing...", name)
            fused[name] = basic_optimizations(fuse(source, pack_qkv=False)[0])
            if mode != "fp16":  # the integer kernels are CPU kernels
                unbias_skip_norms(fused[name])
                split_skip_norms(fused[name])
            copy_metadata(source, fused[name], variant=tag)
        if mode == "fp16":
            for name, model in fused.items():
                converted = to_fp16(model, keep_io_types=not fp16_io)
                copy_metadata(model, converted)
                save_graph(converted, staging / variant_file(name, tag))
            report = _guard(staging, folder, graphs[-1], variant_file(graphs[-1], tag), eval_texts)
            _check(report, threshold, mode, [])
        else:
            # One graph: calibrated (smoothing, ranking, static ranges). Encoder-decoder
            # pairs: each graph quantized as is, judged end to end.
            ranking: list[str] | None = None  # computed once a first attempt misses the target
            feeds: list[dict[str, Any]] = []
            activations: dict[str, list[np.ndarray]] = {}
            rows: set[str] = set()  # MatMuls quantized per row (int8-dynamic)
            rounded: Rounded = {}  # GPTQ-rounded int8 weights (int8-dynamic)
            if single:
                feeds = list(_sample_feeds(folder / graphs[0], folder, calibration))
                model = fused[graphs[0]]
                if mode == "int8-dynamic":
                    rows = {n.name for n in gelu_fed(model)}
                inputs = sorted({n.input[0] for n in _matmuls(model)})
                activations = collect_activations(model, feeds, inputs)
                if smoothing and mode != "int4-weight-only":
                    alphas = {
                        n.input[0]: ROW_SMOOTHING_ALPHA for n in _matmuls(model) if n.name in rows
                    }
                    count = smooth(model, activations, alphas)
                    folded = fold_into_values(model)
                    logger.info(
                        "Smoothed the inputs of %d MatMuls (%d scales folded into values).",
                        count,
                        folded,
                    )
                    activations = collect_activations(
                        model, feeds, sorted({n.input[0] for n in _matmuls(model)})
                    )
                if mode == "int8-dynamic":
                    rounded = _gptq_weights(model, folder / graphs[0], folder, user_calibration)
            elif mode == "int8-static":
                raise VariantError(
                    "int8-static calibrates one graph; encoder-decoder folders support "
                    "int8-dynamic, int4-weight-only and fp16."
                )
            while True:
                for name, model in fused.items():
                    logger.info("Quantizing %s (%s, %d kept in fp32)...", name, mode, len(excluded))
                    per_row = rows - set(excluded)
                    try:
                        result = _QUANTIZERS[mode](model, excluded + sorted(per_row), feeds=feeds)
                        if rounded:
                            refine_weights(result, rounded)
                        per_row_int8(result, per_row, rounded)
                    except Exception as err:
                        raise QuantizationError(
                            f"{mode} quantization of {name} failed: {first_line(err)}"
                        ) from err
                    copy_metadata(model, result)
                    save_graph(result, staging / variant_file(name, tag))
                quantized = sum(len(_matmuls(m)) for m in fused.values()) - len(excluded)
                report = _guard(
                    staging, folder, graphs[-1], variant_file(graphs[-1], tag), eval_texts
                )
                logger.info("%s", report.format())
                if report.passes(threshold) or not single:
                    break
                if ranking is None:
                    logger.info("Below cosine %s: ranking MatMuls by sensitivity...", threshold)
                    model = fused[graphs[0]]
                    if len(_matmuls(model)) <= END_TO_END_RANKING_LIMIT:
                        ranking = rank_end_to_end(model, feeds, mode)
                    else:
                        ranking = rank_sensitivity(model, activations, mode)
                remaining = [n for n in ranking if n not in excluded]
                if not remaining:
                    break
                # One at a time where each was measured end to end; else in twelfths.
                step = 1 if len(ranking) <= END_TO_END_RANKING_LIMIT else len(ranking) // 12
                excluded += remaining[: max(1, step)]
            _check(report, threshold, mode, excluded)
        held_out = None
        if evaluation.held_out:
            held_out = _guard(
                staging, folder, graphs[-1], variant_file(graphs[-1], tag),
                list(evaluation.held_out),
            )  # fmt: skip
            _report_held_out(held_out, threshold)
        in_place = target.resolve() == folder.resolve()
        _genai_config(folder, staging, variant_file(graphs[-1], tag), in_place=in_place)
    return QuantizationResult(
        output_dir=target,
        mode=mode,
        files=tuple(target / variant_file(name, tag) for name in graphs),
        accuracy=report,
        excluded=tuple(excluded),
        quantized_nodes=quantized,
        seconds=time.perf_counter() - start,
        held_out=held_out,
    )


def _gptq_weights(
    model: onnx.ModelProto, graph: Path, folder: Path, texts: list[str] | None
) -> Rounded:
    """GPTQ-rounded int8 weights, from inputs measured on `texts` (default: the built-in corpus).

    Rounded to nearest instead (and said) past GPTQ_MAX_PARAMETERS weights in all.
    """
    matmuls = _matmuls(model)
    sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    if sum(sizes[n.input[1]] for n in matmuls) > GPTQ_MAX_PARAMETERS:
        logger.info("Over %d MatMul weights: rounding to nearest (no GPTQ).", GPTQ_MAX_PARAMETERS)
        return int8_weights(model, {})
    corpus = texts if texts is not None else calibration_corpus()
    logger.info("Measuring MatMul inputs on %d texts for GPTQ...", len(corpus))
    feeds = list(_sample_feeds(graph, folder, corpus))
    moments = hessians(model, feeds, sorted({n.input[0] for n in matmuls}))
    return int8_weights(model, moments)


def _report_held_out(report: AccuracyReport, threshold: float) -> None:
    """Log the held-out figure; warn when the target does not hold on unseen text."""
    logger.info("On held-out texts: %s", report.format())
    if not report.passes(threshold):
        logger.warning(
            "On %d held-out texts the worst cosine is %.5f, below the %s the search met: "
            "the target does not carry to text it has not seen. Pass --eval-file with your "
            "own texts, or a higher --min-cosine.",
            report.samples, report.min_cosine, threshold,
        )  # fmt: skip


def _genai_config(folder: Path, staging: Path, variant: str, *, in_place: bool) -> None:
    """Point an output folder's genai_config.json at the variant, so genai loads it as it is.

    The config names one decoder file. In place, the folder's config keeps running the fp32
    graph (other tools may rely on it); an output folder is the variant's, so its copy of the
    config is pointed at the variant.
    """
    source = folder / GENAI_CONFIG
    if not source.is_file():
        return
    if in_place:
        logger.info(
            "%s still runs %s; pass an output folder to get one onnxruntime-genai runs %s in.",
            GENAI_CONFIG,
            json.loads(source.read_text())["model"]["decoder"]["filename"],
            variant,
        )
        return
    if write_variant_config(source, staging, variant) is not None:
        logger.info("%s now runs %s.", GENAI_CONFIG, variant)


def _check(report: AccuracyReport, threshold: float, mode: str, excluded: list[str]) -> None:
    if report.passes(threshold):
        return
    kept = f" even with {len(excluded)} MatMuls kept in fp32" if excluded else ""
    raise QuantizationError(
        f"{mode} cannot reach cosine {threshold}{kept}: the worst input gives "
        f"{report.min_cosine:.5f}; nothing was written. Pass a lower --min-cosine, or use a "
        "higher-precision mode.",
        report=report,
    )
