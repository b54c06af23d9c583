"""`onnxport inspect`: what an exported folder holds, read from the graphs themselves.

Only the graph structure and metadata are read (never the weights), so inspecting a
multi-gigabyte export is instant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import onnx

from onnxport.errors import ModelFileError, ModelNotFoundError, first_line
from onnxport.layout import graph_folder, transformers_js_dtypes


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: name, element type and dims (axis names where dynamic)."""

    name: str
    dtype: str
    dims: tuple[int | str, ...]

    def format(self) -> str:
        """`name: dtype[dims]`."""
        dims = ", ".join(str(d) for d in self.dims)
        return f"{self.name}: {self.dtype}[{dims}]"


@dataclass(frozen=True)
class GraphInfo:
    """One ONNX file of an export."""

    path: Path
    size_bytes: int
    external_files: tuple[str, ...]
    opset: int
    producer: str
    metadata: dict[str, str]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    @property
    def options(self) -> dict[str, object]:
        """The export options recorded at export time (empty for other producers)."""
        text = self.metadata.get("export_options")
        return dict(json.loads(text)) if text else {}

    def format(self) -> str:
        """The block `onnxport inspect` prints for this file."""
        lines = [
            f"{self.path.name} ({_size(self.size_bytes)}, opset {self.opset}, {self.producer})"
        ]
        for name in self.external_files:
            lines.append(f"  weights: {name}")
        versions = {k: v for k, v in self.metadata.items() if k.endswith("_version")}
        if versions:
            text = ", ".join(f"{k.removesuffix('_version')} {v}" for k, v in versions.items())
            lines.append(f"  versions: {text}")
        for key in ("source", "task", "model_type", "dtype", "capture_strategy"):
            if key in self.metadata:
                lines.append(f"  {key}: {self.metadata[key]}")
        if self.options:
            text = ", ".join(f"{k}={v}" for k, v in self.options.items())
            lines.append(f"  options: {text}")
        lines.append("  inputs:")
        lines.extend(f"    {t.format()}" for t in self.inputs)
        lines.append("  outputs:")
        lines.extend(f"    {t.format()}" for t in self.outputs)
        return "\n".join(lines)


def inspect_export(path: str | Path) -> list[GraphInfo]:
    """Describe every `.onnx` file in a folder (or one file)."""
    target = Path(path)
    if target.is_file():
        files = [target]
    elif target.is_dir():
        files = sorted(graph_folder(target).glob("*.onnx"))
        if not files:
            raise ModelNotFoundError(
                f"No .onnx file in '{target}'; export one with `onnxport export onnx`.",
                model=str(target),
            )
    else:
        raise ModelNotFoundError(f"'{target}' does not exist.", model=str(target))
    return [_describe(file) for file in files]


def dtype_summary(folder: str | Path) -> str | None:
    """The line naming the dtypes a transformers.js folder offers (None for other folders).

    `fp32 (onnx/model.onnx), q4 (onnx/model_q4.onnx)`: what `dtype:` selects in
    transformers.js' `from_pretrained` or `pipeline`.
    """
    target = Path(folder)
    offered = transformers_js_dtypes(target) if target.is_dir() else {}
    if not offered:
        return None
    listed = ", ".join(f"{dtype} ({name})" for dtype, name in offered.items())
    return f"transformers.js layout; dtypes offered: {listed}"


def _describe(path: Path) -> GraphInfo:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises its own DecodeError
        raise ModelFileError(
            f"'{path}' is not a readable ONNX file ({first_line(err, 120)}); export it again.",
            model=str(path),
        ) from err
    external = sorted(
        {
            entry.value
            for tensor in model.graph.initializer
            for entry in tensor.external_data
            if entry.key == "location"
        }
    )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return GraphInfo(
        path=path,
        size_bytes=path.stat().st_size + sum(_file_size(path.parent / f) for f in external),
        external_files=tuple(external),
        opset=opset,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        metadata={p.key: p.value for p in model.metadata_props},
        inputs=tuple(_tensor(v) for v in model.graph.input),
        outputs=tuple(_tensor(v) for v in model.graph.output),
    )


def _tensor(value: onnx.ValueInfoProto) -> TensorInfo:
    tensor = value.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "?"
    dims = tuple(d.dim_param or d.dim_value for d in tensor.shape.dim)
    return TensorInfo(value.name, dtype, dims)


def _file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    power = min(3, (count.bit_length() - 1) // 10)  # 1 KB, 2 MB, 3 GB
    return f"{count / 1024**power:.1f} {('KB', 'MB', 'GB')[power - 1]}"
