"""TFLite stage: a Transformers checkpoint to a `.tflite` file, validated against PyTorch.

The converter is LiteRT's PyTorch converter (`litert-torch`), chosen by measurement: it
installs beside torch 2.13 and converts torch.export graphs directly, while onnx2tf (the
ONNX route) needs Python >= 3.12 for its 2.x line and its 1.x line pins TensorFlow 2.19 and
numpy 1.26. Quantization uses LiteRT's own `ai-edge-quantizer` on the converted file.
Shapes are static, as most TFLite delegates need: `batch_size` and `sequence_length` fix
them and `tflite_config.json` records them. The file is run with the LiteRT interpreter on
fresh inputs at that shape and compared with PyTorch, as ONNX exports are. The signature's
inputs carry the tokenizer's or processor's names and its outputs the model's, so LiteRT's
signature runner is fed by name (`runner(input_ids=..., attention_mask=...)["logits"]`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onnxport.errors import ExportOptionError, TFLiteError, ValidationError, first_line
from onnxport.exporters.adapters import ADAPTERS
from onnxport.exporters.api import load_for_export
from onnxport.exporters.capture import GraphModule
from onnxport.exporters.dummy import InputShape, trace_shape
from onnxport.exporters.postprocess import check_output_dir, save_side_files, staged_output
from onnxport.exporters.spec import (
    ExportSpec,
    default_input_names,
    derive_spec,
    example_inputs,
    run_reference,
)
from onnxport.exporters.validate import ValidationReport, check_outputs

logger = logging.getLogger(__name__)

TFLITE_FILE = "model.tflite"
TFLITE_CONFIG = "tflite_config.json"
QUANTIZE_MODES = ("int8", "fp16")
# int8 weights with activations quantized on the fly, and fp16 weights, move outputs by up
# to a few percent of their range; the fp32 file is held to the ONNX exporter's tolerances.
QUANTIZE_ATOL = {"int8": 0.2, "fp16": 1e-2}


@dataclass(frozen=True)
class TFLiteResult:
    """A written `.tflite` export: where, for which task and shapes, and its validation."""

    output_dir: Path
    tflite_path: Path
    task: str
    input_shapes: dict[str, tuple[int, ...]]
    quantize: str | None
    size_bytes: int
    validation: ValidationReport | None
    seconds: float


def check_available() -> None:
    """Fail with one line when the optional TFLite packages are missing."""
    missing = [
        package
        for module, package in (
            ("litert_torch", "litert-torch"),
            ("ai_edge_litert", "ai-edge-litert"),
        )
        if not _importable(module)
    ]
    if missing:
        raise TFLiteError(
            f"TFLite export needs {' and '.join(missing)}: pip install 'onnxport[tflite]'."
        )


def export_tflite(
    model: str | os.PathLike[str] | torch.nn.Module,
    output_dir: str | os.PathLike[str],
    task: str | None = None,
    *,
    batch_size: int = 1,
    sequence_length: int = 128,
    quantize: str | None = None,
    atol: float | None = None,
    validate_export: bool = True,
    force: bool = False,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> TFLiteResult:
    """Convert a checkpoint (or loaded model) to `output_dir/model.tflite` at a static shape.

    Example:
        >>> result = export_tflite("bert-folder/", "out/", sequence_length=64)  # doctest: +SKIP
        >>> result.validation.passed  # doctest: +SKIP
        True

    """
    start = time.perf_counter()
    output = Path(output_dir)
    check_available()
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise ExportOptionError(
            f"Unknown --quantize '{quantize}'; choose one of {', '.join(QUANTIZE_MODES)}.",
            option="--quantize",
        )
    if batch_size < 1 or sequence_length < 1:
        raise ExportOptionError(
            "--batch-size and --sequence-length must be at least 1.", option="--batch-size"
        )
    if atol is not None and not atol > 0:
        raise ExportOptionError(f"--atol must be a positive number, not {atol}.", option="--atol")
    check_output_dir(output, force=force)
    loaded = load_for_export(model, task, revision=revision, trust_remote_code=trust_remote_code)
    if loaded.task.with_past:
        raise TFLiteError(
            f"TFLite export does not cover {loaded.task.name} yet (it needs a key/value cache "
            "across calls); export an encoder task, or use `onnxport export onnx`."
        )
    torch_model, config = loaded.model, loaded.model.config
    adapter = ADAPTERS.get(config.model_type)
    if loaded.task.encoder_decoder:
        raise TFLiteError(
            f"TFLite export does not cover encoder-decoder models ({loaded.task.name}) yet; "
            "use `onnxport export onnx`."
        )
    default = default_input_names(torch_model, config, loaded.tokenizer)
    names = adapter.input_names(config, loaded.task.name, default)
    # derive_spec probes two shapes at least 2 wide; the static shape is set afterwards.
    spec = derive_spec(
        torch_model, loaded.task, names, adapter=adapter, traced=trace_shape(2, 16),
        fixed_image_size=True,
    )  # fmt: skip
    shape = InputShape(batch_size=batch_size, sequence_length=sequence_length)
    sample = example_inputs(spec, config, adapter, shape)
    atol = atol if atol is not None else QUANTIZE_ATOL.get(quantize or "", spec.atol)
    with staged_output(output, force=force) as staging:
        path = staging / TFLITE_FILE
        _convert(torch_model, spec, sample, path, quantize)
        report = (
            _validate(path, torch_model, spec, adapter, shape, atol) if validate_export else None
        )
        if report is not None and not report.passed:
            raise ValidationError(
                f"Validation failed for {TFLITE_FILE}: {report.summary()}; '{output}' was left "
                "as it was. Pass a larger --atol if this difference is acceptable, or "
                "--no-validate to keep the file for inspection.",
                report=replace(report, model_path=output / TFLITE_FILE),
            )
        input_shapes = {name: tuple(tensor.shape) for name, tensor in sample.items()}
        record = {
            "task": loaded.task.name,
            "model_type": config.model_type,
            "source": loaded.source_name,
            "quantize": quantize,
            "inputs": {
                name: {"shape": list(tensor.shape), "dtype": _tflite_dtype(tensor)}
                for name, tensor in sample.items()
            },
            "outputs": list(spec.output_names),
            "converter": f"litert-torch {_version('litert-torch')}",
        }
        (staging / TFLITE_CONFIG).write_text(json.dumps(record, indent=2) + "\n")
        save_side_files(staging, config=config, tokenizer=loaded.tokenizer, source=loaded.source)
        size = path.stat().st_size
    return TFLiteResult(
        output_dir=output,
        tflite_path=output / TFLITE_FILE,
        task=loaded.task.name,
        input_shapes=input_shapes,
        quantize=quantize,
        size_bytes=size,
        validation=replace(report, model_path=output / TFLITE_FILE) if report else None,
        seconds=time.perf_counter() - start,
    )


class _NamedSignature(torch.nn.Module):
    """Keyword inputs in, a dict of outputs out, so the `.tflite` signature carries names.

    litert-torch names a signature's inputs after the keyword arguments it was traced with
    and its outputs after the keys of a returned dict; positional ones become `args_0..`
    and `output_0..`. Mobile code feeds LiteRT's signature runner by name, so the names are
    the tokenizer's or processor's (`input_ids`, `pixel_values`) and the model's outputs'
    (`logits`, `last_hidden_state`).
    """

    def __init__(self, positional: GraphModule) -> None:
        super().__init__()
        # Not `graph`: torch.fx's GraphModule, which the converter builds, owns that name.
        self.positional = positional

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Call the model in spec order and name its outputs."""
        spec = self.positional.spec
        outputs = self.positional(*(inputs[name] for name in spec.input_names))
        return dict(zip(spec.output_names, outputs, strict=True))


