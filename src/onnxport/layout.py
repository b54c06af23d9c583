"""What the exporter writes and the runtime reads: file names and the metadata in each graph.

An exported folder holds `model.onnx` (decoders and encoders), or `encoder_model.onnx` +
`decoder_model.onnx` (encoder-decoders), beside `config.json` and the preprocessor files;
variants sit beside them as `<graph>_<tag>.onnx` (`model_O2.onnx`, `model_int8.onnx`). Each
graph records onnxport's facts about it (task, dtype, export options) in ONNX metadata.

This module is the one place both halves agree on those names. It imports nothing of
onnxport's but `errors`, and nothing heavier than the standard library, so the runtime reads a
folder without onnx installed.
"""

from __future__ import annotations

from pathlib import Path

ONNX_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx.data"  # the name torch.onnx gives it
ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model.onnx"
SINGLE = (ONNX_FILE,)
ENCODER_DECODER = (ENCODER_FILE, DECODER_FILE)

# Metadata keys onnxport writes into every graph (ModelProto.metadata_props).
META_TASK = "task"
META_SOURCE = "source"
META_MODEL_TYPE = "model_type"
META_DTYPE = "dtype"
META_CAPTURE = "capture_strategy"
META_EXPORT_OPTIONS = "export_options"
META_MAX_TOTAL_LENGTH = "max_total_length"
DEFAULT_TASK = "feature-extraction"


def find_base_graphs(folder: Path) -> tuple[str, ...] | None:
    """The fp32 graphs onnxport exported into `folder`, in the order they run (None if none)."""
    for files in (ENCODER_DECODER, SINGLE):
        if all((folder / name).is_file() for name in files):
            return files
    return None


def variant_file(base: str, tag: str) -> str:
    """`model.onnx` + `O2` -> `model_O2.onnx`."""
    stem = base.removesuffix(".onnx")
    return f"{stem}_{tag}.onnx"


def encoder_file_for(decoder_file: str) -> str:
    """The encoder graph paired with a decoder file: `decoder_model_O2.onnx` -> `encoder_...`."""
    return decoder_file.replace("decoder_model", "encoder_model", 1)


def read_metadata(path: Path) -> dict[str, str]:
    """The `metadata_props` of an ONNX file, read without onnx and without reading the graph.

    onnx.load parses the whole graph (weights included unless they are external) and onnx is
    not a runtime dependency; ONNX Runtime builds a session. The metadata is a top-level field
    of the ModelProto message, so walking the top-level fields and seeking past the others
    (the graph among them) reads it from a multi-gigabyte file at once.
    """
    metadata: dict[str, str] = {}
    with open(path, "rb") as stream:
        while True:
            key = _varint(stream)
            if key is None:
                return metadata
            field, wire = key >> 3, key & 7
            if wire == 0:
                _varint(stream)
            elif wire == 1:
                stream.seek(8, 1)
            elif wire == 5:
                stream.seek(4, 1)
            elif wire == 2:
                size = _varint(stream) or 0
                if field == _METADATA_FIELD:
                    entry = _entry(stream.read(size))
                    if entry is not None:
                        metadata[entry[0]] = entry[1]
                else:
                    stream.seek(size, 1)
            else:  # not a ModelProto: nothing onnxport wrote
                return metadata


def exported_task(path: Path) -> str:
    """The task recorded in an exported graph (`feature-extraction` when absent)."""
    return read_metadata(path).get(META_TASK, DEFAULT_TASK)


_METADATA_FIELD = 14  # ModelProto.metadata_props (onnx.proto)


def _varint(stream: object) -> int | None:
    result = shift = 0
    read = stream.read  # type: ignore[attr-defined]
    while True:
        byte = read(1)
        if not byte:
            return None
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7


def _entry(data: bytes) -> tuple[str, str] | None:
    """A StringStringEntryProto: key = field 1, value = field 2."""
    import io

    fields: dict[int, str] = {}
    stream = io.BytesIO(data)
    while True:
        key = _varint(stream)
        if key is None:
            break
        if key & 7 != 2:
            return None
        size = _varint(stream) or 0
        fields[key >> 3] = stream.read(size).decode("utf-8", errors="replace")
    if 1 not in fields:
        return None
    return fields[1], fields.get(2, "")
