"""Tiny random models and tokenizers built in-process, for tests and coverage runs.

Nothing here touches the network: configs are shrunk from transformers' defaults and a small
WordPiece tokenizer is trained on built-in sentences.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import math
from pathlib import Path
from typing import Any

import torch

# Size fields shrunk wherever a config has them; other fields keep transformers' defaults.
TINY_SIZES: dict[str, int] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 37,
    "embedding_size": 16,
    "max_position_embeddings": 128,
    "dim": 32,
    "n_layers": 2,
    "n_heads": 4,
    "hidden_dim": 37,
    "global_attn_every_n_layers": 2,
    "local_attention": 16,
    "rotary_dim": 4,
    "ffn_dim": 38,  # even: gated feed-forwards split it in halves (Moshi)
    # Encoder-decoder models name their sizes per stack (BART, Marian) or T5's way.
    "d_model": 32,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 37,
    "decoder_ffn_dim": 37,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "num_heads": 4,
    "d_ff": 37,
    "d_kv": 8,
    # Perceiver's latent array and its self-attention stack.
    "num_latents": 16,
    "d_latents": 32,
    "num_self_attends_per_block": 2,
}

SAMPLE_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "ONNX Runtime runs exported models on servers, phones and browsers.",
    "Paris is the capital of France and its largest city.",
    "A model exported once should give the same answers everywhere.",
    "She sells sea shells by the sea shore.",
    "The weather today is sunny with a light breeze from the west.",
    "Transformers turn text into vectors that machines can compare.",
    "How many parameters does a small encoder have?",
    "Cats sleep for most of the day and hunt at night.",
    "The meeting was moved to Thursday afternoon at three.",
    "Good tools make hard work feel easy.",
    "Where is the nearest train station?",
)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def tiny_vocab() -> list[str]:
    """A fixed WordPiece vocabulary: specials, the sample sentences' words, and characters.

    Built here rather than trained: the tokenizers trainer breaks ties differently from one
    process to the next, which changed token ids (and tiny models' outputs) between runs.
    """
    import re
    import string

    words = sorted({w for text in SAMPLE_SENTENCES for w in re.findall(r"\w+", text.lower())})
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    pieces = [*chars, *(f"##{c}" for c in string.ascii_lowercase + string.digits)]
    return [*SPECIAL_TOKENS, *pieces, *(w for w in words if w not in pieces)]


def tiny_tokenizer(model_input_names: list[str] | tuple[str, ...]) -> Any:
    """A fast WordPiece tokenizer over `tiny_vocab()`, returning `model_input_names`.

    Ids 0-4 are [PAD], [UNK], [CLS], [SEP], [MASK]; single texts and pairs are wrapped as BERT
    does, so every text pipeline (fill-mask, QA, token classification) can use it. The same
    vocabulary and ids every time.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(tiny_vocab())}
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_input_names=list(model_input_names),
        model_max_length=128,
    )


def tiny_config(config: Any, *, tokenizer: Any | None = None, **overrides: Any) -> Any:
    """A shrunk copy of `config` (a config or a model type name); `overrides` win.

    With a tokenizer, vocab size and special token ids follow it.
    """
    if isinstance(config, str):
        from transformers import AutoConfig

        config = AutoConfig.for_model(config)
    config = copy.deepcopy(config)
    original_vocab = getattr(config, "vocab_size", None)
    original_hidden = _hidden_sizes(config)
    _shrink_sub_configs(config)
    _shrink_sizes(config)
    _follow_hidden_sizes(config, original_hidden)
    vocab = (
        len(tokenizer)
        if tokenizer is not None
        else min(
            int(getattr(config, "vocab_size", 0) or 0) or 99,
            99,
        )
    )
    if hasattr(config, "vocab_size"):
        config.vocab_size = vocab
    special = {
        "pad_token_id": 0,
        "bos_token_id": 2,
        "cls_token_id": 2,
        "eos_token_id": 3,
        "sep_token_id": 3,
    }
    for key, value in special.items():
        if getattr(config, key, None) is not None or key == "pad_token_id":
            setattr(config, key, value)
    # A dual encoder's text tower (CLIP), a sub-model sharing the vocabulary (Canary's
    # decoder), an EncoderDecoderModel's two stacks: ids must fit both.
    for name, sub in _sub_configs(config):
        sub_vocab = int(getattr(sub, "vocab_size", 0) or 0)
        shared = name in ("text_config", "encoder", "decoder")  # EncoderDecoderModel's too
        if sub_vocab > vocab and (shared or sub_vocab == original_vocab):
            sub.vocab_size = vocab
            for key, value in special.items():
                if getattr(sub, key, None) is not None:
                    setattr(sub, key, value)
    if getattr(config, "use_pretrained_backbone", False):
        config.use_pretrained_backbone = False  # random weights: nothing to download
    if hasattr(config, "decoder_vocab_size"):  # Marian's separate target vocabulary
        config.decoder_vocab_size = vocab
    if getattr(config, "is_encoder_decoder", False):
        start = getattr(config, "decoder_start_token_id", None)
        if start is None or start >= vocab:
            config.decoder_start_token_id = 2  # [CLS]; real checkpoints set it, tiny ones must
        for key in ("forced_bos_token_id", "forced_eos_token_id"):
            if (getattr(config, key, None) or 0) >= vocab:
                setattr(config, key, None)
    for key, value in overrides.items():
        if isinstance(value, dict):  # a sub-config's fields
            for name, field_value in value.items():
                setattr(getattr(config, key), name, field_value)
            continue
        setattr(config, key, value)
    return config


