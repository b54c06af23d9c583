"""Capture stage: turn a PyTorch model into an ONNX file, trying strategies in order.

The dynamo exporter (`torch.onnx.export(dynamo=True)`) comes first; the deprecated
TorchScript exporter is the last resort. The result says which strategy produced the file
and why each earlier one failed, and the log says it too.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from onnxport.errors import CaptureError, ExportOptionError, write_failure
from onnxport.exporters.spec import ExportSpec, run_reference
from onnxport.exporters.squeeze_axes import explicit_squeeze_axes

logger = logging.getLogger(__name__)

MIN_OPSET = 14
DEFAULT_OPSET = 18
# Graphs with a key/value cache: opset 23 has the standard Attention op (which takes the past
# and returns the present), RotaryEmbedding and RMSNormalization, which torch.onnx writes for
# scaled_dot_product_attention and rms_norm. Measured on a 250M Llama, batch 1: 1.13x the
# tokens/s of the same model at opset 18 once the cache is folded in (fuse_cache.py).
GENERATION_OPSET = 23

# What a strategy raises when it cannot capture this model, so that the next one may:
# torch.onnx's OnnxExporterError (a RuntimeError wrapping what torch.export hit: dynamo's
# Unsupported, a data-dependent guard, an op with no ONNX function), what model code raises
# under tracing (symbolic sizes, fake tensors), and the TorchScript tracer's own errors.
_CANNOT_CAPTURE: tuple[type[Exception], ...] = (
    RuntimeError,
    TypeError,
    ValueError,
    IndexError,
    KeyError,
    torch.jit.Error,
    torch.jit.frontend.FrontendError,
)
# Raised from onnxport's own code (the capture wrapper, run_reference, an adapter) these are
# bugs: every strategy runs that same code, and a fallback would only hide them.
_BUGS = (NameError, AttributeError, AssertionError)
# As the code objects spell it (not resolved): every onnxport module is loaded from here.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(__file__)) + os.sep


def max_opset() -> int:
    """Highest opset the installed torch.onnx exporter emits."""
    from torch.onnx import _constants

    return int(_constants.ONNX_MAX_OPSET)


def default_opset(with_past: bool) -> int:
    """The opset used when none is asked: GENERATION_OPSET for cached decoders, if supported."""
    return GENERATION_OPSET if with_past and max_opset() >= GENERATION_OPSET else DEFAULT_OPSET


def check_opset(opset: int) -> None:
    """Refuse an opset the installed exporter cannot target."""
    if not MIN_OPSET <= opset <= max_opset():
        raise ExportOptionError(
            f"--opset {opset} is outside what this torch.onnx supports "
            f"({MIN_OPSET}-{max_opset()}); the default is {DEFAULT_OPSET}.",
            option="--opset",
        )


class GraphModule(torch.nn.Module):
    """Positional inputs in spec order in, a tuple of outputs in spec order out.

    Exporters name graph inputs and outputs by position; this wrapper fixes that order
    without touching the model's class. A decoder's cache arrives as flat tensors and is
    rebuilt into a transformers cache inside `forward` (the cache class is not a pytree
    torch.export can take as an input).
    """

    def __init__(self, model: torch.nn.Module, spec: ExportSpec) -> None:
        super().__init__()
        self.model = model
        self.spec = spec

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Call the model through `run_reference` and pick the spec's outputs."""
        inputs = dict(zip(self.spec.input_names, args, strict=True))
        outputs = run_reference(self.model, self.spec, inputs)
        return tuple(outputs[name] for name in self.spec.output_names)


@dataclass(frozen=True)
class CaptureResult:
    """Which strategy wrote the ONNX file, and why the ones before it failed."""

    path: Path
    strategy: str
    failures: tuple[tuple[str, str], ...]
    seconds: float


class CaptureStrategy:
    """One way to capture a graph; subclasses implement `run`."""

    name = "base"

    def run(
        self,
        module: GraphModule,
        args: tuple[torch.Tensor, ...],
        spec: ExportSpec,
        opset: int,
        path: Path,
        external_data: bool,
    ) -> None:
        """Write the ONNX model to `path` or raise."""
        raise NotImplementedError


class DynamoStrategy(CaptureStrategy):
    """torch.export-based exporter with named dynamic axes (PyTorch's default)."""

    name = "dynamo"

    def run(
        self,
        module: GraphModule,
        args: tuple[torch.Tensor, ...],
        spec: ExportSpec,
        opset: int,
        path: Path,
        external_data: bool,
    ) -> None:
        """Export with `dynamo=True` and save, with weights in one external file if asked."""
        # GraphModule.forward takes *args: torch.export reads one spec per argument, nested
        # under the single variadic parameter.
        dynamic_shapes = (tuple(dict(axes) for axes in spec.inputs.values()),)
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            input_names=spec.input_names,
            output_names=spec.output_names,
            opset_version=opset,
            optimize=True,
            verbose=False,
            custom_translation_table=_translations(),
        )
        try:
            if program is None:
                raise RuntimeError("torch.onnx.export returned no program")
            program.save(str(path), external_data=external_data)
        finally:
            del program
            release_rewriter_graphs()


