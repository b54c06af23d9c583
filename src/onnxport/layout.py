"""What the exporter writes and the runtime reads: file names and the metadata in each graph.

An exported folder holds `model.onnx` (decoders and encoders), or `encoder_model.onnx` +
`decoder_model.onnx` (encoder-decoders), beside `config.json` and the preprocessor files;
variants sit beside them as `<graph>_<tag>.onnx` (`model_O2.onnx`, `model_int8.onnx`). Each
graph records onnxport's facts about it (task, dtype, export options) in ONNX metadata.

The transformers.js layout keeps config and preprocessor files at the root and the graphs in
`onnx/`: `onnx/model.onnx`, or `onnx/encoder_model.onnx` + `onnx/decoder_model_merged.onnx`
(one decoder graph serves the first step and the cached ones, which is what transformers.js
means by "merged"), and names variants by the dtype transformers.js selects them with
(`model_q4.onnx` for int4, `model_int8.onnx`, `model_fp16.onnx`). Graph names are given
relative to the folder's root (`onnx/model.onnx`), so `folder / name` is the file in both.

This module is the one place both halves agree on those names. It imports nothing of
onnxport's but `errors`, and nothing heavier than the standard library, so the runtime reads a
folder without onnx installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ONNX_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx.data"  # the name torch.onnx gives it
ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model.onnx"
VISION_FILE = "vision_encoder.onnx"  # a vision-language model's image features
EMBED_FILE = "embed_tokens.onnx"  # its token embedding
POSTNET_FILE = "decoder_postnet.onnx"  # a spectrogram synthesizer's postnet (SpeechT5)
VOCODER_FILE = "vocoder.onnx"  # and its vocoder: spectrogram to waveform
VOCODER_CONFIG = "vocoder_config.json"
TEXT_ENCODER_FILE = "text_encoder.onnx"  # MusicGen's text encoder
AUDIO_DECODER_FILE = "audio_decoder.onnx"  # and its audio codec's decoder (EnCodec)
SINGLE = (ONNX_FILE,)
ENCODER_DECODER = (ENCODER_FILE, DECODER_FILE)
VISION_LANGUAGE = (VISION_FILE, EMBED_FILE, DECODER_FILE)

ONNXPORT = "onnxport"
TRANSFORMERS_JS = "transformers.js"
LAYOUTS = (ONNXPORT, TRANSFORMERS_JS)
TRANSFORMERS_JS_DIR = "onnx"
MERGED_DECODER_FILE = "decoder_model_merged.onnx"
# onnxport's graph names -> transformers.js' (relative to the folder's root).
TRANSFORMERS_JS_FILES = {
    ONNX_FILE: f"{TRANSFORMERS_JS_DIR}/{ONNX_FILE}",
    ENCODER_FILE: f"{TRANSFORMERS_JS_DIR}/{ENCODER_FILE}",
    DECODER_FILE: f"{TRANSFORMERS_JS_DIR}/{MERGED_DECODER_FILE}",
    VISION_FILE: f"{TRANSFORMERS_JS_DIR}/{VISION_FILE}",
    EMBED_FILE: f"{TRANSFORMERS_JS_DIR}/{EMBED_FILE}",
}
# Variant tags -> the dtype suffix transformers.js loads them by (`dtype: "q4"` reads
# `model_q4.onnx`); others keep onnxport's tag and load with `model_file_name`.
TRANSFORMERS_JS_SUFFIXES = {"int8": "int8", "int4": "q4", "fp16": "fp16"}
# The dtype transformers.js names each suffix by (its DEFAULT_DTYPE_SUFFIX_MAPPING).
TRANSFORMERS_JS_DTYPES = {
    "": "fp32", "fp16": "fp16", "int8": "int8", "uint8": "uint8", "quantized": "q8",
    "q4": "q4", "q4f16": "q4f16", "bnb4": "bnb4",
}  # fmt: skip

# Metadata keys onnxport writes into every graph (ModelProto.metadata_props).
META_TASK = "task"
META_SOURCE = "source"
META_MODEL_TYPE = "model_type"
META_DTYPE = "dtype"
META_CAPTURE = "capture_strategy"
META_EXPORT_OPTIONS = "export_options"
META_MAX_TOTAL_LENGTH = "max_total_length"
META_LIBRARY = "library"  # LIBRARY_TRANSFORMERS or LIBRARY_SENTENCE_TRANSFORMERS
META_ACTIVATION = "activation_fn"  # a cross-encoder's, as sentence-transformers names it
# A text-generation graph without a cache (a state onnxport cannot export yet): every step
# takes the whole sequence.
META_CACHE = "cache"
NO_CACHE = "none"
DEFAULT_TASK = "feature-extraction"

LIBRARY_TRANSFORMERS = "transformers"
LIBRARY_SENTENCE_TRANSFORMERS = "sentence-transformers"
LIBRARIES = (LIBRARY_SENTENCE_TRANSFORMERS, LIBRARY_TRANSFORMERS)
# sentence-transformers' own files; `modules.json` is what marks a folder as one of its models.
ST_MODULES_FILE = "modules.json"
ST_CONFIG_FILE = "config_sentence_transformers.json"
ST_MODULE_CONFIG_FILE = "sentence_bert_config.json"
ST_BI_ENCODER = "SentenceTransformer"
ST_CROSS_ENCODER = "CrossEncoder"
# The outputs of a sentence-transformers graph, named as its pipeline names them.
TOKEN_EMBEDDINGS = "token_embeddings"
SENTENCE_EMBEDDING = "sentence_embedding"
_SIGMOID = "torch.nn.modules.activation.Sigmoid"
_IDENTITY = "torch.nn.modules.linear.Identity"


def _load_json(path: Path) -> Any:
    """The JSON value in `path`; None when the file is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; {} when the file is missing or holds something else."""
    data = _load_json(path)
    return data if isinstance(data, dict) else {}


def sentence_transformers_modules(folder: Path) -> list[dict[str, Any]]:
    """The entries of a sentence-transformers folder's `modules.json`, in order ([] if none)."""
    data = _load_json(folder / ST_MODULES_FILE)
    return [entry for entry in data if isinstance(entry, dict)] if isinstance(data, list) else []


