"""onnxruntime-genai: a `genai_config.json` beside a decoder-only export, for `og.Model(folder)`.

onnxruntime-genai (`pip install 'onnxport[genai]'`) generates in C++ from a folder holding the
decoder graph, the tokenizer files and `genai_config.json`. The config names the graph's inputs
and outputs, sizes the key/value cache and carries the search defaults. Its parser refuses any
key it does not know, so only the keys of its `Config` are written (checked against 0.18).

The runtime picks how to feed the graph from the config's model `type`. Its decoder-only types
(`DecoderOnly_Model`: `llama`, `qwen2`, ... and the generic `decoder`) feed `input_ids`, an
`attention_mask` over past and new tokens, `position_ids` when the graph takes them, and one
`past_key_values.N.key/value` pair per layer of shape [batch, kv_heads, past_length,
head_size], reading back `logits` and `present.N.key/value`: the graph onnxport exports. Its
`gpt2` type is not one of them (it feeds one combined `past_N` tensor per layer, checked: "Model
input was not found"), so GPT-2 is declared `decoder`, as is every architecture genai has no
type of its own for. `GENAI_MODEL_TYPES` lists the architectures whose tiny random export was
checked to generate PyTorch's greedy tokens in onnxruntime-genai 0.18 (tests/test_genai.py);
`graph_problem` also checks each graph, so a table entry cannot write a config for a graph the
runtime cannot feed (latent attention's keys and values of different sizes, extra inputs).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import onnx

from onnxport.errors import ExportOptionError
from onnxport.layout import META_MAX_TOTAL_LENGTH, read_metadata

logger = logging.getLogger(__name__)

GENAI_CONFIG = "genai_config.json"
GENAI_TASK = "text-generation"

# Transformers model_type -> onnxruntime-genai model type (its ModelType::IsLLM list; `decoder`
# is its generic decoder-only type).
GENAI_MODEL_TYPES: dict[str, str] = {
    "bloom": "decoder",
    "ernie4_5": "ernie4_5",
    "falcon": "decoder",
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3_text": "gemma3_text",
    "gpt2": "decoder",
    "gpt_bigcode": "decoder",
    "gpt_neox": "decoder",
    "gptj": "decoder",
    "granite": "granite",
    "hunyuan_v1_dense": "hunyuandensev1",
    "llama": "llama",
    "mistral": "mistral",
    "nemotron": "nemotron",
    "olmo": "olmo",
    "opt": "decoder",
    "phi": "phi",
    "phi3": "phi3",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "smollm3": "smollm3",
    "xglm": "decoder",
}

_PAST = ("past_key_values.%d.key", "past_key_values.%d.value")
_PRESENT = ("present.%d.key", "present.%d.value")
_MASKS = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}
# Tokenizer models onnxruntime-genai's tokenizer cannot read from tokenizer.json (checked: a
# WordPiece one fails with "Cannot know how to parse line").
_UNREADABLE_TOKENIZERS = ("WordPiece", "WordLevel")
# transformers' model_max_length when the tokenizer sets none (int(1e30)).
_UNSET_LENGTH = 10**20


def architectures_markdown() -> str:
    """The README's list of architectures whose export onnxruntime-genai runs (`make docs`)."""
    rows = ["| architecture | genai model type |", "|---|---|"]
    rows += [f"| `{name}` | `{kind}` |" for name, kind in sorted(GENAI_MODEL_TYPES.items())]
    return "\n".join(rows)


def support_problem(model_type: str, task: str) -> str | None:
    """Why onnxruntime-genai cannot run this export (None when it can)."""
    if task != GENAI_TASK:
        return f"onnxruntime-genai runs {GENAI_TASK} exports only, not {task}"
    if model_type not in GENAI_MODEL_TYPES:
        return (
            f"onnxruntime-genai is not checked on onnxport's '{model_type}' graph (checked: "
            f"{', '.join(sorted(GENAI_MODEL_TYPES))})"
        )
    return None


def check_support(model_type: str, task: str) -> None:
    """Refuse, in one line, an explicit `--genai` for an export genai cannot run."""
    problem = support_problem(model_type, task)
    if problem is not None:
        raise ExportOptionError(
            f"--genai: {problem}; export without --genai for a folder onnxport's own runtime "
            "loads.",
            option="--genai",
        )


