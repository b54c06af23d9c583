"""Postprocess stage: metadata, side files, and atomic publication of the output folder.

Everything is written into a hidden staging folder beside the output folder, then moved into
place with a rename. A failure, Ctrl-C or SIGTERM before that rename leaves the output
folder exactly as it was; with --force the old folder is replaced only once the new one is
complete.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx

from onnxport._version import __version__
from onnxport.errors import OutputDirError, OutputExistsError, OutputWriteError, write_failure
from onnxport.layout import EXTERNAL_DATA_FILE, ONNX_FILE  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

# protobuf refuses messages over 2 GiB; keep a margin for the graph itself.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def check_output_dir(output_dir: Path, *, force: bool) -> None:
    """Refuse an output path that is a file, or a non-empty folder without `force`."""
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputExistsError(
            f"Output path '{output_dir}' is a file; pass a folder path.",
            path=str(output_dir),
        )
    if output_dir.is_dir() and any(output_dir.iterdir()) and not force:
        raise OutputExistsError(
            f"Output folder '{output_dir}' is not empty. Pass --force to replace it, or choose "
            "another folder.",
            path=str(output_dir),
        )
    parent = _existing_parent(output_dir)
    if not os.access(parent, os.W_OK):
        raise OutputWriteError(
            f"Cannot write to '{parent}' (permission denied). Choose a folder you can write.",
            path=str(output_dir),
            errno=errno.EACCES,
        )


def _existing_parent(path: Path) -> Path:
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


@contextlib.contextmanager
def staged_output(output_dir: Path, *, force: bool) -> Iterator[Path]:
    """Yield an empty staging folder; on success it atomically becomes `output_dir`.

    On any exception (KeyboardInterrupt included) the staging folder is removed and
    `output_dir` is untouched.
    """
    check_output_dir(output_dir, force=force)
    parent = output_dir.absolute().parent
    created = [p for p in (parent, *parent.parents) if not p.exists()]
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".partial", dir=parent)
        )
        # mkdtemp makes the folder private (0700); the published folder gets the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
    except OSError as err:
        raise OutputWriteError(
            f"Cannot create a folder in '{parent}': {err.strerror}.",
            path=str(output_dir),
            errno=err.errno,
        ) from err
    try:
        yield staging
        _publish(staging, output_dir)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # innermost first: leave no trace of a failed export
            with contextlib.suppress(OSError):
                folder.rmdir()
        failure = write_failure(err) if isinstance(err, Exception) else None
        if failure is not None and not isinstance(err, OutputDirError):
            raise OutputWriteError(
                f"Could not write the export to '{parent}': {failure.strerror}. Free some space "
                "or choose another output folder; nothing was written and "
                f"'{output_dir}' is as it was.",
                path=str(output_dir),
                errno=failure.errno,
            ) from err
        raise


def _publish(staging: Path, output_dir: Path) -> None:
    backup = None
    if output_dir.exists():
        backup = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
        os.rename(output_dir, backup)
    try:
        os.rename(staging, output_dir)
    except BaseException:
        if backup is not None:
            os.rename(backup, output_dir)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def needs_external_data(model: Any) -> bool:
    """Whether the weights are too large for one protobuf file."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    return bool(total > EXTERNAL_DATA_THRESHOLD)


def add_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Record onnxport's version and the export's facts in the ONNX file's metadata_props."""
    model = onnx.load(str(path), load_external_data=False)
    existing = {prop.key: prop for prop in model.metadata_props}
    for key, value in {"onnxport_version": __version__, **metadata}.items():
        if key in existing:
            existing[key].value = value
        else:
            model.metadata_props.add(key=key, value=value)
    model.producer_name = "onnxport"
    model.producer_version = __version__
    # Saving a proto loaded without its external data keeps the tensors' file references.
    onnx.save(model, str(path))


# Read by pipelines and generate() beside the graph: generation settings (when the model
# gave none), a speech model's feature extractor, a processor's settings.
_COPIED_FILES = ("generation_config.json", "preprocessor_config.json", "processor_config.json")


def save_side_files(
    folder: Path,
    *,
    config: Any,
    tokenizer: Any | None,
    source: Path | None,
    processor: Any | None = None,
    generation_config: Any | None = None,
) -> list[Path]:
    """Write config, tokenizer, generation and preprocessor files: a self-contained folder."""
    before = set(folder.iterdir())
    config.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    if processor is not None:  # image processor, feature extractor or a whole processor
        processor.save_pretrained(folder)
    if generation_config is not None:
        generation_config.save_pretrained(folder)
    if source is not None:
        for name in _COPIED_FILES:
            if (source / name).is_file() and not (folder / name).exists():
                shutil.copy2(source / name, folder / name)
    return sorted(set(folder.iterdir()) - before)


def read_names(node: Any) -> set[str]:
    """What an ONNX `node` reads, including outer names its subgraphs (If, Loop, Scan) read."""
    names = set(node.input)
    for attribute in node.attribute:
        for graph in (attribute.g, *attribute.graphs):
            inner = {name for child in graph.node for name in child.output}
            inner |= {tensor.name for tensor in graph.initializer}
            inner |= {value.name for value in graph.input}
            names |= set().union(*(read_names(child) for child in graph.node)) - inner
    return names