def sentence_transformers_type(folder: Path) -> str | None:
    """`SentenceTransformer`, `CrossEncoder`, ... for a sentence-transformers folder, else None.

    A folder is one when it holds `modules.json`, or (cross-encoders saved before
    sentence-transformers 5) a sequence-classification config.json carrying its keys.
    """
    if (folder / ST_MODULES_FILE).is_file():
        return str(read_json(folder / ST_CONFIG_FILE).get("model_type") or ST_BI_ENCODER)
    config = read_json(folder / "config.json")
    architectures = config.get("architectures") or [""]
    legacy = {"sentence_transformers", "sbert_ce_default_activation_function"} & set(config)
    if legacy and str(architectures[0]).endswith("ForSequenceClassification"):
        return ST_CROSS_ENCODER
    return None


def cross_encoder_activation(folder: Path, *, trust_remote_code: bool = False) -> str:
    """The activation sentence-transformers 6 applies to a cross-encoder's logits, by its path.

    Looked up as `CrossEncoder(folder)` does: config_sentence_transformers.json's
    `activation_fn`, then config.json's `sentence_transformers.activation_fn`, then the
    pre-v4 `sbert_ce_default_activation_function`; a path outside `torch.` counts only with
    `trust_remote_code`. Otherwise sigmoid for one label, identity for more.
    """
    config = read_json(folder / "config.json")
    nested = config.get("sentence_transformers")
    candidates = [
        read_json(folder / ST_CONFIG_FILE).get("activation_fn"),
        nested.get("activation_fn") if isinstance(nested, dict) else None,
        config.get("sbert_ce_default_activation_function"),
    ]
    for path in candidates:
        if isinstance(path, str) and path and (trust_remote_code or path.startswith("torch.")):
            return path
    labels = len(config.get("id2label") or {}) or config.get("num_labels") or 2
    return _SIGMOID if labels == 1 else _IDENTITY


