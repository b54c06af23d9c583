"""Optimize stage: graph rewrites that make an exported model faster, at levels O1-O4.

- O1: basic optimizations (constant folding, dead code and redundant node elimination);
- O2: O1 + transformer fusions: Attention / MultiHeadAttention (with its bias and scale),
  SkipLayerNormalization, BiasGelu, rotary embeddings, GroupQueryAttention where they apply
  (for CPU, each SkipLayerNormalization is then written as Sum + LayerNormalization, see
  `split_skip_norms`);
- O3: O2 + approximations: every Gelu becomes FastGelu (tanh approximation);
- O4: O3 + fp16 weights and compute with fp32 inputs and outputs, for CUDA.

The fusions are onnxscript's ORT rewriter rules, which match what the dynamo exporter emits.
ONNX Runtime's own transformer optimizer matches the TorchScript exporter's patterns and
fuses no attention on a dynamo graph (measured on MiniLM: 0 of 6), so it is not used here.
onnxscript's `optimize_for_ort` always packs Q, K and V into one `Attention` node; the
sequence below is the same but can leave `MultiHeadAttention` with separate Q/K/V MatMuls,
which int8 quantization can then quantize (`Attention` with an additive mask cannot).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
from onnx import helper

from onnxport.errors import OnnxportError, OptimizationError, VariantError, first_line
from onnxport.exporters.postprocess import read_names
from onnxport.runtime.registry import GENERATIVE_TASKS
from onnxport.sessions import CPU, create_session
from onnxport.variants.files import (
    base_graphs,
    encoder_file_for,
    exported_task,
    link_tree,
    publish,
    save_graph,
    variant_file,
)
from onnxport.variants.guard import AccuracyReport, compare, evaluation_texts

logger = logging.getLogger(__name__)

LEVELS = {
    1: "basic graph optimizations",
    2: "basic + transformer fusions",
    3: "fusions + FastGelu approximation",
    4: "approximations + fp16 (CUDA)",
}
# Ops the fusions create for each other (SDPA before it becomes MultiHeadAttention).
_PRIVATE_FUSION_DOMAIN = "ai.onnxruntime._fusion"
# Exact rewrites must keep the embeddings; approximations may move them a little.
DEFAULT_MIN_COSINE = {1: 0.9999, 2: 0.9999, 3: 0.99, 4: 0.99}


@dataclass(frozen=True)
class OptimizationResult:
    """What `optimize()` wrote: one file per graph, the fusions applied, the guard's report."""

    output_dir: Path
    level: int
    files: tuple[Path, ...]
    fusions: dict[str, int] = field(default_factory=dict)
    accuracy: AccuracyReport | None = None
    seconds: float = 0.0


def _to_ir(model: onnx.ModelProto) -> Any:
    import onnx_ir as ir

    return ir.from_proto(model)


