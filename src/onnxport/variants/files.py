"""Variants of an exported folder: the fp32 graphs and their optimized or quantized copies.

A folder keeps the export (`model.onnx`, or `encoder_model.onnx` + `decoder_model.onnx`) and
gains variants beside it under clear names (`model_O2.onnx`, `model_int8.onnx`, ...), which
`ORTModelFor*.from_pretrained(folder, file_name=...)` loads; in the transformers.js layout
they go into `onnx/` beside its graphs, named by transformers.js' dtype suffixes. New files
are written into a staging folder and moved into place only once every one of them is
complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx

from onnxport.errors import OutputWriteError, VariantError
from onnxport.exporters.postprocess import EXTERNAL_DATA_THRESHOLD, staged_output
from onnxport.layout import (  # noqa: F401  (re-exported for the variant stages)
    DECODER_FILE,
    ENCODER_DECODER,
    SINGLE,
    encoder_file_for,
    exported_task,
    find_base_graphs,
    variant_file,
)
from onnxport.runtime.registry import LOOP_TASKS


def link_tree(sources: list[Path], work: Path) -> None:
    """Fill `work` with links to every file under `sources`, later sources shadowing earlier.

    Files keep their place relative to their source (`onnx/model.onnx` stays in `onnx/`);
    hidden folders (a staging folder inside its target) and `work` itself are skipped.
    """
    for source in sources:
        for item in list(source.rglob("*")):
            relative = item.relative_to(source)
            hidden = any(part.startswith(".") for part in relative.parts[:-1])
            if not item.is_file() or hidden or work in item.parents:
                continue
            link = work / relative
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(item.resolve())


def base_graphs(folder: Path) -> tuple[str, ...]:
    """The fp32 graphs onnxport exported into `folder`, in the order they run."""
    if not folder.is_dir():
        raise VariantError(f"'{folder}' is not a folder; pass the folder `onnxport export` wrote.")
    decoder = folder / DECODER_FILE
    task = exported_task(decoder) if decoder.is_file() else None
    if task in LOOP_TASKS:
        raise VariantError(
            f"optimize, quantize and benchmark do not support {task} folders (SpeechT5, "
            "MusicGen: several graphs run by their own loop) yet; use the fp32 graphs."
        )
    found = find_base_graphs(folder)
    if found is None:
        raise VariantError(
            f"No exported model in '{folder}' (expected model.onnx, or encoder_model.onnx and "
            "decoder_model.onnx, at its root or in onnx/). Export one first with `onnxport "
            "export onnx`."
        )
    return found


def save_graph(model: onnx.ModelProto, path: Path) -> None:
    """Save `model`; its weights go to `<name>.data` beside it when protobuf cannot hold them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if model.ByteSize() > EXTERNAL_DATA_THRESHOLD:
        onnx.save(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{path.name}.data",
        )
    else:
        onnx.save(model, str(path))


@contextlib.contextmanager
def publish(folder: Path, output_dir: Path | None, *, force: bool = False) -> Iterator[Path]:
    """Yield a staging folder for new variant files; on success they land in the target.

    Without `output_dir` (or when it is `folder`) the variants are added to `folder`, any
    earlier file of the same name replaced. With another `output_dir`, that folder becomes a
    copy of `folder` plus the variants (refused when it is not empty, unless `force`).
    """
    if output_dir is not None and output_dir.resolve() != folder.resolve():
        with staged_output(output_dir, force=force) as staging:
            for item in folder.iterdir():
                if item.is_file():
                    shutil.copy2(item, staging / item.name)
                elif item.is_dir() and not item.name.startswith("."):
                    shutil.copytree(item, staging / item.name)
            yield staging
        return
    if not os.access(folder, os.W_OK):
        raise OutputWriteError(
            f"Cannot write to '{folder}' (permission denied); pass an output folder.",
            path=str(folder),
            errno=errno.EACCES,
        )
    staging = Path(tempfile.mkdtemp(prefix=".variants.", suffix=".partial", dir=folder))
    try:
        yield staging
        for item in sorted(p for p in staging.rglob("*") if p.is_file()):
            destination = folder / item.relative_to(staging)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