def _shrink_lists(config: Any) -> None:
    """Per-stage lists: one block per stage (Swin's, ConvNeXt's `depths`).

    Per-stage widths and head counts stay: their ratios are constrained (width divisible by
    heads) and the models they make are small once each stage is one block deep.
    """
    for key in ("depths", "num_layers_per_stage", "stage_depths"):
        value = getattr(config, key, None)
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
            with contextlib.suppress(NotImplementedError, AttributeError):
                setattr(config, key, [min(v, 1) for v in value])


def _keep_out_indices(config: Any) -> None:
    """Keep layers that a head reads by index (DPT's backbone_out_indices) after shrinking."""
    layers = getattr(config, "num_hidden_layers", None)
    if not isinstance(layers, int):
        return
    needed = 0
    for key in ("backbone_out_indices", "out_indices", "layer_indices"):
        value = getattr(config, key, None)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
            needed = max(needed, max(value) + 1)
    if needed > layers:
        with contextlib.suppress(NotImplementedError, AttributeError):
            config.num_hidden_layers = needed


_LAYER_COUNTS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers")
# Fields that hold another config's hidden size (a projection's input, a head's condition).
_TIED_SUFFIXES = (
    "_hidden_size", "_proj_dim", "projection_size", "condition_dim", "codebook_dim",
    "adapter_input_size", "projection_dim", "output_channels",
)  # fmt: skip


def _sub_configs(config: Any) -> list[tuple[str, Any]]:
    """(attribute, config) for every config nested in `config`, depth first."""
    from transformers import PretrainedConfig

    found = []
    for key, value in list(vars(config).items()):  # not getattr: per-layer fields would raise
        if isinstance(value, PretrainedConfig) and value is not config:
            found.append((key, value))
            found.extend(_sub_configs(value))
    return found


def _hidden_sizes(config: Any) -> dict[int, int]:
    """id(config) -> hidden size, for `config` and its sub-configs before shrinking."""
    sizes = {}
    for sub in [config, *(value for _, value in _sub_configs(config))]:
        hidden = getattr(sub, "hidden_size", None)
        if isinstance(hidden, int):
            sizes[id(sub)] = hidden
    return sizes


def _follow_hidden_sizes(config: Any, original: dict[int, int]) -> None:
    """Sizes tied to another config's hidden size follow its shrink.

    A VLM's `vision_config.out_hidden_size` must equal `text_config.hidden_size`, a speech
    head's `audio_hidden_size` the audio encoder's: the field names vary, the rule is that a
    field named like a width and equal to some config's original hidden size is that width.
    """
    configs = [config, *(value for _, value in _sub_configs(config))]
    shrunk: dict[int, set[int]] = {}
    for sub in configs:
        if id(sub) in original and getattr(sub, "hidden_size", None) != original[id(sub)]:
            shrunk.setdefault(original[id(sub)], set()).add(sub.hidden_size)
    widths = {old: next(iter(new)) for old, new in shrunk.items() if len(new) == 1}
    for sub in configs:
        for key, value in list(sub.to_dict().items()):
            tied = key.endswith(_TIED_SUFFIXES) or key == "embed_dim"
            if tied and key not in TINY_SIZES and isinstance(value, int) and value in widths:
                with contextlib.suppress(NotImplementedError, AttributeError, TypeError):
                    setattr(sub, key, widths[value])


def _layer_choice(lists: list[list[Any]], layers: int) -> list[int]:
    """Which original layers a shrunk model keeps: the first ones, plus one of each kind.

    OLMo-Hybrid needs an attention layer among its linear ones, DeepSeek's sparse MoE layers
    come after dense ones: a plain prefix would drop the kind the export must exercise. One
    choice serves every per-layer list, so parallel lists (a layer's type and its budget)
    stay aligned.
    """
    chosen = list(range(layers))
    extra: list[int] = []
    for values in lists:
        if not all(isinstance(v, str) for v in values):
            continue
        for kind in dict.fromkeys(values):
            if all(values[i] != kind for i in chosen[: layers - len(extra)] + extra):
                extra.append(values.index(kind))
    extra = sorted(extra[: max(layers - 1, 0)])
    return sorted(chosen[: layers - len(extra)] + extra)


