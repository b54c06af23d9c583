"""Validate stage: ONNX Runtime against PyTorch, at shapes other than the traced one.

`validate` returns a `ValidationReport` (one `OutputCheck` per output and input shape);
`ValidationReport.format()` is the block the CLI prints. For per-token outputs, positions
whose attention_mask is 0 are left out: their values are undefined (a padded query may see no
key at all) and no caller reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onnxport.errors import ValidationError, first_line
from onnxport.exporters.adapters import ExportAdapter
from onnxport.exporters.dummy import InputShape
from onnxport.exporters.spec import ExportSpec, example_inputs, run_reference
from onnxport.sessions import create_session

OK = "✓"
FAIL = "x"
# A value passes within atol + RTOL * the output's largest |reference| value. float32 rounding
# grows with the scale of the activations, so an absolute bound alone fails honest rounding on
# large outputs: tiny mT5's logits (up to 80) are 8e-4 from float64 in PyTorch and in ONNX
# Runtime alike, and 1.2e-4 from each other. 1.3e-6 is torch.testing's float32 rtol.
RTOL = 1.3e-6


@dataclass(frozen=True)
class OutputCheck:
    """One output at one input shape: shapes and the largest differences."""

    name: str
    inputs: str
    reference_shape: tuple[int, ...]
    onnx_shape: tuple[int, ...]
    max_abs_diff: float
    max_rel_diff: float
    atol: float
    padding_ignored: bool
    # The largest difference beyond rtol * max |reference| (what atol bounds).
    max_excess: float
    rtol: float = 0.0

    @property
    def shape_ok(self) -> bool:
        """Whether ONNX Runtime returned the reference's shape."""
        return self.reference_shape == self.onnx_shape

    @property
    def values_ok(self) -> bool:
        """Whether every compared value is within `atol` + `rtol` * max |reference|."""
        return self.shape_ok and self.max_excess <= self.atol

    @property
    def passed(self) -> bool:
        """Shape and values both match."""
        return self.shape_ok and self.values_ok


@dataclass(frozen=True)
class ValidationReport:
    """Every check of one ONNX file against its PyTorch model."""

    model_path: Path
    reference_outputs: tuple[str, ...]
    onnx_outputs: tuple[str, ...]
    checks: tuple[OutputCheck, ...]
    atol: float
    runtime: str = "ONNX"

    @property
    def names_match(self) -> bool:
        """Whether the ONNX outputs are the reference outputs, in order."""
        return self.reference_outputs == self.onnx_outputs

    @property
    def passed(self) -> bool:
        """Names, shapes and values all match."""
        return self.names_match and all(check.passed for check in self.checks)

    @property
    def worst(self) -> OutputCheck | None:
        """The failing check with the largest difference, if any failed."""
        failed = [check for check in self.checks if not check.passed]
        return max(failed, key=lambda c: (not c.shape_ok, c.max_abs_diff), default=None)

    def summary(self) -> str:
        """One line: what failed and by how much."""
        if not self.names_match:
            return (
                f"ONNX outputs ({', '.join(self.onnx_outputs)}) differ from the reference "
                f"outputs ({', '.join(self.reference_outputs)})"
            )
        worst = self.worst
        if worst is None:
            return "all outputs match"
        if not worst.shape_ok:
            return (
                f"output '{worst.name}' has shape {worst.onnx_shape}, PyTorch gives "
                f"{worst.reference_shape} ({worst.inputs})"
            )
        return (
            f"output '{worst.name}' differs by up to {worst.max_abs_diff:.3g} "
            f"(atol {worst.atol:g}{_rtol_text(worst)}) at {worst.inputs}"
        )

    def format(self, display_path: str | Path | None = None) -> str:
        """The validation block, one line per check, as the CLI prints it."""
        lines = [f"Validating {self.runtime} model {display_path or self.model_path}..."]
        mark = OK if self.names_match else FAIL
        names = ", ".join(self.reference_outputs)
        if self.names_match:
            lines.append(
                f"    -[{mark}] {self.runtime} model output names match reference model ({names})"
            )
        else:
            lines.append(
                f"    -[{mark}] {self.runtime} model output names ({', '.join(self.onnx_outputs)}) "
                "do not "
                f"match reference model ({names})"
            )
        for name in self.reference_outputs:
            lines.append(f'    - Validating {self.runtime} Model output "{name}":')
            for check in (c for c in self.checks if c.name == name):
                ref, got = _shape_text(check.reference_shape), _shape_text(check.onnx_shape)
                if check.shape_ok:
                    lines.append(f"        -[{OK}] {got} matches {ref}")
                else:
                    lines.append(f"        -[{FAIL}] shape {got} does not match {ref}")
                    continue
                note = f", rtol: {check.rtol:g}" * bool(check.rtol)
                note += ", padded positions ignored" * check.padding_ignored
                if check.values_ok:
                    lines.append(f"        -[{OK}] all values close (atol: {check.atol:g}{note})")
                else:
                    lines.append(
                        f"        -[{FAIL}] values not close enough, max diff: "
                        f"{check.max_abs_diff:.4g} (atol: {check.atol:g}{note})"
                    )
        return "\n".join(lines)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _to_numpy(value: torch.Tensor) -> np.ndarray:
    return (
        value.detach().cpu().float().numpy()
        if value.is_floating_point()
        else value.detach().cpu().numpy()
    )