def _convert(
    model: torch.nn.Module,
    spec: ExportSpec,
    sample: dict[str, torch.Tensor],
    path: Path,
    quantize: str | None,
) -> None:
    """Convert with litert-torch (inputs and outputs named), then quantize if asked."""
    with _quiet_converter():  # its import reports optional kernels it could not load
        import litert_torch

    module = _NamedSignature(GraphModule(model, spec)).eval()
    named = {name: sample[name] for name in spec.input_names}
    logger.info("Converting to TFLite with litert-torch at %s...", _shapes(sample))
    try:
        with _quiet_converter(), torch.no_grad():
            edge = litert_torch.convert(module, sample_kwargs=named)
            data = bytes(edge.model_content())
    except Exception as err:
        raise TFLiteError(
            f"litert-torch could not convert '{spec.model_type}' for {spec.task}: "
            f"{first_line(err, 300)}. Set ONNXPORT_DEBUG=1 for the traceback."
        ) from err
    if quantize is not None:
        data = _quantize(data, quantize)
    path.write_bytes(data)


def _quantize(data: bytes, mode: str) -> bytes:
    """int8: dynamic-range (int8 weights, int8 compute); fp16: fp16 weights, fp32 compute."""
    with _quiet_converter():
        from ai_edge_quantizer import qtyping, quantizer, recipe
        from ai_edge_quantizer.algorithm_manager import AlgorithmName

    if mode == "int8":
        tool = quantizer.Quantizer(data, recipe.dynamic_wi8_afp32())
    else:
        tool = quantizer.Quantizer(data)
        tool.add_weight_only_config(
            regex=".*",
            operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
            num_bits=16,
            algorithm_key=AlgorithmName.FLOAT_CASTING,
        )
    try:
        with _quiet_converter():
            result = tool.quantize(enable_progress_bar=False, enable_progress_report=False)
    except Exception as err:
        raise TFLiteError(
            f"ai-edge-quantizer could not apply {mode}: {first_line(err, 300)}"
        ) from err
    if result.quantized_model is None:
        raise TFLiteError(f"ai-edge-quantizer returned no model for {mode}.")
    return bytes(result.quantized_model)


