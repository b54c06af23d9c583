"""Inputs of vision, audio and multimodal models: names from the model, shapes from the config.

Transformers names each model's main input (`main_input_name`: input_ids, pixel_values,
input_values, input_features). Text goes through the tokenizer path in `spec`; this module
derives everything else:

- images: `pixel_values` (batch, channels, height, width), channels and size read from the
  config (or its vision_config), else from the architecture's image processor; height and
  width are fixed at that size (position embeddings of most vision models are);
- raw audio: `input_values` (batch, samples), samples dynamic, plus `attention_mask` where
  the architecture's feature extractor returns one and forward takes it;
- spectrograms (`input_features`, or AST-style 3-d `input_values`): the layout (frames first or
  features first, dynamic or fixed length) is not recorded anywhere, so the candidate layouts
  the config allows are tried on the model itself and the first it runs on is kept;
- dual encoders (CLIP, SigLIP, ...): text inputs plus `pixel_values`;
- document models (LayoutLM): text inputs plus a `bbox` (x0, y0, x1, y1 in 0-1000) per token.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
from typing import Any

import torch

from onnxport.errors import SpecError, first_line
from onnxport.exporters.dummy import (
    AUDIO,
    BATCH,
    FRAMES,
    HEIGHT,
    IMAGE_BATCH,
    SEQUENCE,
    WIDTH,
    Template,
    model_dtype,
    probe_shape,
    trace_shape,
    validation_shapes,
)

logger = logging.getLogger(__name__)

TEXT, IMAGE, AUDIO_WAVE, SPECTROGRAM = "text", "image", "audio", "spectrogram"
TIME_SERIES, EMBEDDINGS = "time series", "embeddings"
_DEFAULT_IMAGE_SIZE = 64
_DEFAULT_MEL_BINS = 80
_IMAGE_INPUTS = ("pixel_values",)
_AUDIO_INPUTS = ("input_values", "input_features")
# What a model's forward raises when it does not take an input of some shape: a shape or size
# check (ValueError), a tensor op on mismatched sizes (RuntimeError), an axis it lacks
# (IndexError), or a call that does not fit its signature (TypeError). Anything else (an
# AttributeError or NameError in an adapter, an AssertionError) is a bug, not an answer about
# the shape, and must not quietly change the exported shape.
_INPUT_REFUSED = (RuntimeError, ValueError, IndexError, TypeError)


def main_input_name(model: torch.nn.Module) -> str:
    """The input transformers calls the model's main one (`input_ids` for text)."""
    name = getattr(model, "main_input_name", "input_ids")
    if isinstance(name, (list, tuple)):
        name = name[0]
    if name == "inputs":  # Perceiver takes "anything"; its image heads also name pixel_values
        forward = getattr(model, "forward", None)
        if forward is not None and "pixel_values" in inspect.signature(forward).parameters:
            return "pixel_values"
    return str(name)


def modality(model: torch.nn.Module) -> str:
    """text, image, audio (raw samples) or spectrogram, read from the main input."""
    name = main_input_name(model)
    if name == "pixel_values":
        return IMAGE
    if name == "input_values":
        return AUDIO_WAVE
    if name == "input_features":
        return SPECTROGRAM
    if name == "past_values":
        return TIME_SERIES
    if name == "inputs" and getattr(model, "input_preprocessor", ...) is None:
        return EMBEDDINGS  # Perceiver's bare model: embeddings of any modality, as they are
    return TEXT


def _sub_configs(config: Any) -> list[Any]:
    subs = [config]
    for key in ("vision_config", "backbone_config", "audio_config", "encoder_config"):
        sub = getattr(config, key, None)
        if sub is not None and not isinstance(sub, dict):
            subs.append(sub)
    return subs


def _first_attr(config: Any, *names: str) -> Any:
    for sub in _sub_configs(config):
        for name in names:
            value = getattr(sub, name, None)
            if value is not None:
                return value
    return None


def image_size(config: Any) -> tuple[int, int]:
    """(height, width) the model takes: config first, then the image processor's default."""
    return _configured_image_size(config) or (_DEFAULT_IMAGE_SIZE, _DEFAULT_IMAGE_SIZE)