def compare(
    name: str,
    reference: np.ndarray,
    actual: np.ndarray,
    *,
    atol: float,
    label: str,
    keep: np.ndarray | None = None,
    token_axis: int | None = None,
    rtol: float = RTOL,
) -> OutputCheck:
    """Compare one output; `keep` (batch x tokens) selects the positions compared.

    The token axis is `token_axis` (default 1); other axes are compared in full.
    """
    ref_shape, got_shape = tuple(reference.shape), tuple(actual.shape)
    if ref_shape != got_shape:
        inf = float("inf")
        return OutputCheck(
            name, label, ref_shape, got_shape, inf, inf, atol, keep is not None, inf, rtol
        )
    ref = reference.astype(np.float64)
    got = actual.astype(np.float64)
    if keep is not None and token_axis not in (None, 1):
        ref, got = np.moveaxis(ref, token_axis, 1), np.moveaxis(got, token_axis, 1)
    if keep is not None:
        ref, got = ref[keep], got[keep]
    # Equal values match, infinities included (masked logits are -inf on both sides).
    same = (ref == got) | (np.isnan(ref) & np.isnan(got))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(ref - got))
    diff = np.where(np.isnan(diff), np.inf, diff)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = np.maximum(np.abs(ref), 1e-12)
    max_rel = float((diff / scale).max()) if diff.size else 0.0
    peak = float(np.abs(np.nan_to_num(ref, posinf=0.0, neginf=0.0)).max()) if diff.size else 0.0
    excess = max_abs - rtol * peak
    return OutputCheck(
        name, label, ref_shape, got_shape, max_abs, max_rel, atol, keep is not None, excess, rtol
    )


def _rtol_text(check: OutputCheck) -> str:
    return f" + rtol {check.rtol:g} x its largest value" if check.rtol else ""


def validate(
    onnx_path: Path,
    model: torch.nn.Module,
    spec: ExportSpec,
    adapter: ExportAdapter,
    shapes: Sequence[InputShape],
    *,
    atol: float | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    release_model: Callable[[], None] | None = None,
) -> ValidationReport:
    """Run PyTorch and ONNX Runtime on inputs at each of `shapes` and compare every output.

    PyTorch runs first, at every shape; then `release_model` (when given) frees the model's
    weights, so that they and ONNX Runtime's copy of them are never resident together.
    """
    # The default bound allows float32 rounding relative to the output's scale; an atol the
    # caller gives is the whole bound.
    rtol = RTOL if atol is None else 0.0
    atol = spec.atol if atol is None else atol
    config: Any = model.config
    device = next(iter(model.parameters())).device
    cases: list[tuple[InputShape, dict[str, torch.Tensor], dict[str, np.ndarray]]] = []
    for index, shape in enumerate(shapes):
        inputs = example_inputs(spec, config, adapter, shape, seed=index + 1)
        with torch.no_grad():
            outputs = run_reference(model, spec, {k: v.to(device) for k, v in inputs.items()})
        cases.append((shape, inputs, {k: _to_numpy(v) for k, v in outputs.items()}))
    if release_model is not None:
        release_model()
    session = create_session(onnx_path, None, providers, error=ValidationError)
    onnx_outputs = tuple(output.name for output in session.get_outputs())
    # The exporter drops inputs the model never reads (RWKV's attention_mask, Zamba's
    # token_type_ids): PyTorch still gets them, the graph is fed what it declares.
    graph_inputs = {graph_input.name for graph_input in session.get_inputs()}
    checks: list[OutputCheck] = []
    for shape, inputs, reference in cases:
        feed = {name: tensor.numpy() for name, tensor in inputs.items() if name in graph_inputs}
        try:
            results = dict(zip(onnx_outputs, session.run(None, feed), strict=True))
        except Exception as err:
            raise ValidationError(
                f"Validation failed: ONNX Runtime could not run the exported graph at "
                f"{shape.label()} (PyTorch could): {first_line(err, 300)}",
                report=None,
            ) from err
        checks += check_outputs(
            spec, reference, results, inputs, atol=atol, rtol=rtol, label=shape.label()
        )
    return ValidationReport(
        model_path=onnx_path,
        reference_outputs=tuple(spec.output_names),
        onnx_outputs=onnx_outputs,
        checks=tuple(checks),
        atol=atol,
    )


def check_outputs(
    spec: ExportSpec,
    reference: dict[str, np.ndarray],
    results: dict[str, np.ndarray],
    inputs: dict[str, torch.Tensor],
    *,
    atol: float,
    label: str,
    rtol: float = RTOL,
) -> list[OutputCheck]:
    """Compare every output of the spec present in both, ignoring padded token positions."""
    checks = []
    mask = inputs["attention_mask"].numpy() if "attention_mask" in inputs else None
    for name in spec.output_names:
        if name not in results or name not in reference:
            continue
        expected, actual = reference[name], results[name]
        keep = None
        axis = spec.token_axes.get(name)
        if mask is not None and mask.ndim == 2 and axis is not None and not mask.all():
            # Align the output's token axis with the last columns of the mask (a decoder
            # step's logits cover only the new tokens), then drop padded positions.
            length = expected.shape[axis] if expected.ndim > axis else 0
            if 0 < length <= mask.shape[1]:
                keep = mask[:, -length:].astype(bool)
        checks.append(
            compare(
                name,
                expected,
                actual,
                atol=atol,
                label=label,
                keep=keep,
                token_axis=axis,
                rtol=rtol,
            )
        )
    return checks


def reference_model_device(model: Any) -> str:
    """Device of the model's first parameter, as text."""
    return str(next(iter(model.parameters())).device)