def _shrink_per_layer_lists(
    config: Any, original_layers: set[int], kinds: list[str] | None = None
) -> list[int] | None:
    """Lists with one entry per layer (layer_types, mlp_layer_types, ...) follow the depth.

    Returns which original layers the shrunk model keeps (None: the depth did not change).
    `kinds` names each original layer's kind beside those lists (its per-layer overrides).
    """
    layers = next(
        (getattr(config, k) for k in _LAYER_COUNTS if isinstance(getattr(config, k, None), int)),
        None,
    )
    if layers is None or layers in original_layers:
        return None
    items = [(k, v) for k, v in config.to_dict().items() if isinstance(v, list)]
    per_layer = [v for _, v in items if len(v) in original_layers]
    choice = _layer_choice([*per_layer, *([kinds] if kinds else [])], layers)
    for key, values in items:
        if len(values) in original_layers:
            new: Any = [values[i] for i in choice]
        elif (  # GPT-Neo's run-length form: [[["global", "local"], 12]]
            len(values) == 1
            and isinstance(values[0], list)
            and len(values[0]) == 2
            and isinstance(values[0][0], list)
            and isinstance(values[0][1], int)
            and len(values[0][0]) * values[0][1] in original_layers
        ):
            pattern = values[0][0]
            new = [[pattern[:layers], max(layers // max(len(pattern), 1), 1)]]
        else:
            continue
        with contextlib.suppress(NotImplementedError, AttributeError, TypeError):
            setattr(config, key, new)
    if hasattr(config, "attention_types") and hasattr(config, "attention_layers"):
        with contextlib.suppress(AttributeError, TypeError):  # GPT-Neo derives one from the other
            config.attention_layers = config.attention_layers[:layers]
    return choice


def _per_layer_overrides(config: Any) -> dict[int, dict[str, Any]] | None:
    """A heterogeneous config's per-layer overrides (Gemma 4's wider full-attention heads)."""
    if not getattr(config, "is_heterogeneous", False):
        return None
    raw = config.to_dict().get("per_layer_config") or {}
    return {int(index): dict(values) for index, values in raw.items()}


def _refit_per_layer(
    config: Any,
    overrides: dict[int, dict[str, Any]],
    before: dict[str, Any],
    choice: list[int] | None,
) -> None:
    """The kept layers keep their overrides, scaled as their global values were shrunk."""
    # transformers has no public call to replace a config's overrides in place; this is the
    # one its own config init uses.
    from transformers.integrations.heterogeneity.configuration_utils import (
        _apply_heterogeneous_config,
    )

    def scaled(value: Any, old: Any, new: Any) -> Any:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (value, old, new)) and old:
            return max(1, value * new // old)
        return new if value == old else value

    layers = range(int(config.num_hidden_layers)) if choice is None else choice
    refit: dict[int | str, dict[str, Any]] = {
        new_index: {k: scaled(v, before.get(k), getattr(config, k, None)) for k, v in kept.items()}
        for new_index, old_index in enumerate(layers)
        if (kept := overrides.get(old_index))
    }
    _apply_heterogeneous_config(config, refit)


def _fit_state_space_heads(config: Any) -> None:
    """Mamba-2 style mixers: heads x head size must equal expand x hidden size."""
    hidden = getattr(config, "hidden_size", None)
    for heads_key, dim_key, expand_key in (
        ("num_heads", "head_dim", "expand"),
        ("mamba_n_heads", "mamba_d_head", "mamba_expand"),
    ):
        values = (hidden, *(getattr(config, k, None) for k in (heads_key, dim_key, expand_key)))
        if not all(isinstance(v, int) for v in values) or getattr(config, "mamba_d_ssm", None):
            continue  # Falcon-H1 states its inner size outright: already consistent
        inner = hidden * getattr(config, expand_key)
        heads = TINY_SIZES["num_heads"] if inner % TINY_SIZES["num_heads"] == 0 else 1
        with contextlib.suppress(AttributeError, TypeError):
            setattr(config, heads_key, heads)
            setattr(config, dim_key, inner // heads)
            groups = getattr(config, "n_groups", None)  # heads are shared out among groups
            if isinstance(groups, int) and heads % groups:
                config.n_groups = 1


def _fit_mrope_sections(config: Any) -> None:
    """Multimodal rotary sections must add up to half the (shrunk) head size (Qwen2-VL)."""
    rope: Any = getattr(config, "rope_parameters", None)
    sections = rope.get("mrope_section") if isinstance(rope, dict) else None
    if sections is None and "mrope_section" in getattr(
        config, "ignore_keys_at_rope_validation", ()
    ):
        sections = [16, 24, 24]  # what Qwen2-VL's rotary code falls back to when none is set
    head_dim = getattr(config, "head_dim", None)
    heads = getattr(config, "num_attention_heads", None)
    if head_dim is None and isinstance(heads, int) and heads:
        head_dim = int(config.hidden_size) // heads
    if not (isinstance(sections, list) and sections and isinstance(head_dim, int)):
        return
    # GLM-4V-MoE rotates part of each head: the sections cover that part.
    factor = float(rope.get("partial_rotary_factor") or getattr(config, "partial_rotary_factor", 1))
    if int(head_dim * factor) // 2 < len(sections):  # the model reads head_dim if set
        head_dim = config.head_dim = math.ceil(2 * len(sections) / factor)
    half = int(head_dim * factor) // 2
    if sum(sections) == half or half < len(sections):
        return
    scaled = [max(s * half // sum(sections), 1) for s in sections]
    scaled[0] += half - sum(scaled)
    rope["mrope_section"] = scaled


def _fit_groups(config: Any) -> None:
    """Grouped layers (SqueezeBERT's `*_groups`) need widths divisible by their groups."""
    groups = [
        v for k, v in config.to_dict().items() if k.endswith("_groups") and isinstance(v, int)
    ]
    size = getattr(config, "intermediate_size", None)
    if groups and isinstance(size, int) and max(groups) > 1 and size % max(groups):
        with contextlib.suppress(AttributeError, TypeError):
            config.intermediate_size = size + max(groups) - size % max(groups)


def _shrink_sizes(config: Any) -> None:
    """Shrink one config's own size fields in place (not its sub-configs)."""
    # Stage-based vision models (Swin, ConvNeXt) derive hidden_size and the stage count from
    # per-stage lists: only the lists' depths shrink.
    overrides = _per_layer_overrides(config)
    if overrides is not None:  # read global values while shrinking; per-layer ones refit below
        config.allow_global_per_layer_attribute_access = True
        before = {k: getattr(config, k, None) for values in overrides.values() for k in values}
    staged = isinstance(getattr(config, "depths", None), (list, tuple))
    original_hidden = getattr(config, "hidden_size", None)
    original_embedding = getattr(config, "embedding_size", None)
    original_layers = {
        v for k in _LAYER_COUNTS if isinstance(v := getattr(config, k, None), int) and v > 0
    }
    heads, kv_heads = (
        getattr(config, "num_attention_heads", None),
        getattr(config, "num_key_value_heads", None),
    )
    multi_head = isinstance(heads, int) and heads == kv_heads  # no grouped-query attention
    _shrink_lists(config)
    for key, value in TINY_SIZES.items():
        if staged and key in (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_layers",
            "num_heads",
            "embedding_size",  # the stem width, tied to normalization groups (BiT)
        ):
            continue
        if key == "hidden_dim" and hasattr(config, "width_coefficient"):
            continue  # EfficientNet's head width is its scaled top convolution's: derived
        if hasattr(config, key) and not isinstance(getattr(config, key), (list, tuple)):
            # Some configs derive a field and refuse assignment (Funnel's depth is block_sizes).
            with contextlib.suppress(NotImplementedError, AttributeError, TypeError):
                setattr(config, key, value)
    # Sizes tied to the hidden size (DeBERTa's pooler_hidden_size, OPT's word_embed_proj_dim,
    # Swin2SR's embed_dim, SigLIP's projection_size) must follow it; so does an embedding
    # width the default config makes equal to it (SqueezeBERT's layers require it).
    hidden = getattr(config, "hidden_size", None)
    if original_hidden == original_embedding and not staged and hasattr(config, "embedding_size"):
        with contextlib.suppress(NotImplementedError, AttributeError, TypeError):
            config.embedding_size = hidden
    if original_hidden != hidden:
        for key, value in list(config.to_dict().items()):
            tied = key.endswith(
                ("_hidden_size", "_proj_dim", "projection_size", "_groups")
            ) or key in ("embed_dim",)
            if tied and value == original_hidden and key not in TINY_SIZES:
                with contextlib.suppress(NotImplementedError, AttributeError, TypeError):
                    setattr(config, key, hidden)
    # Per-layer lists (ModernBERT's layer_types, ...) are derived at construction from the
    # original depth and validated against it.
    choice = None
    if not staged:
        kinds = None
        if overrides and original_layers:
            depth = max(original_layers)
            kinds = [json.dumps(overrides.get(i, {}), sort_keys=True) for i in range(depth)]
        choice = _shrink_per_layer_lists(config, original_layers, kinds)
    # Multi-head latent attention (DeepSeek) sets head_dim to its rotary part: keep it.
    mla = hasattr(config, "qk_rope_head_dim")
    if (mla or multi_head) and hasattr(config, "num_key_value_heads"):
        with contextlib.suppress(AttributeError, TypeError):  # no groups to keep (ESM-C, MLA)
            config.num_key_value_heads = config.num_attention_heads
    for key in ("head_dim", "d_head"):  # XLNet calls it d_head
        if hasattr(config, key) and getattr(config, "num_attention_heads", None) and not mla:
            with contextlib.suppress(AttributeError, TypeError):  # Falcon derives head_dim
                setattr(config, key, config.hidden_size // config.num_attention_heads)
    _fit_state_space_heads(config)
    _fit_mrope_sections(config)
    _fit_groups(config)
    if not staged:
        _keep_out_indices(config)
    if overrides is not None:
        _refit_per_layer(config, overrides, before, choice)
        config.allow_global_per_layer_attribute_access = False


def _shrink_sub_configs(config: Any) -> None:
    """Shrink nested configs (a multimodal model's text_config, vision_config, ...) in place.

    Left at their defaults they build full-size sub-models: gigabytes for one tiny test.
    A timm backbone becomes transformers' ResNet: timm is not installed, and the export
    exercises the same detection head on either.
    """
    from transformers import PretrainedConfig

    backbone = getattr(config, "backbone_config", None)
    if getattr(backbone, "model_type", None) == "timm_backbone":
        from transformers import ResNetConfig

        indices = list(getattr(backbone, "out_indices", None) or [1, 2, 3, 4])
        resnet: Any = ResNetConfig  # out_indices is a keyword of the backbone mixin
        config.backbone_config = resnet(
            embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
            out_indices=indices,
        )  # fmt: skip
    for value in list(vars(config).values()):
        if isinstance(value, PretrainedConfig) and value is not config:
            _shrink_sub_configs(value)
            _shrink_sizes(value)


def tiny_model(config: Any, task: str = "feature-extraction", *, seed: int = 0) -> Any:
    """A random model for `task` from `config` or a model type (shrunk with `tiny_config`)."""
    from onnxport.tasks import get_task

    task_obj = get_task(task)
    if isinstance(config, str):
        config = tiny_config(config)
    if getattr(config, "hidden_size", 32) > 64 or getattr(config, "dim", 32) > 64:
        config = tiny_config(config)
    config = copy.deepcopy(config)
    causal = task_obj.with_past and not task_obj.encoder_decoder
    if causal and getattr(config, "is_decoder", None) is False:
        config.is_decoder = True  # an encoder architecture's causal-LM head, as saved for it
    if task_obj.name in (
        "text-classification",
        "token-classification",
        "image-classification",
        "audio-classification",
    ):
        config.num_labels = 3
        config.id2label = {0: "LABEL_A", 1: "LABEL_B", 2: "LABEL_C"}
        config.label2id = {v: k for k, v in config.id2label.items()}
    head_class = task_obj.model_classes().get(config.model_type)
    if head_class is not None:
        # As a saved checkpoint would; transformers' from_config also needs it to choose
        # between several classes of one model type (Funnel's FunnelModel/FunnelBaseModel).
        config.architectures = [head_class]
    torch.manual_seed(seed)
    return task_obj.auto_model_class().from_config(config).eval()


WHISPER_SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|fr|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
)


def tiny_whisper_tokenizer() -> Any:
    """A byte-level Whisper tokenizer: the 256 byte symbols, no merges, Whisper's specials.

    Whisper's ASR post-processing (`_decode_asr`) exists on this class only, so the speech
    pipeline needs a real `WhisperTokenizer`; this one decodes any id the model emits.
    """
    from tokenizers import pre_tokenizers
    from transformers import WhisperTokenizer

    vocab = {char: index for index, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for token in WHISPER_SPECIALS:
        vocab[token] = len(vocab)
    return WhisperTokenizer(
        vocab=vocab, merges=[], additional_special_tokens=list(WHISPER_SPECIALS[1:])
    )


def tiny_whisper_parts(config: Any) -> tuple[Any, Any, Any]:
    """Tokenizer, feature extractor and generation config matching a tiny Whisper `config`.

    The feature extractor makes exactly the frames the encoder takes (its window is
    `max_source_positions * 2` frames of 10 ms); the generation config carries the language,
    task and no-timestamps tokens that Whisper's generate reads, as real checkpoints do.
    """
    from transformers import GenerationConfig, WhisperFeatureExtractor

    tokenizer = tiny_whisper_tokenizer()
    hop_length = 160
    frames = 2 * int(config.max_source_positions)
    features = WhisperFeatureExtractor(
        feature_size=int(config.num_mel_bins),
        sampling_rate=16000,
        hop_length=hop_length,
        chunk_length=frames * hop_length // 16000,
        n_fft=400,
    )
    ids = dict(
        zip(WHISPER_SPECIALS, tokenizer.convert_tokens_to_ids(list(WHISPER_SPECIALS)), strict=True)
    )
    generation = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        lang_to_id={"<|en|>": ids["<|en|>"], "<|fr|>": ids["<|fr|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        is_multilingual=True,
        suppress_tokens=[],
        begin_suppress_tokens=[ids["<|endoftext|>"]],
        max_length=int(config.max_target_positions),
    )
    return tokenizer, features, generation


def tiny_whisper_config(**overrides: Any) -> Any:
    """A tiny Whisper config: 1 second of audio (100 frames of 16 mel bins), the tiny vocab."""
    tokenizer = tiny_whisper_tokenizer()
    start = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    end = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    settings: dict[str, Any] = {
        "max_source_positions": 50,
        "max_target_positions": 64,
        "num_mel_bins": 16,
        "decoder_start_token_id": start,
        "bos_token_id": end,
        "eos_token_id": end,
        "pad_token_id": end,
        "suppress_tokens": [],
        "begin_suppress_tokens": [end],
        **overrides,
    }
    return tiny_config("whisper", tokenizer=tokenizer, **settings)


def save_tiny_checkpoint(
    model_type: str,
    task: str,
    folder: str | Path,
    *,
    seed: int = 0,
    **overrides: Any,
) -> Path:
    """Write a tiny random checkpoint with tokenizer to `folder`, as `save_pretrained` would."""
    from onnxport.tasks import get_task, tokenizer_input_names

    if model_type == "whisper":
        return _save_tiny_whisper(Path(folder), seed=seed, **overrides)
    if model_type == "vision-encoder-decoder":
        return _save_tiny_vision_encoder_decoder(Path(folder), seed=seed, **overrides)
    if task == "automatic-speech-recognition":
        return _save_tiny_speech_seq2seq(model_type, Path(folder), seed=seed, **overrides)
    base = tiny_config(model_type)
    names = tokenizer_input_names(base, None)
    task_obj = get_task(task)
    if task_obj.with_past:
        # Decoders' generate() refuses inputs their forward does not take.
        import transformers

        model_class = getattr(transformers, task_obj.model_classes()[model_type])
        accepted = inspect.signature(model_class.forward).parameters
        names = [n for n in names if n != "token_type_ids" or n in accepted]
    tokenizer = tiny_tokenizer(names)
    config = tiny_config(model_type, tokenizer=tokenizer, **overrides)
    model = tiny_model(config, task, seed=seed)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_vision_encoder_decoder_config(
    decoder: str = "trocr",
    *,
    init: float | None = None,
    encoder_init: float = 0.2,
    image_size: int = 32,
) -> Any:
    """A tiny VisionEncoderDecoderConfig: ViT encoder, `decoder` "trocr" or "gpt2".

    The decoder has cross-attention and the tiny vocabulary. The encoder is wider than the
    decoder, so the model's encoder-to-decoder projection is used.
    `init` (the weights' standard deviation; by default one per decoder, found by trying) is
    large enough that greedy paths vary with the image instead of repeating one token; the
    encoder's stays small (at 1.0 its activations reach the thousands, past float32's
    agreement with PyTorch at the default bound).
    """
    from transformers import GPT2Config, TrOCRConfig, VisionEncoderDecoderConfig, ViTConfig

    init = init if init is not None else {"trocr": 0.3, "gpt2": 0.5}[decoder]
    vocab = len(tiny_vocab())
    pad, start, end = 0, SPECIAL_TOKENS.index("[CLS]"), SPECIAL_TOKENS.index("[SEP]")
    tokens: dict[str, Any] = {"pad_token_id": pad, "bos_token_id": start, "eos_token_id": end}
    encoder = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        image_size=image_size, patch_size=8, initializer_range=encoder_init,
    )  # fmt: skip
    decoders = {
        "trocr": lambda: TrOCRConfig(
            vocab_size=vocab, d_model=24, decoder_layers=2, decoder_attention_heads=2,
            decoder_ffn_dim=37, max_position_embeddings=64, init_std=init,
            decoder_start_token_id=start, **tokens,
        ),
        "gpt2": lambda: GPT2Config(
            vocab_size=vocab, n_embd=24, n_layer=2, n_head=2, n_positions=64,
            add_cross_attention=True, initializer_range=init, **tokens,
        ),
    }  # fmt: skip
    config = VisionEncoderDecoderConfig(
        encoder=encoder.to_dict(), decoder=decoders[decoder]().to_dict()
    )
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = start, pad, end
    config.architectures = ["VisionEncoderDecoderModel"]
    return config


def _save_tiny_vision_encoder_decoder(
    folder: Path, *, seed: int, decoder: str = "trocr", **overrides: Any
) -> Path:
    from transformers import ViTImageProcessor

    config = tiny_vision_encoder_decoder_config(decoder, **overrides)
    model = tiny_model(config, "image-to-text", seed=seed)
    size = int(config.encoder.image_size)
    model.save_pretrained(folder)
    tiny_tokenizer(["input_ids", "attention_mask"]).save_pretrained(folder)
    ViTImageProcessor(size={"height": size, "width": size}).save_pretrained(folder)
    return folder


def _save_tiny_whisper(folder: Path, *, seed: int, **overrides: Any) -> Path:
    config = tiny_whisper_config(**overrides)
    tokenizer, features, generation = tiny_whisper_parts(config)
    model = tiny_model(config, "automatic-speech-recognition", seed=seed)
    model.generation_config = generation
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    features.save_pretrained(folder)
    return folder


def _save_tiny_speech_seq2seq(
    model_type: str, folder: Path, *, seed: int, **overrides: Any
) -> Path:
    """A speech encoder-decoder of any input length (Speech2Text, SpeechT5), and its parts.

    Its feature extractor returns a padding mask, as the real checkpoints' do.
    """
    from transformers import Speech2TextFeatureExtractor, Wav2Vec2FeatureExtractor

    tokenizer = tiny_tokenizer(["input_ids", "attention_mask"])
    config = tiny_config(model_type, tokenizer=tokenizer, **overrides)
    model = tiny_model(config, "automatic-speech-recognition", seed=seed)
    features: Any
    if model.main_input_name == "input_features":  # log-mel filter banks
        bins = int(config.input_feat_per_channel)
        features = Speech2TextFeatureExtractor(feature_size=bins, num_mel_bins=bins)
    else:  # raw 16 kHz audio
        features = Wav2Vec2FeatureExtractor(return_attention_mask=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    features.save_pretrained(folder)
    return folder


# Vision-language types whose tiny models the tests build: vision tower at 32x32 pixels in
# 8x8 patches; Gemma 3 pools its 16 patches to 4 tokens per image.
VISION_LANGUAGE_OVERRIDES: dict[str, dict[str, Any]] = {
    "llava": {},
    "idefics3": {},
    "smolvlm": {},
    # Untied: with the embedding as its output layer, tiny Gemma 3 repeats its last token.
    "gemma3": {"mm_tokens_per_image": 4, "tie_word_embeddings": False},
    # Likewise, and at the default scale its image features barely move the greedy path.
    "paligemma": {"tie_word_embeddings": False, "initializer_range": 0.2},
    # Packed-patch towers: a narrower tower (its default is 1280 wide); Qwen2.5-VL's
    # windows of 2x2 merged tokens, so that the example images span several.
    "qwen2_vl": {"vision_config": {"embed_dim": 64}},
    "qwen2_5_vl": {"vision_config": {"window_size": 56}},
}


IMAGE_TOKEN = "<image>"


def tiny_vision_language_config(
    model_type: str, *, tokenizer: Any | None = None, **overrides: Any
) -> Any:
    """A tiny vision-language config: 32x32 images, the image token the vocabulary's last id.

    With a tokenizer (one holding `IMAGE_TOKEN`), the vocabulary and image token follow it.
    """
    config = tiny_config(model_type, tokenizer=tokenizer)
    vision = getattr(config, "vision_config", None)
    if vision is not None and hasattr(vision, "image_size"):
        vision.image_size, vision.patch_size = 32, 8
    text = config.get_text_config()
    if tokenizer is not None:
        text.vocab_size = len(tokenizer)
    vocab = int(text.vocab_size)
    token = vocab - 1 if tokenizer is None else int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    for name in ("image_token_id", "image_token_index"):
        if hasattr(config, name):
            setattr(config, name, token)
    settings = {**VISION_LANGUAGE_OVERRIDES.get(model_type, {}), **overrides}
    for key, value in settings.items():
        if isinstance(value, dict):  # a sub-config's fields
            for name, field_value in value.items():
                setattr(getattr(config, key), name, field_value)
            continue
        setattr(config, key, value)
        if text is not config and hasattr(text, key):
            setattr(text, key, value)
    return config


def tiny_vision_language_model(
    model_type: str, *, seed: int = 0, tokenizer: Any | None = None, **overrides: Any
) -> Any:
    """A tiny random vision-language model whose images change what it generates.

    Matrices that the model initializes to zeros (Gemma 3's image projection) are drawn at
    random like the others: at zero, the image would not reach the language model at all.
    """
    config = tiny_vision_language_config(model_type, tokenizer=tokenizer, **overrides)
    model = tiny_model(config, "image-text-to-text", seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2 and not parameter.any():
                std = float(getattr(config.get_text_config(), "initializer_range", 0.02))
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model


def tiny_retriever(model_type: str, *, seed: int = 0, tokenizer: Any | None = None) -> Any:
    """A tiny ColPali-style retriever: its inner vision-language model as tiny ones are built."""
    config = tiny_config(model_type)
    inner = config.vlm_config.model_type
    config.vlm_config = tiny_vision_language_config(inner, tokenizer=tokenizer)
    return tiny_model(config, "retrieval", seed=seed)


_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def save_tiny_llava(folder: str | Path, *, seed: int = 0) -> Path:
    """A tiny LLaVA checkpoint with its processor (CLIP image processor, chat template).

    The tokenizer is the tiny WordPiece one plus `IMAGE_TOKEN`, which the processor expands
    to one placeholder per image patch, as real LLaVA checkpoints do.
    """
    from transformers import CLIPImageProcessor, LlavaProcessor

    tokenizer = tiny_tokenizer(["input_ids", "attention_mask"])
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tokenizer.padding_side = "left"
    model = tiny_vision_language_model("llava", seed=seed, tokenizer=tokenizer)
    size = int(model.config.vision_config.image_size)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size}
        ),
        tokenizer=tokenizer,
        patch_size=int(model.config.vision_config.patch_size),
        vision_feature_select_strategy=model.config.vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP's class token, which "default" drops
        chat_template=_CHAT_TEMPLATE,
    )
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# Tiny sizes that a model's own arithmetic constrains, where TINY_SIZES do not fit it.
TINY_CONFIG_OVERRIDES: dict[str, dict[str, Any]] = {
    # 2-D layout embeddings split the hidden size in six (x0, y0, x1, y1, width, height).
    "lilt": {"hidden_size": 48},
    "layoutlmv3": {"hidden_size": 48, "coordinate_size": 8, "shape_size": 8},
    # Its segmentation head reads 4 layers (the default config names only the last one).
    "beit": {"num_hidden_layers": 4, "out_indices": [1, 2, 3, 4]},
    # SAM's positional features are half its neck's width (2 x 128 at 256 channels).
    **{name: {"vision_config": {"num_pos_feats": 16}} for name in ("sam", "sam_hq")},
    # BROS projects its box embeddings to one attention head's width.
    "bros": {"dim_bbox_projection": 8},
    # DeepSeek-V2's default config leaves its routing unset (experts per token).
    "deepseek_v2": {"num_experts_per_tok": 2, "n_routed_experts": 4},
    # RT-DETR-style two-stage decoders pick their queries by top-k over the anchors' scores:
    # fewer queries than the anchors of the smallest validated image (300 by default), and
    # weights at 10x the default scale, at which the tiny encoder's features do not collapse
    # to one value (every score tied: top-k's picks were arbitrary).
    **{
        name: {"num_queries": 10, "initializer_range": 0.2}
        for name in ("rt_detr", "rt_detr_v2", "pp_doclayout_v3", "pp_doclayout_v4")
    },
    # D-FINE's heads overflow at that scale: half of it.
    **{name: {"num_queries": 10, "initializer_range": 0.1} for name in ("d_fine", "deimv2")},
    # Longformer's sliding window (512 by default) would cover every example token: a window
    # of 2 on each side, so validation runs windows, padding to the window and global tokens.
    "longformer": {"attention_window": 4},
    # Grounding DINO picks its 900 queries the same way (its weights scale is init_std).
    **{
        name: {"num_queries": 10, "init_std": 0.2}
        for name in ("grounding-dino", "mm-grounding-dino")
    },
}


def tiny_model_for(model_type: str, task: str, *, seed: int = 0) -> Any:
    """The tiny random model the coverage matrix exports for a (model type, task) pair.

    Vision-language models get small images and an image token inside the vocabulary;
    encoder-decoder captioners a ViT encoder and a TrOCR decoder (their config has no
    defaults to shrink).
    """
    if task == "image-text-to-text":
        return tiny_vision_language_model(model_type, seed=seed)
    if task == "retrieval":
        return tiny_retriever(model_type, seed=seed)
    if model_type == "vision-encoder-decoder":
        return tiny_model(tiny_vision_encoder_decoder_config(), task, seed=seed)
    overrides = TINY_CONFIG_OVERRIDES.get(model_type, {})
    return tiny_model(tiny_config(model_type, **overrides), task, seed=seed)


def tiny_speech_synthesizer(*, seed: int = 0) -> tuple[Any, Any, Any]:
    """A tiny SpeechT5 text-to-speech model, a HiFi-GAN vocoder for it, and its tokenizer.

    The prenet's dropout is 0 (SpeechT5 applies it at inference too, so outputs would be
    random), and the stop head is sharpened so that texts of one batch stop at different
    steps (at random weights every text stops at once, or none does).
    """
    from transformers import SpeechT5ForTextToSpeech, SpeechT5HifiGan, SpeechT5HifiGanConfig

    tokenizer = tiny_tokenizer(["input_ids", "attention_mask"])
    config = tiny_config("speecht5", tokenizer=tokenizer, speech_decoder_prenet_dropout=0.0)
    config.architectures = ["SpeechT5ForTextToSpeech"]
    torch.manual_seed(seed)
    model = SpeechT5ForTextToSpeech(config).eval()
    with torch.no_grad():
        model.speech_decoder_postnet.prob_out.bias.fill_(-2.0)
        model.speech_decoder_postnet.prob_out.weight.mul_(10)
    vocoder_config = SpeechT5HifiGanConfig(
        model_in_dim=config.num_mel_bins, upsample_initial_channel=32, upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
    )  # fmt: skip
    vocoder = SpeechT5HifiGan(vocoder_config).eval()
    return model, vocoder, tokenizer


def tiny_music_generator(*, seed: int = 0) -> tuple[Any, Any]:
    """A tiny MusicGen (T5 text encoder, 4-codebook decoder, EnCodec) and its tokenizer.

    EnCodec's codebooks start as zeros (trained ones are loaded), so they are drawn at random
    for audio that depends on the codes; the text's projection and cross-attention are
    scaled up so that the text (and so guidance) changes the tokens of a random model.
    """
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    tokenizer = tiny_tokenizer(["input_ids", "attention_mask"])
    codebooks, vocab = 4, 64
    text = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        dropout_rate=0.0, pad_token_id=0,
    )  # fmt: skip
    # 4 codebooks: frame rate 64 / (2 * 2) = 16 Hz, 6 bits each at 0.4 kbps. Non-causal with
    # reflect padding and 2 LSTM layers, as MusicGen's encodec_32khz.
    codec = EncodecConfig(
        sampling_rate=64, upsampling_ratios=[2, 2], target_bandwidths=[0.4], hidden_size=16,
        num_filters=4, num_residual_layers=1, num_lstm_layers=2, codebook_size=vocab,
        audio_channels=1, chunk_length_s=None, overlap=None, use_causal_conv=False,
        pad_mode="reflect", use_conv_shortcut=False,
    )  # fmt: skip
    decoder = MusicgenDecoderConfig(
        vocab_size=vocab, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
        ffn_dim=32, num_codebooks=codebooks, max_position_embeddings=64, dropout=0.0,
        pad_token_id=vocab, bos_token_id=vocab,
    )  # fmt: skip
    config = MusicgenConfig(text_encoder=text, audio_encoder=codec, decoder=decoder)
    config.architectures = ["MusicgenForConditionalGeneration"]
    torch.manual_seed(seed)
    model = MusicgenForConditionalGeneration(config).eval()
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
        model.enc_to_dec_proj.weight.mul_(30.0)
        for block in model.decoder.model.decoder.layers:
            block.encoder_attn.out_proj.weight.mul_(10.0)
    generation = model.generation_config
    generation.decoder_start_token_id = generation.pad_token_id = generation.bos_token_id = vocab
    return model, tokenizer