def _validate(
    path: Path,
    model: torch.nn.Module,
    spec: ExportSpec,
    adapter: Any,
    shape: InputShape,
    atol: float,
) -> ValidationReport:
    """Run the file with the LiteRT interpreter on fresh inputs and compare with PyTorch."""
    from ai_edge_litert.interpreter import Interpreter

    with _quiet_converter():
        interpreter = Interpreter(model_path=str(path))
        runner = interpreter.get_signature_runner()
    signature = interpreter.get_signature_list()["serving_default"]
    for kind, names in (("inputs", spec.input_names), ("outputs", spec.output_names)):
        if sorted(signature[kind]) != sorted(names):
            raise TFLiteError(
                f"The TFLite file's signature {kind} are {', '.join(signature[kind])}, the "
                f"model's {', '.join(names)}; a converter change renamed them."
            )
    checks = []
    padded = replace(shape, padded=shape.batch_size > 1)
    for seed, each in ((1, shape), (2, padded)):
        inputs = example_inputs(spec, model.config, adapter, each, seed=seed)
        with torch.no_grad():
            reference = run_reference(model, spec, inputs)
        # Fed by name, as a mobile app does; litert-torch stores 64-bit integers as 32-bit.
        feed = {name: _to_tflite(inputs[name]) for name in spec.input_names}
        with _quiet_converter():  # the first call prints the CPU delegate's notice
            raw = runner(**feed)
        results = {name: raw[name] for name in spec.output_names}
        expected = {k: v.detach().float().numpy() for k, v in reference.items()}
        label = f"{each.label()}, seed {seed}"
        checks += check_outputs(spec, expected, results, inputs, atol=atol, label=label)
    return ValidationReport(
        model_path=path,
        reference_outputs=tuple(spec.output_names),
        onnx_outputs=tuple(spec.output_names),
        checks=tuple(checks),
        atol=atol,
        runtime="TFLite",
    )


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """Keep litert-torch's progress lines and warnings out of our output for this call.

    The converter prints its stage timings from Python and from native code (MLIR, the
    interpreter's delegate notice), so the process's stdout and stderr are redirected at the
    file-descriptor level; set ONNXPORT_DEBUG=1 to see them.
    """
    if os.environ.get("ONNXPORT_DEBUG", "") not in ("", "0"):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    loggers = [logging.getLogger(), logging.getLogger("litert_torch")]
    levels = [each.level for each in loggers]
    try:
        with (
            open(os.devnull, "w") as sink,
            warnings.catch_warnings(),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            warnings.simplefilter("ignore")
            for each in loggers:
                each.setLevel(logging.ERROR)
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        for each, level in zip(loggers, levels, strict=True):
            each.setLevel(level)


def _to_tflite(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype == torch.int64:
        return tensor.numpy().astype(np.int32)
    if tensor.is_floating_point():
        return tensor.float().numpy()
    return tensor.numpy()


def _tflite_dtype(tensor: torch.Tensor) -> str:
    return str(_to_tflite(tensor).dtype)


def _shapes(sample: dict[str, torch.Tensor]) -> str:
    return ", ".join(f"{name} {tuple(tensor.shape)}" for name, tensor in sample.items())


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