def graph_problem(graph: Path) -> str | None:
    """Why the graph's inputs and outputs are not the ones the runtime feeds (None if they are)."""
    model = onnx.load(str(graph), load_external_data=False)
    inputs = {value.name: value.type.tensor_type for value in model.graph.input}
    outputs = {value.name for value in model.graph.output}
    num_layers = _layers(inputs)
    if not num_layers:
        return "the graph takes no past_key_values.N.key/value cache"
    cache = {pattern % i for pattern in _PAST for i in range(num_layers)}
    fed = {"input_ids", "attention_mask", "position_ids"} | cache
    extra = sorted(set(inputs) - fed)
    if extra:
        return f"the graph takes inputs the runtime does not feed: {', '.join(extra)}"
    missing = sorted({"input_ids", "attention_mask"} - set(inputs))
    missing += sorted(cache - set(inputs))
    present = {pattern % i for pattern in _PRESENT for i in range(num_layers)}
    missing += sorted(({"logits"} | present) - outputs)
    if missing:
        return f"the graph has no {', '.join(missing[:3])}"
    mask = inputs["attention_mask"].elem_type
    if mask not in _MASKS or inputs.get("position_ids", inputs["attention_mask"]).elem_type != mask:
        return "attention_mask and position_ids must both be int64 (or both int32)"
    sizes = set()
    for name in sorted(cache):
        dims = inputs[name].shape.dim
        if len(dims) != 4 or not (dims[1].HasField("dim_value") and dims[3].HasField("dim_value")):
            return f"{name} is not [batch, kv_heads, past_length, head_size] with fixed heads"
        sizes.add((dims[1].dim_value, dims[3].dim_value))
    if len(sizes) > 1:
        # genai sizes every key and value buffer alike (one num_key_value_heads, head_size).
        return "the cache's keys and values differ in heads or head size (e.g. latent attention)"
    return None


def write_genai_config(
    folder: Path,
    graph_file: str,
    config: Any,
    generation_config: Any | None,
    tokenizer: Any | None,
) -> Path:
    """Write `folder/genai_config.json` describing `folder/graph_file` for onnxruntime-genai.

    Cache sizes are read from the graph (its past inputs' fixed axes), the architecture from
    `config`, token ids and search defaults from `generation_config` (what transformers'
    `generate()` uses), then `config`, then `tokenizer`. Call `support_problem` and
    `graph_problem` first (`add_genai_config` does); a missing context length or eos id raises
    ExportOptionError.

    Example:
        >>> write_genai_config(Path("out"), "model.onnx", model.config,
        ...                    model.generation_config, tokenizer)  # doctest: +SKIP
        PosixPath('out/genai_config.json')

    """
    graph = folder / graph_file
    model = onnx.load(str(graph), load_external_data=False)
    inputs = {value.name: value.type.tensor_type for value in model.graph.input}
    layers = _layers(inputs)
    past = inputs[_PAST[0] % 0].shape.dim
    kv_heads, head_size = past[1].dim_value, past[3].dim_value
    problem = settings_problem(graph, config, generation_config, tokenizer)
    if problem is not None:
        raise ExportOptionError(f"--genai: {problem}.", option="--genai")
    context = _context_length(graph, config, tokenizer) or 0
    eos = _token_ids("eos_token_id", generation_config, config, tokenizer)
    pad = _token_ids("pad_token_id", generation_config, config, tokenizer) or eos
    bos = _token_ids("bos_token_id", generation_config, config, tokenizer)
    decoder_inputs = {name: name for name in ("input_ids", "attention_mask", "position_ids")}
    if "position_ids" not in inputs:
        del decoder_inputs["position_ids"]
    model_section: dict[str, Any] = {
        "type": GENAI_MODEL_TYPES[config.model_type],
        "vocab_size": _vocab_size(model, config),
        "context_length": context,
        "eos_token_id": eos if len(eos) > 1 else eos[0],
        "pad_token_id": pad[0],
    }
    if bos:
        model_section["bos_token_id"] = bos[0]
    model_section["decoder"] = {
        "filename": graph_file,
        "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
        "hidden_size": int(config.hidden_size),
        "num_attention_heads": int(config.num_attention_heads),
        "num_key_value_heads": kv_heads,
        "num_hidden_layers": layers,
        "head_size": head_size,
        "inputs": {
            **decoder_inputs,
            "past_key_names": _PAST[0],
            "past_value_names": _PAST[1],
        },
        "outputs": {
            "logits": "logits",
            "present_key_names": _PRESENT[0],
            "present_value_names": _PRESENT[1],
        },
    }
    record = {"model": model_section, "search": _search(generation_config, context)}
    path = folder / GENAI_CONFIG
    path.write_text(json.dumps(record, indent=4) + "\n")
    _check_tokenizer(folder)
    return path


def write_variant_config(source: Path, folder: Path, graph_file: str) -> Path | None:
    """Copy `source` (a genai_config.json) into `folder`, pointed at `folder/graph_file`.

    A variant (`model_int4.onnx`) keeps the fp32 graph's inputs, outputs and cache, so only the
    decoder's file name changes; the graph is checked to still have them (a warning and no
    config when it does not).
    """
    problem = graph_problem(folder / graph_file)
    if problem is not None:
        logger.warning("No %s for %s: %s.", GENAI_CONFIG, graph_file, problem)
        return None
    record = json.loads(source.read_text())
    record["model"]["decoder"]["filename"] = graph_file
    path = folder / GENAI_CONFIG
    path.write_text(json.dumps(record, indent=4) + "\n")
    return path


def _vocab_size(model: onnx.ModelProto, config: Any) -> int:
    """The logits' last axis (a checkpoint may pad it past config.vocab_size)."""
    for output in model.graph.output:
        if output.name == "logits":
            last = output.type.tensor_type.shape.dim[-1]
            if last.HasField("dim_value"):
                return int(last.dim_value)
    return int(config.vocab_size)