def _configured_image_size(config: Any) -> tuple[int, int] | None:
    """The config's or image processor's (height, width), None when neither fixes one."""
    size = _first_attr(config, "image_size", "img_size", "input_size")
    if isinstance(size, int) and size > 0:
        return size, size
    if isinstance(size, (list, tuple)) and len(size) >= 2:
        return int(size[-2]), int(size[-1])
    return _processor_image_size(config.model_type)


def _processor_image_size(model_type: str) -> tuple[int, int] | None:
    """The (height, width) the architecture's image processor resizes to, if fixed."""
    from transformers.models.auto.image_processing_auto import (
        IMAGE_PROCESSOR_MAPPING_NAMES,
        get_image_processor_class_from_name,
    )

    entry: Any = IMAGE_PROCESSOR_MAPPING_NAMES.get(model_type)
    if isinstance(entry, dict):  # backends: the PIL one needs no torchvision
        entry = entry.get("pil") or entry.get("torchvision")
    if isinstance(entry, (list, tuple)):
        entry = next((n for n in entry if n), None)
    if not entry:
        return None
    with contextlib.suppress(Exception):  # optional packages may be missing
        processor = get_image_processor_class_from_name(str(entry))()
        size = getattr(processor, "crop_size", None) or getattr(processor, "size", None)
        size = dict(size) if size else {}
        if "height" in size and "width" in size:
            return int(size["height"]), int(size["width"])
    return None


def num_channels(config: Any) -> int:
    """Image channels: the config's num_channels (3 when it does not say)."""
    value = _first_attr(config, "num_channels", "in_channels", "num_input_channels")
    return int(value) if isinstance(value, int) and value > 0 else 3


def has_image_processor(model_type: str) -> bool:
    """Whether transformers maps this model type to an image processor."""
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    return model_type in IMAGE_PROCESSOR_MAPPING_NAMES


def _has_video_processor(config: Any) -> bool:
    """Whether transformers maps this model type to a video processor (frames in)."""
    from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING_NAMES

    return config.model_type in VIDEO_PROCESSOR_MAPPING_NAMES


def _extractor_masks(config: Any) -> bool:
    """Whether the architecture's feature extractor returns an attention mask by default.

    Models fed without one (wav2vec2-base style) are exported without one: their x-vector
    head takes a per-example Python loop over the mask's lengths, which no graph can hold.
    """
    from transformers.models.auto.feature_extraction_auto import (
        FEATURE_EXTRACTOR_MAPPING_NAMES,
        feature_extractor_class_from_name,
    )

    if getattr(config, "feat_extract_norm", None) == "layer":
        return True  # checkpoints of this layout ship extractors that return a mask
    name = FEATURE_EXTRACTOR_MAPPING_NAMES.get(config.model_type)
    with contextlib.suppress(Exception):
        return bool(feature_extractor_class_from_name(str(name))().return_attention_mask)
    return False


def input_names(model: torch.nn.Module, config: Any, accepted: set[str]) -> list[str]:
    """Graph inputs of a vision or audio model, in the processor's order."""
    main = main_input_name(model)
    if main not in accepted:
        raise SpecError(
            f"'{config.model_type}' names {main} its main input but forward does not take it."
        )
    names = [main]
    if main == "input_values" and "attention_mask" in accepted and _extractor_masks(config):
        names.append("attention_mask")
    if main in _AUDIO_INPUTS and takes_decoder_tokens(model):
        names.append("decoder_input_ids")  # a bare speech encoder-decoder (WhisperModel)
    if main == "pixel_values" and "noise" in accepted and _draws_noise(model, config):
        names.append("noise")
    return names