def _translations() -> dict[Any, Any]:
    """ONNX translations for aten ops torch.onnx (2.13) has none for.

    `aten._is_all_true`: transformers' `torch_compilable_check` on a tensor condition
    (VITS' spline bounds) lowers to it; the check's value is unused in the graph, but the
    exporter refuses the op. all(x) is min(x) over booleans.
    `aten.searchsorted`, `aten.cummax`, `aten.cummin`: ONNX has no such operators (Grounding
    DINO's text masks use them).
    """
    from onnx import TensorProto
    from onnxscript import opset18

    op: Any = opset18  # onnxscript's stubs type Cast's output too narrowly for ReduceMin

    def is_all_true(condition: Any) -> Any:
        as_int = op.Cast(condition, to=TensorProto.INT64)
        return op.Cast(op.ReduceMin(as_int, keepdims=0), to=TensorProto.BOOL)

    def searchsorted(
        sorted_sequence: Any,
        values: Any,
        out_int32: bool = False,
        right: bool = False,
        side: str | None = None,
        sorter: Any = None,
    ) -> Any:
        if sorter is not None:
            raise NotImplementedError("searchsorted with a sorter")
        # The insertion index is the count of boundaries below each value (or not above it,
        # for right=True), compared along the sorted axis.
        axis = op.Constant(value_ints=[-1])
        boundaries = sorted_sequence
        if len(sorted_sequence.shape) > 1:
            boundaries = op.Unsqueeze(sorted_sequence, op.Constant(value_ints=[-2]))
        candidates = op.Unsqueeze(values, axis)
        after = right or side == "right"
        below = op.LessOrEqual(boundaries, candidates) if after else op.Less(boundaries, candidates)
        count = op.ReduceSum(op.Cast(below, to=TensorProto.INT64), axis, keepdims=0)
        return op.Cast(count, to=TensorProto.INT32) if out_int32 else count

    def cumulative(x: Any, dim: int, largest: bool) -> tuple[Any, Any]:
        # Pairwise over the axis (O(n^2), for the short axes models scan: a text's tokens):
        # result[i] = extreme of x[j] for j <= i; its index, the last j reaching it (as torch).
        rank = len(x.shape)
        d = dim % rank
        count = op.Shape(x, start=d, end=d + 1)
        zero, one = op.Constant(value_ints=[0]), op.Constant(value_ints=[1])
        j = op.Range(op.Squeeze(zero), op.Squeeze(count), op.Squeeze(one))
        trailing = list(range(2, 2 + rank - d - 1))
        earlier = op.LessOrEqual(op.Unsqueeze(j, zero), op.Unsqueeze(j, one))  # [i, j]: j <= i
        if trailing:
            earlier = op.Unsqueeze(earlier, op.Constant(value_ints=trailing))
        pairs = op.Unsqueeze(x, op.Constant(value_ints=[d]))  # axis d: i, axis d + 1: j
        # Any value on the other side of every element fills the positions after i.
        fill = op.ReduceMin(x, keepdims=0) if largest else op.ReduceMax(x, keepdims=0)
        reduce = op.ReduceMax if largest else op.ReduceMin
        along_j = op.Constant(value_ints=[d + 1])
        values = reduce(op.Where(earlier, pairs, fill), along_j, keepdims=0)
        reached = op.And(earlier, op.Equal(pairs, op.Unsqueeze(values, along_j)))
        positions = j
        if trailing:
            positions = op.Unsqueeze(j, op.Constant(value_ints=[t - 1 for t in trailing]))
        minus_one = op.Constant(value_ints=[-1])
        indices = op.ReduceMax(op.Where(reached, positions, minus_one), along_j, keepdims=0)
        return values, indices

    def cummax(x: Any, dim: int) -> tuple[Any, Any]:
        return cumulative(x, dim, largest=True)

    def cummin(x: Any, dim: int) -> tuple[Any, Any]:
        return cumulative(x, dim, largest=False)

    return {
        torch.ops.aten._is_all_true.default: is_all_true,
        torch.ops.aten.searchsorted.Tensor: searchsorted,
        torch.ops.aten.cummax.default: cummax,
        torch.ops.aten.cummin.default: cummin,
    }