def _layers(inputs: dict[str, Any]) -> int:
    """How many layers' past keys the graph takes."""
    return sum(
        1 for name in inputs if name.startswith("past_key_values.") and name.endswith(".key")
    )


def settings_problem(
    graph: Path, config: Any, generation_config: Any | None, tokenizer: Any | None
) -> str | None:
    """Why the config cannot be filled in: no context length or no eos id (None if it can)."""
    if _context_length(graph, config, tokenizer) is None:
        return (
            "no context length: config.json has no max_position_embeddings and the tokenizer "
            "no model_max_length"
        )
    if not _token_ids("eos_token_id", generation_config, config, tokenizer):
        return "no eos_token_id in generation_config.json, config.json or the tokenizer"
    return None


def _context_length(graph: Path, config: Any, tokenizer: Any | None) -> int | None:
    """The longest sequence the graph is exact for: its positions, a sliding window's limit.

    An architecture without position embeddings (ALiBi: bloom) is bounded by the tokenizer's
    `model_max_length` when it sets one.
    """
    positions = getattr(config, "max_position_embeddings", None)
    if not positions and tokenizer is not None:
        length = getattr(tokenizer, "model_max_length", None)
        positions = length if isinstance(length, int) and length < _UNSET_LENGTH else None
    limits = [
        int(value)
        for value in (positions, read_metadata(graph).get(META_MAX_TOTAL_LENGTH))
        if value
    ]
    return min(limits) if limits else None


def _token_ids(name: str, *sources: Any) -> list[int]:
    """A special token's ids from the first source that sets it (a list: eos may be several)."""
    for source in sources:
        value = getattr(source, name, None) if source is not None else None
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        return [int(v) for v in values]
    return []


# genai's search keys -> transformers' GenerationConfig attribute and its default when unset.
_SEARCH = {
    "do_sample": ("do_sample", False),
    "num_beams": ("num_beams", 1),
    "num_return_sequences": ("num_return_sequences", 1),
    "min_length": ("min_length", 0),
    "top_k": ("top_k", 50),
    "top_p": ("top_p", 1.0),
    "temperature": ("temperature", 1.0),
    "repetition_penalty": ("repetition_penalty", 1.0),
    "length_penalty": ("length_penalty", 1.0),
    "no_repeat_ngram_size": ("no_repeat_ngram_size", 0),
    "diversity_penalty": ("diversity_penalty", 0.0),
}


def _search(generation_config: Any | None, context: int) -> dict[str, Any]:
    def setting(attribute: str, default: Any) -> Any:
        value = getattr(generation_config, attribute, None) if generation_config else None
        return type(default)(value) if value is not None else default

    search = {key: setting(*spec) for key, spec in _SEARCH.items()}
    max_length = getattr(generation_config, "max_length", None) if generation_config else None
    search["max_length"] = min(int(max_length), context) if max_length else context
    # transformers also takes "never" here; genai's flag is a boolean.
    early = getattr(generation_config, "early_stopping", None) if generation_config else None
    search["early_stopping"] = early is True
    # The graph returns a present cache one token longer than its past, not a buffer of
    # max_length to write into.
    search["past_present_share_buffer"] = False
    return dict(sorted(search.items()))


def _check_tokenizer(folder: Path) -> None:
    path = folder / "tokenizer.json"
    if not path.is_file():
        logger.info(
            "No tokenizer.json beside %s: onnxruntime-genai's Tokenizer will not load; feed it "
            "token ids.",
            GENAI_CONFIG,
        )
        return
    kind = json.loads(path.read_text()).get("model", {}).get("type")
    if kind in _UNREADABLE_TOKENIZERS:
        logger.info(
            "onnxruntime-genai's Tokenizer cannot read a %s tokenizer.json; feed it token ids.",
            kind,
        )


def add_genai_config(
    folder: Path,
    graph_file: str,
    *,
    config: Any,
    generation_config: Any | None,
    tokenizer: Any | None,
    task: str,
    requested: bool | None,
) -> Path | None:
    """The export's last step: a genai_config.json when onnxruntime-genai can run the graph.

    `requested` None (the default) writes one for every text-generation export genai can run
    and says in one info line why not otherwise; True refuses (ExportOptionError) instead of
    writing a folder without one; False never writes one.
    """
    if requested is False or (requested is None and task != GENAI_TASK):
        return None
    problem = (
        support_problem(config.model_type, task)
        or graph_problem(folder / graph_file)
        or settings_problem(folder / graph_file, config, generation_config, tokenizer)
    )
    if problem is not None:
        if requested:
            raise ExportOptionError(f"--genai: {problem}.", option="--genai")
        logger.info("No %s written: %s.", GENAI_CONFIG, problem)
        return None
    path = write_genai_config(folder, graph_file, config, generation_config, tokenizer)
    logger.info("Wrote %s: onnxruntime_genai.Model(folder) runs %s.", GENAI_CONFIG, graph_file)
    return path