def fuse(
    model: onnx.ModelProto, *, pack_qkv: bool = True
) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Apply onnxscript's transformer fusions; returns the model and a count per fusion."""
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes
    from onnxscript.optimizer import optimize as fold
    from onnxscript.rewriter import rewrite
    from onnxscript.rewriter.ort_fusions import _core, shape_optimization
    from onnxscript.rewriter.ort_fusions.attention import fuse_attention
    from onnxscript.rewriter.ort_fusions.bias_gelu import fuse_bias_gelu
    from onnxscript.rewriter.ort_fusions.cos_sin_cache import fuse_cos_sin_cache
    from onnxscript.rewriter.ort_fusions.erfgelu import fuse_erfgelu
    from onnxscript.rewriter.ort_fusions.gelu import fuse_gelu
    from onnxscript.rewriter.ort_fusions.gqa import fuse_gqa
    from onnxscript.rewriter.ort_fusions.gqa_packed_qkv import fuse_qkv_gqa
    from onnxscript.rewriter.ort_fusions.mha import fuse_mha1, fuse_mha2
    from onnxscript.rewriter.ort_fusions.mha_bias import fuse_mha_bias
    from onnxscript.rewriter.ort_fusions.mha_scale import fuse_mha_scale
    from onnxscript.rewriter.ort_fusions.rms_normalization import fuse_rms_normalization
    from onnxscript.rewriter.ort_fusions.rotary_embedding import (
        fuse_partial_rotary_embedding,
        fuse_rotary_embedding,
    )
    from onnxscript.rewriter.ort_fusions.sdpa import fuse_sdpa
    from onnxscript.rewriter.ort_fusions.sdpa_via_mha import replace_sdpa_by_mha
    from onnxscript.rewriter.ort_fusions.skip_normalization import (
        fuse_skip_layer_normalization,
        fuse_skip_rms_normalization,
    )
    from onnxscript.rewriter.rules.common import _gemm_to_matmul_add

    graph = _to_ir(model)
    rewrite(graph, [_gemm_to_matmul_add.gemm_to_matmul_add_rule])
    common_passes.ShapeInferencePass()(graph)
    fold(graph)
    shape_optimization.rules.apply_to_model(graph)
    fold(graph)
    counts: dict[str, int] = {}
    steps: list[tuple[str, Any, dict[str, Any]]] = [
        ("erf_gelu", fuse_erfgelu, {}),
        ("rms_normalization", fuse_rms_normalization, {}),
        ("skip_layer_normalization", fuse_skip_layer_normalization, {}),
        ("skip_rms_normalization", fuse_skip_rms_normalization, {}),
        ("rotary_embedding", fuse_rotary_embedding, {}),
        ("cos_sin_cache", fuse_cos_sin_cache, {}),
        ("partial_rotary_embedding", fuse_partial_rotary_embedding, {}),
        ("sdpa", fuse_sdpa, {"apply_shape_inference": True}),
        ("gqa", fuse_gqa, {}),
        ("packed_qkv_for_gqa", fuse_qkv_gqa, {}),
        ("mha", fuse_mha1, {}),
        ("mha", fuse_mha2, {}),
        ("mha_scale", fuse_mha_scale, {}),
        ("mha_bias", fuse_mha_bias, {}),
    ]
    if pack_qkv:
        steps.append(("attention", fuse_attention, {}))
    steps += [
        ("gelu", fuse_gelu, {}),
        ("bias_gelu", fuse_bias_gelu, {}),
        # SDPA nodes no later fusion consumed become MultiHeadAttention.
        ("sdpa_via_mha", replace_sdpa_by_mha, {}),
    ]
    verified, pending = ir.to_proto(graph), []
    for name, fusion, options in steps:
        if name == "cos_sin_cache":
            common_passes.CommonSubexpressionEliminationPass()(graph)
        applied = int(fusion(graph, **options))
        counts[name] = counts.get(name, 0) + applied
        if applied:
            pending.append(name)
        if not applied or any(
            n.domain == _PRIVATE_FUSION_DOMAIN
            for n in ir.traversal.RecursiveGraphIterator(graph.graph)
        ):
            continue  # nothing new, or intermediate ops a later step consumes: check later
        candidate = ir.to_proto(graph)
        problem = _load_problem(candidate)
        if problem is not None:
            # A rewrite matched a pattern it does not fit; undo it (and the intermediate
            # steps it completed) rather than ship a graph ONNX Runtime rejects.
            logger.warning(
                "Fusions %s undone: ONNX Runtime rejects their result (%s).",
                ", ".join(pending),
                problem,
            )
            for undone in pending:
                counts[undone] = 0
            graph = ir.from_proto(verified)
        else:
            verified = candidate
        pending = []
    fold(graph)
    rewrite(graph, _core.ORT_PATTERN_REWRITE_RULES)
    ir.passes.Sequential(
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=1),
        common_passes.RemoveInitializersFromInputsPass(),
        common_passes.RemoveUnusedNodesPass(),
        common_passes.ShapeInferencePass(),
    )(graph)
    fused = ir.to_proto(graph)
    drop_unused_outputs(fused)
    used = {name for node in fused.graph.node for name in read_names(node)}
    unused = [init for init in fused.graph.initializer if init.name not in used]
    for init in unused:  # left by rewrites; ONNX Runtime would warn about each on load
        fused.graph.initializer.remove(init)
    return fused, {k: v for k, v in counts.items() if v}


def drop_unused_outputs(model: onnx.ModelProto) -> int:
    """Drop optional outputs of fused nodes that nothing reads, in place; returns how many.

    The fusions emit SkipLayerNormalization's mean, inverse std and sum outputs whether or
    not they are used; computing and writing them cost ~8% of MiniLM's latency at 1x128.
    """
    used = {name for node in model.graph.node for name in read_names(node)}
    used |= {output.name for output in model.graph.output}
    count = 0
    for node in model.graph.node:
        if node.domain != "com.microsoft" or len(node.output) < 2:
            continue
        outputs = [node.output[0]]
        for name in node.output[1:]:
            keep = name if name in used else ""
            count += bool(name) and not keep
            outputs.append(keep)
        while len(outputs) > 1 and not outputs[-1]:
            outputs.pop()
        del node.output[:]
        node.output.extend(outputs)
    return count