def release_rewriter_graphs() -> None:
    """Drop the graph onnxscript's rewrite rules keep from the last one they matched.

    onnxscript (0.7) shares module-level rewrite rules whose matchers keep the last graph
    they saw (`_graph`, `_match`); that graph's initializers are the exported model's own tensors,
    so the weights could never be freed after an export (a 3 GB model stayed resident
    through validation). The attributes are set afresh at the start of every match.
    """
    try:
        from onnxscript.rewriter._basics import MatchResult
        from onnxscript.rewriter._matcher import SimplePatternMatcher
    except ImportError:  # a different onnxscript layout: nothing we know how to release
        return
    for each in gc.get_objects():
        if isinstance(each, SimplePatternMatcher):
            state = vars(each)
            for attribute in ("_graph", "_current_node", "_tracer"):
                if attribute in state:
                    state[attribute] = None
            if "_match" in state:
                state["_match"] = MatchResult()
    gc.collect()


class TorchScriptStrategy(CaptureStrategy):
    """The deprecated TorchScript tracer: last resort for models dynamo cannot capture."""

    name = "torchscript"

    def run(
        self,
        module: GraphModule,
        args: tuple[torch.Tensor, ...],
        spec: ExportSpec,
        opset: int,
        path: Path,
        external_data: bool,
    ) -> None:
        """Trace and export with `dynamo=False` and dynamic_axes."""
        dynamic_axes = {name: dict(axes) for name, axes in {**spec.inputs, **spec.outputs}.items()}
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=dynamic_axes,
            opset_version=min(opset, 20),
            do_constant_folding=True,
        )


CAPTURE_STRATEGIES: tuple[CaptureStrategy, ...] = (DynamoStrategy(), TorchScriptStrategy())


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep torch.onnx's progress prints and warnings out of our log for this call only."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    previous = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for each, level in zip(loggers, previous, strict=True):
            each.setLevel(level)


def capture(
    model: torch.nn.Module,
    spec: ExportSpec,
    example: dict[str, torch.Tensor],
    *,
    opset: int,
    path: Path,
    external_data: bool = False,
    strategies: Sequence[CaptureStrategy] = CAPTURE_STRATEGIES,
) -> CaptureResult:
    """Write `model` as ONNX to `path` with the first strategy that succeeds."""
    module = GraphModule(model, spec).eval()
    args = tuple(example[name] for name in spec.input_names)
    failures: list[tuple[str, str]] = []
    errors: list[Exception] = []
    for strategy in strategies:
        start = time.perf_counter()
        logger.info("Capturing the graph with the %s exporter...", strategy.name)
        bug = None
        try:
            with _quiet_exporter(), torch.no_grad():
                strategy.run(module, args, spec, opset, path, external_data)
        except _CANNOT_CAPTURE as err:
            if write_failure(err) is not None:
                raise  # a full or read-only disk: no other exporter would fare better
            bug = _own_bug(err)
            if bug is None:
                reason = _summary(err)
                failures.append((strategy.name, reason))
                errors.append(err)
                logger.warning("The %s exporter failed: %s", strategy.name, reason)
                logger.debug("The %s exporter's failure in full:", strategy.name, exc_info=err)
                for leftover in path.parent.glob(path.name + "*"):
                    leftover.unlink()
                continue
        if bug is not None:
            # Raised outside the handler: inside it, torch's wrapper would become the context
            # of its own cause (a cycle). The traceback still ends at the line at fault.
            raise bug
        if squeezed := explicit_squeeze_axes(path):
            logger.info("%d axes-less Squeeze nodes got their traced axes.", squeezed)
        seconds = time.perf_counter() - start
        if failures:
            logger.warning(
                "Graph captured by the fallback %s exporter after: %s",
                strategy.name,
                "; ".join(f"{name}: {why}" for name, why in failures),
            )
        else:
            logger.info("Graph captured by the %s exporter in %.1f s.", strategy.name, seconds)
        return CaptureResult(path, strategy.name, tuple(failures), seconds)
    raise CaptureError(
        f"Could not capture '{spec.model_type}' for {spec.task}: "
        + "; ".join(f"{name} exporter: {why}" for name, why in failures)
        + ". Set ONNXPORT_DEBUG=1 for the traceback, or register an adapter for this model.",
        failures=failures,
    ) from (errors[0] if errors else None)


def _own_bug(err: BaseException) -> BaseException | None:
    """The NameError/AttributeError/AssertionError in onnxport's code at the root of `err`.

    torch.onnx wraps whatever tracing raised in its own error; the root cause is what the
    traced code itself raised, and the last frame of its traceback is where.
    """
    root = _root_cause(err)
    if not isinstance(root, _BUGS):
        return None
    frames = traceback.extract_tb(root.__traceback__)
    if frames and frames[-1].filename.startswith(_PACKAGE_DIR):
        return root
    return None


def _root_cause(err: BaseException) -> BaseException:
    """The last exception of `err`'s `__cause__` chain."""
    seen = {id(err)}
    while err.__cause__ is not None and id(err.__cause__) not in seen:
        err = err.__cause__
        seen.add(id(err))
    return err


def _summary(err: BaseException) -> str:
    """The root cause in one line: torch.onnx wraps it in a generic 'step 1/3' error."""
    err = _root_cause(err)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"