def find_base_graphs(folder: Path) -> tuple[str, ...] | None:
    """The fp32 graphs exported into `folder`, in the order they run (None if none).

    Names are relative to `folder`: `("model.onnx",)`, or `("onnx/model.onnx",)` in the
    transformers.js layout.
    """
    for files in (VISION_LANGUAGE, ENCODER_DECODER, SINGLE):
        for names in (files, tuple(TRANSFORMERS_JS_FILES[name] for name in files)):
            if all((folder / name).is_file() for name in names):
                return names
    return None


def layout_of(graph: str) -> str:
    """The layout a graph name (relative to the folder's root) belongs to."""
    parent = graph.rpartition("/")[0]
    return TRANSFORMERS_JS if parent == TRANSFORMERS_JS_DIR else ONNXPORT


def variant_file(base: str, tag: str) -> str:
    """`model.onnx` + `O2` -> `model_O2.onnx`; `onnx/model.onnx` + `int4` -> `onnx/model_q4...`."""
    if layout_of(base) == TRANSFORMERS_JS:
        tag = TRANSFORMERS_JS_SUFFIXES.get(tag, tag)
    stem = base.removesuffix(".onnx")
    return f"{stem}_{tag}.onnx"


def encoder_file_for(decoder_file: str) -> str:
    """The encoder graph paired with a decoder file: `decoder_model_O2.onnx` -> `encoder_...`.

    `onnx/decoder_model_merged_q4.onnx` -> `onnx/encoder_model_q4.onnx`.
    """
    return paired_file(decoder_file, ENCODER_FILE)


def paired_file(decoder_file: str, graph: str) -> str:
    """The graph `graph` of the same variant and folder as a main file (decoder or model).

    `onnx/decoder_model_merged_int8.onnx` + `vision_encoder.onnx` ->
    `onnx/vision_encoder_int8.onnx` (a retriever's `model_int8.onnx` likewise); any other
    name is returned as it is.
    """
    folder, _, name = decoder_file.rpartition("/")
    for stem in ("decoder_model_merged", "decoder_model", ONNX_FILE.removesuffix(".onnx")):
        if name.startswith(stem):
            name = graph.removesuffix(".onnx") + name.removeprefix(stem)
            break
    return f"{folder}/{name}" if folder else name


def image_token_id(config: Any) -> int | None:
    """A vision-language config's image placeholder token (either name transformers uses)."""
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def transformers_js_dtypes(folder: Path) -> dict[str, str]:
    """Dtype -> graph file transformers.js would load from `folder`'s `onnx/` for it.

    An encoder-decoder offers a dtype only when both of its graphs exist in it.
    """
    nested = folder / TRANSFORMERS_JS_DIR
    base = find_base_graphs(folder)
    if base is None or layout_of(base[0]) != TRANSFORMERS_JS:
        return {}
    offered = {}
    for suffix, dtype in TRANSFORMERS_JS_DTYPES.items():
        tail = f"_{suffix}.onnx" if suffix else ".onnx"
        names = [Path(name).name.removesuffix(".onnx") + tail for name in base]
        if all((nested / name).is_file() for name in names):
            offered[dtype] = f"{TRANSFORMERS_JS_DIR}/{names[-1]}"
    return offered


def graph_folder(folder: Path) -> Path:
    """Where a folder keeps its graphs: itself, or `onnx/` in the transformers.js layout."""
    nested = folder / TRANSFORMERS_JS_DIR
    if not any(folder.glob("*.onnx")) and nested.is_dir() and any(nested.glob("*.onnx")):
        return nested
    return folder


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