def split_skip_norms(model: onnx.ModelProto) -> int:
    """Write each SkipLayerNormalization as Sum + LayerNormalization, in place; returns how many.

    For CPU. ONNX Runtime's CPU kernel for SkipLayerNormalization is 2-3.5x slower than its
    LayerNormalization after a Sum of the same inputs (measured here: 56 vs 26 us at
    1x16x768, 1.05 ms vs 0.30 ms at 8x128x384, 5.6 vs 1.7 ms at 8x256x1024); on MiniLM int8
    at 8x128 the 12 nodes took 12.8 of 67 ms. A Sum, unlike an Add, is not fused back into
    SkipLayerNormalization when ONNX Runtime loads the graph. Nodes whose mean or inverse
    standard deviation outputs are read stay as they are.
    """
    if not any(o.domain in ("", "ai.onnx") and o.version >= 17 for o in model.opset_import):
        return 0  # LayerNormalization needs opset 17
    used = {name for node in model.graph.node for name in read_names(node)}
    used |= {output.name for output in model.graph.output}
    nodes, count = [], 0
    for node in model.graph.node:
        outputs = list(node.output) + [""] * (4 - len(node.output))
        if (
            node.op_type != "SkipLayerNormalization"
            or node.domain != "com.microsoft"
            or any(name and name in used for name in outputs[1:3])
        ):
            nodes.append(node)
            continue
        inputs = list(node.input) + [""] * (5 - len(node.input))
        x, skip, gamma, beta, bias = inputs[:5]
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        total = outputs[3] or f"{node.name}_sum"
        terms = [x, skip] + ([bias] if bias else [])
        nodes.append(helper.make_node("Sum", terms, [total], f"{node.name}_sum"))
        nodes.append(
            helper.make_node(
                "LayerNormalization",
                [total, gamma] + ([beta] if beta else []),
                [outputs[0]],
                f"{node.name}_norm",
                axis=-1,
                epsilon=epsilon,
            )
        )
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return count


def _load_problem(model: onnx.ModelProto) -> str | None:
    """Why ONNX Runtime refuses to load `model`, or None when it loads.

    Recorded intermediate shapes are dropped first: a stale one makes ONNX Runtime merge
    leniently and accept a graph whose real shapes no longer fit (a Gemm fed 3-D input).
    """
    import onnxruntime as ort

    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]
    model = bare

    options = ort.SessionOptions()
    options.log_severity_level = 3  # an intermediate graph: its warnings are not the user's
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        with tempfile.TemporaryDirectory(prefix="onnxport-check-") as tmp:
            path = Path(tmp) / "check.onnx"
            save_graph(model, path)
            create_session(path, options, CPU, error=OptimizationError)
    except Exception as err:
        # ONNX Runtime's own reason, not our wrapper's line naming the scratch file.
        cause = err.__cause__ if isinstance(err, OptimizationError) else None
        return first_line(cause or err, 200)
    return None


def approximate_gelu(model: onnx.ModelProto) -> int:
    """Replace exact Gelu / BiasGelu (com.microsoft) with FastGelu, in place; returns how many."""
    count = 0
    for node in model.graph.node:
        if node.domain == "com.microsoft" and node.op_type in ("Gelu", "BiasGelu"):
            node.op_type = "FastGelu"
            count += 1
    return count


def basic_optimizations(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime's basic (provider-independent) graph optimizations, applied offline."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="onnxport-opt-") as tmp:
        source, target = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        save_graph(model, source)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(target)
        if model.ByteSize() > 1_800_000_000:
            options.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name", "out.onnx.data"
            )
        create_session(source, options, CPU, error=OptimizationError)
        return onnx.load(str(target))