def _noise_length(config: Any) -> int:
    """One noise value per patch (ViT-MAE shuffles patches by it)."""
    height, width = image_size(config)
    patch = _first_attr(config, "patch_size")
    ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
    return (height // ph) * (width // pw)


def _draws_noise(model: torch.nn.Module, config: Any) -> bool:
    """Whether forward draws random noise when not given any (ViT-MAE's random masking).

    Such a graph would freeze one draw: the noise becomes an input instead (ORT model
    classes draw it when the caller does not pass it, as forward does). Hiera takes `noise`
    too but only its pre-training model masks: outputs that repeat need no noise input.
    """
    height, width = image_size(config)
    pixels = torch.randn(2, num_channels(config), height, width, dtype=model_dtype(model))
    outputs = []
    probe = _scratch(model)
    for seed in (0, 1):
        torch.manual_seed(seed)
        try:
            with torch.no_grad():
                output = probe(pixel_values=pixels)
        except _INPUT_REFUSED:
            return False
        first = next((v for v in output.values() if isinstance(v, torch.Tensor)), None)
        outputs.append(first)
    if outputs[0] is None or outputs[1] is None or torch.equal(outputs[0], outputs[1]):
        return False
    noise = torch.rand(2, _noise_length(config))
    with contextlib.suppress(*_INPUT_REFUSED), torch.no_grad():
        probe(pixel_values=pixels, noise=noise)
        return True
    return False


def input_templates(
    model: torch.nn.Module, config: Any, names: list[str], *, any_size: bool = True
) -> dict[str, Template]:
    """Full shapes (axis names or fixed sizes) of the non-text inputs among `names`.

    Images get a dynamic height and width when the model runs at other sizes, unless
    `any_size` is off (the exporter's retry when the graph fixed a size anyway).
    """
    templates: dict[str, Template] = {}
    frames = _first_attr(config, "num_frames")
    if "pixel_values" in names and isinstance(frames, int) and _has_video_processor(config):
        # Video models (VideoMAE, TimeSformer, ViViT): frames of the configured size.
        height, width = image_size(config)
        templates["pixel_values"] = (BATCH, frames, num_channels(config), height, width)
    elif "pixel_values" in names:
        height, width = image_size(config)
        channels = num_channels(config)
        if "input_ids" in names:
            # A dual encoder scores any number of images against any number of texts;
            # a model that reads both together (grounding) takes as many of each.
            separate = _images_apart_from_texts(model, config, channels, height, width)
            images = IMAGE_BATCH if separate else BATCH
            templates["pixel_values"] = (images, channels, height, width)
        elif any_size and _runs_at_any_size(model, channels):
            templates["pixel_values"] = (BATCH, channels, HEIGHT, WIDTH)
        elif not any_size and not _configured_image_size(config):
            # No size of its own (DETR-style processors keep the aspect ratio): the traced
            # size, which the model was seen to run at, rather than a guess it may not run at.
            traced = trace_shape()
            size = (traced.size_of(HEIGHT), traced.size_of(WIDTH))
            templates["pixel_values"] = (BATCH, channels, *size)
        else:
            templates["pixel_values"] = (BATCH, channels, height, width)
    if "inputs" in names:
        templates["inputs"] = (BATCH, SEQUENCE, int(config.d_model))
    if "past_values" in names:
        # PatchTST-style forecasters: a window of context_length steps of each channel.
        templates["past_values"] = (
            BATCH, int(config.context_length), int(getattr(config, "num_input_channels", 1))
        )  # fmt: skip
    if "bbox" in names:
        templates["bbox"] = (BATCH, SEQUENCE, 4)
    if "noise" in names:
        templates["noise"] = (BATCH, _noise_length(config))
    audio = next((n for n in names if n in _AUDIO_INPUTS), None)
    if audio is not None:
        templates[audio] = _audio_layout(model, config, audio)
        if "attention_mask" in names:
            templates["attention_mask"] = templates[audio][:2]
    return templates


def _scratch(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` to probe with, sharing its weights.

    Some models adapt themselves to the input they last saw (Swin shrinks its attention
    window to a small image's size and keeps it): a failed probe must not change the model
    that is exported.
    """
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return copy.deepcopy(model, memo=shared)


def _images_apart_from_texts(
    model: torch.nn.Module, config: Any, channels: int, height: int, width: int
) -> bool:
    """Whether the model runs on a number of images unlike its number of texts."""
    from onnxport.exporters.dummy import text_vocab_size

    shape = trace_shape()
    vocab = max(text_vocab_size(config), 6)
    ids = torch.randint(5, vocab, (shape.batch_size, shape.sequence_length))
    images = shape.size_of(IMAGE_BATCH)
    pixels = torch.randn(images, channels, height, width, dtype=model_dtype(model))
    probe = _scratch(model)
    try:
        with torch.no_grad():
            probe(input_ids=ids, pixel_values=pixels)
    except _INPUT_REFUSED as err:
        logger.info(
            "%s takes one image per text (%d images with %d texts: %s).",
            config.model_type, images, shape.batch_size, first_line(err, 160),
        )  # fmt: skip
        return False
    return True


def _runs_at_any_size(model: torch.nn.Module, channels: int) -> bool:
    """Whether the model takes images of other sizes (at the traced and validated ones).

    Convolutional backbones do, and their processors resize to varying sizes (DETR keeps
    the aspect ratio); models with learned position embeddings for one size refuse.
    """
    traced, dtype = trace_shape(), model_dtype(model)
    for shape in (traced, probe_shape(traced), *validation_shapes(traced)):
        size = (shape.size_of(HEIGHT), shape.size_of(WIDTH))
        pixels = torch.randn(shape.batch_size, channels, *size, dtype=dtype)  # not batch 1
        probe = _scratch(model)
        try:
            with torch.no_grad():
                probe(pixel_values=pixels)
        except _INPUT_REFUSED as err:  # a fixed-size model: its config's size it is
            logger.info(
                "%s takes images only at its configured size (at %dx%d: %s).",
                type(model).__name__, *size, first_line(err, 160),
            )  # fmt: skip
            return False
    logger.debug("%s takes images of any size.", type(model).__name__)
    return True


def takes_decoder_tokens(model: torch.nn.Module) -> bool:
    """Whether `model` is a bare encoder-decoder (WhisperModel, T5Model).

    It has no head to start its decoder, so forward needs the decoder's tokens as an input.
    """
    config: Any = getattr(model, "config", None)
    return (
        bool(getattr(config, "is_encoder_decoder", False))
        and "decoder_input_ids" in inspect.signature(model.forward).parameters
        and getattr(model, "base_model", None) is model
    )


def _decoder_tokens(model: torch.nn.Module, batch: int) -> dict[str, torch.Tensor]:
    """Decoder tokens to probe a bare encoder-decoder with (none for other models)."""
    if not takes_decoder_tokens(model):
        return {}
    start = int(getattr(model.config, "decoder_start_token_id", None) or 0)
    return {"decoder_input_ids": torch.full((batch, 3), start, dtype=torch.long)}


def _audio_layout(model: torch.nn.Module, config: Any, name: str) -> Template:
    """The first candidate layout the model runs on (see the module docstring)."""
    features = []
    for key in ("num_mel_bins", "feature_size", "n_mels", "input_feat_per_channel", "input_dim"):
        value = _first_attr(config, key)
        if isinstance(value, int) and value > 1 and value not in features:
            features.append(value)
    channels = _first_attr(config, "input_channels")
    if isinstance(channels, int) and channels > 1 and features:
        features.insert(0, features[-1] * channels)
    features = features or [_DEFAULT_MEL_BINS]
    lengths: list[int] = []
    for key in ("max_length", "max_source_positions", "num_frames"):
        value = _first_attr(config, key)
        if isinstance(value, int) and value > 1:
            lengths += [value, 2 * value]
    candidates: list[Template] = [(BATCH, AUDIO)] if name == "input_values" else []
    audio_channels = _first_attr(config, "audio_channels")
    if name == "input_values":  # codecs (EnCodec, Mimi, DAC): samples per channel
        candidates.append((BATCH, audio_channels if isinstance(audio_channels, int) else 1, AUDIO))
    for size in features:
        candidates += [(BATCH, FRAMES, size), (BATCH, size, FRAMES)]
    for length in lengths:
        for size in features:
            candidates += [(BATCH, length, size), (BATCH, size, length)]
    shape, dtype = trace_shape(), model_dtype(model)
    errors = []
    for template in candidates:
        dims = [shape.size_of(d) if isinstance(d, str) else d for d in template]
        probe = _scratch(model)
        try:
            with torch.no_grad():
                probe(**{name: torch.randn(dims, dtype=dtype)}, **_decoder_tokens(model, dims[0]))
        except _INPUT_REFUSED as err:  # this layout is not the model's: try the next one
            errors.append(f"{tuple(dims)}: {first_line(err, 120)}")
            logger.debug("%s refuses %s %s: %s", config.model_type, name, template, errors[-1])
            continue
        logger.info("%s layout of %s: %s", name, config.model_type, template)
        return template
    raise SpecError(
        f"No {name} layout '{config.model_type}' runs on was found (tried "
        f"{len(candidates)}; first: {errors[0] if errors else 'none'}). Register an adapter "
        "that declares its input shape."
    )