def to_fp16(model: onnx.ModelProto, *, keep_io_types: bool = True) -> onnx.ModelProto:
    """fp16 weights and compute; inputs and outputs stay fp32 unless `keep_io_types` is off."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted: onnx.ModelProto = convert_float_to_float16(
        model, keep_io_types=keep_io_types, disable_shape_infer=model.ByteSize() > 1_800_000_000
    )
    return converted


def optimize_graph(
    model: onnx.ModelProto, level: int, *, pack_qkv: bool = True, device: str = "cpu"
) -> tuple[onnx.ModelProto, dict[str, int]]:
    """One graph at `level` (1-4) for `device`; returns it with the fusion counts."""
    fusions: dict[str, int] = {}
    if level >= 2:
        model, fusions = fuse(model, pack_qkv=pack_qkv)
    if level >= 3:
        fusions["fast_gelu"] = approximate_gelu(model)
    optimized = basic_optimizations(model)
    if level >= 2 and device == "cpu":
        split = split_skip_norms(optimized)
        if split:
            fusions["skip_layer_normalization_split_for_cpu"] = split
    if level >= 4:
        optimized = to_fp16(optimized)
    return optimized, fusions


def _check_level(level: int, device: str) -> None:
    if level not in LEVELS:
        raise VariantError(f"-O must be 1, 2, 3 or 4 (got {level}).")
    if level == 4 and device != "cuda":
        raise VariantError(
            "-O4 converts to fp16, which pays off on CUDA only: pass --device cuda (needs "
            "onnxruntime-gpu), use -O3 on CPU, or `onnxport quantize --mode fp16` to get an "
            "fp16 model anyway."
        )
    if device == "cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise VariantError(
                "--device cuda needs onnxruntime-gpu (this onnxruntime has no CUDA provider)."
            )


def copy_metadata(source: onnx.ModelProto, target: onnx.ModelProto, **extra: str) -> None:
    """Keep onnxport's metadata (task, source, ...) on a variant and record how it was made."""
    values = {p.key: p.value for p in source.metadata_props}
    values.update(extra)
    del target.metadata_props[:]
    for key, value in values.items():
        target.metadata_props.add(key=key, value=value)


def optimize(
    model_dir: str | Path,
    level: int = 2,
    output_dir: str | Path | None = None,
    *,
    device: str = "cpu",
    eval_file: str | Path | None = None,
    min_cosine: float | None = None,
    force: bool = False,
) -> OptimizationResult:
    """Write `<graph>_O<level>.onnx` beside each exported graph and check its accuracy.

    Raises `OptimizationError` (nothing written) when the optimized model's worst cosine
    similarity to the fp32 export falls below `min_cosine`.

    Example:
        >>> result = optimize("out/", level=2)  # doctest: +SKIP
        >>> result.fusions  # doctest: +SKIP
        {'skip_layer_normalization': 12, 'attention': 6, 'bias_gelu': 6, ...}

    """
    start = time.perf_counter()
    folder = Path(model_dir)
    _check_level(level, device)
    graphs = base_graphs(folder)
    # Nothing here is chosen from the texts: every one of them is checked.
    generative = exported_task(folder / graphs[-1]) in GENERATIVE_TASKS
    chosen = evaluation_texts(eval_file, generative=generative)
    texts = [*chosen.search, *chosen.held_out]
    threshold = DEFAULT_MIN_COSINE[level] if min_cosine is None else min_cosine
    tag = f"O{level}"
    target = Path(output_dir) if output_dir is not None else folder
    fusions: dict[str, int] = {}
    with publish(folder, None if output_dir is None else target, force=force) as staging:
        written = []
        for name in graphs:
            logger.info("Optimizing %s at O%d (%s)...", name, level, LEVELS[level])
            source = onnx.load(str(folder / name))
            try:
                optimized, counts = optimize_graph(source, level, device=device)
            except Exception as err:
                raise OptimizationError(
                    f"Optimizing {name} at O{level} failed: {first_line(err)}"
                ) from err
            copy_metadata(source, optimized, variant=tag)
            for key, value in counts.items():
                fusions[key] = fusions.get(key, 0) + value
            save_graph(optimized, staging / variant_file(name, tag))
            written.append(variant_file(name, tag))
        main = written[-1]
        try:
            report = _guard(staging, folder, graphs[-1], main, texts)
        except OnnxportError as err:
            raise OptimizationError(
                f"The O{level} graph fails to run: {err}. Nothing was written; use a lower "
                "level (-O1 never fuses)."
            ) from err
        if not report.passes(threshold):
            raise OptimizationError(
                f"O{level} moved the outputs too far: cosine {report.min_cosine:.5f} < "
                f"{threshold} on the worst input; nothing was written. Use a lower level, or "
                "pass --min-cosine to accept it.",
                report=report,
            )
    return OptimizationResult(
        output_dir=target,
        level=level,
        files=tuple(target / f for f in written),
        fusions=fusions,
        accuracy=report,
        seconds=time.perf_counter() - start,
    )


def _guard(
    staging: Path, folder: Path, reference: str, candidate: str, texts: list[str]
) -> AccuracyReport:
    """Compare in a scratch folder holding both graphs and the side files."""
    with tempfile.TemporaryDirectory(prefix="onnxport-guard-", dir=staging) as scratch:
        work = Path(scratch)
        link_tree([folder, staging], work)  # new files shadow old ones of the same name
        return compare(work, reference, candidate, texts=texts)


__all__ = [
    "LEVELS",
    "OptimizationResult",
    "approximate_gelu",
    "encoder_file_for",
    "fuse",
    "optimize",
    "optimize_graph",
    "split_skip_norms",
    "to_fp16",
]
