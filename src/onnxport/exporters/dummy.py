"""Example inputs for tracing and validation.

Every dynamic dimension is at least 2 when traced and each axis gets its own size
(batch != sequence != choices != past != past + sequence), so the exporter can neither
specialize a dimension to 1 nor alias two axes. Validation shapes differ from the traced one,
one of them at batch 1; decoders are also validated with an empty past (the first step).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from onnxport.errors import ExportOptionError, SpecError

BATCH = "batch_size"
SEQUENCE = "sequence_length"
CHOICES = "num_choices"
PAST = "past_sequence_length"
TOTAL = "total_sequence_length"  # past + sequence: the attention mask of a decoder step
ENCODER = "encoder_sequence_length"  # what a seq2seq decoder attends to
# A seq2seq decoder's cross-attention cache: empty on the first step (the graph computes it
# from the encoder's states), the encoder's length after it.
CROSS = "encoder_past_sequence_length"
DECODER = "decoder_sequence_length"  # a bare encoder-decoder's decoder tokens
AUDIO = "audio_length"  # raw audio samples: a fixed multiple of the sequence length
FRAMES = "num_frames"  # spectrogram frames: likewise
IMAGE_BATCH = "image_batch_size"  # a dual encoder's images, counted apart from its texts
HEIGHT = "height"  # images of models that take any size (convolutional backbones)
WIDTH = "width"
# Packed vision towers (Qwen2-VL): all images' patches in one axis, and the image tokens
# they merge into (`image_grids` sizes the images).
PATCHES = "num_patches"
IMAGE_TOKENS = "num_image_tokens"
PIXELS_PER_TOKEN = 8  # height = 8 x sequence length, width 32 more: never square, never equal
AUDIO_SAMPLES_PER_TOKEN = 640  # two wav2vec2 frames (320 samples each) per token
FRAMES_PER_TOKEN = 4

Template = tuple[int | str, ...]
UNICODE_CODE_POINTS = 0x110000


@dataclass(frozen=True)
class InputShape:
    """Sizes of the dynamic axes for one set of example inputs.

    `padded` pads one row of a batch > 1 (attention_mask 0) as a real padded batch does: at
    the end for encoders, at the start (left padding) for decoders. `past_length` is the
    length of the key/value cache a decoder step receives (0: the first step).
    """

    batch_size: int = 2
    sequence_length: int = 16
    num_choices: int = 3
    padded: bool = False
    past_length: int = 0
    encoder_length: int = 0

    def size_of(self, axis: str) -> int:
        """The size this shape gives the named axis."""
        return self.sizes()[axis]

    def sizes(self) -> dict[str, int]:
        """Every named axis with its size."""
        return {
            BATCH: self.batch_size,
            SEQUENCE: self.sequence_length,
            CHOICES: self.num_choices,
            PAST: self.past_length,
            TOTAL: self.past_length + self.sequence_length,
            ENCODER: self.encoder_length,
            DECODER: self.sequence_length // 2 + 1,
            CROSS: self.encoder_length if self.past_length else 0,
            AUDIO: self.sequence_length * AUDIO_SAMPLES_PER_TOKEN,
            FRAMES: self.sequence_length * FRAMES_PER_TOKEN,
            IMAGE_BATCH: self.batch_size + self.num_choices,
            HEIGHT: self.sequence_length * PIXELS_PER_TOKEN,
            WIDTH: self.sequence_length * PIXELS_PER_TOKEN + 32,
            IMAGE_TOKENS: int(image_grids(self.batch_size, 1).prod(-1).sum()),
        }

    def label(self) -> str:
        """Short description used in logs, e.g. `batch 3, sequence 23, padded`."""
        text = f"batch {self.batch_size}, sequence {self.sequence_length}"
        if self.past_length:
            text += f", past {self.past_length}"
        return text + (", padded" if self.padded else "")


def image_grids(batch: int, merge: int) -> torch.Tensor:
    """Example `image_grid_thw` for `batch` images of unlike sizes (multiples of `merge`).

    Image i is one frame of (1 + i % 2) x (2 + i % 3) blocks of merge x merge patches.
    """
    rows = [(1, merge * (1 + i % 2), merge * (2 + i % 3)) for i in range(batch)]
    return torch.tensor(rows, dtype=torch.long)


def axis_sizes(shape: InputShape, config: Any) -> dict[str, int]:
    """Every named axis with its size at `shape`, packed patches included.

    (The config's merge size scales the patch count.)
    """
    patches = int(image_grids(shape.batch_size, _merge_size(config)).prod(-1).sum())
    return {**shape.sizes(), PATCHES: patches}


def _merge_size(config: Any) -> int:
    vision = getattr(config, "vision_config", None) or config
    return int(getattr(vision, "spatial_merge_size", 1) or 1)


def trace_shape(
    batch_size: int = 2, sequence_length: int = 16, *, with_past: bool = False
) -> InputShape:
    """The traced shape, checked: each dynamic dim >= 2 and the sizes pairwise distinct."""
    for option, value in (("--batch-size", batch_size), ("--sequence-length", sequence_length)):
        if value < 2:
            raise ExportOptionError(
                f"{option} must be at least 2 (got {value}): a size of 1 lets the exporter "
                "fix that axis to 1.",
                option=option,
            )
    if batch_size == sequence_length:
        raise ExportOptionError(
            f"--batch-size and --sequence-length must differ (both {batch_size}): equal sizes "
            "let the exporter merge the two axes.",
            option="--batch-size",
        )
    choices = 3
    while choices in (batch_size, sequence_length):
        choices += 1
    past = 0
    encoder = 0
    if with_past:
        taken = {batch_size, sequence_length, choices}
        past = 5
        while past in taken or past + sequence_length in taken:
            past += 1
        encoder = 7
        while encoder in {*taken, past, past + sequence_length}:
            encoder += 1
    return InputShape(
        batch_size, sequence_length, choices, past_length=past, encoder_length=encoder
    )


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the model's floating-point weights (float32 when it has none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def probe_shape(traced: InputShape) -> InputShape:
    """The second shape a spec's outputs are read at: every axis moved off the traced size."""
    return InputShape(
        traced.batch_size + 1, traced.sequence_length + 3, traced.num_choices + 2,
        past_length=traced.past_length + 2 if traced.past_length else 0,
        encoder_length=traced.encoder_length + 5 if traced.encoder_length else 0,
    )  # fmt: skip


def validation_shapes(traced: InputShape) -> list[InputShape]:
    """Shapes unlike the traced one: batch 1, and a larger padded batch of odd length.

    With a past (decoders), both run with an empty past (the first step) and with a past
    of a length unlike the traced one.
    """
    if traced.past_length:
        past = traced.past_length + 4
        larger = traced.batch_size + 1
        encoder = traced.encoder_length + 3
        return [
            InputShape(1, 4, 2, past_length=0, encoder_length=encoder),
            InputShape(larger, 7, 2, padded=True, past_length=0, encoder_length=encoder + 2),
            InputShape(1, 1, 2, past_length=past, encoder_length=encoder + 4),
            InputShape(larger, 3, 2, padded=True, past_length=past + 2, encoder_length=encoder),
        ]
    short = max(2, traced.sequence_length // 2 + 1)
    if short == traced.sequence_length:
        short += 1
    return [
        replace(traced, batch_size=1, sequence_length=short, num_choices=2, padded=False),
        replace(
            traced,
            batch_size=traced.batch_size + 1,
            sequence_length=traced.sequence_length + 7,
            num_choices=traced.num_choices + 1,
            padded=True,
        ),
    ]


def input_axes(name: str, multiple_choice: bool, *, with_past: bool = False) -> dict[int, str]:
    """Dynamic axes of a known text input."""
    if multiple_choice:
        return {0: BATCH, 1: CHOICES, 2: SEQUENCE}
    if with_past and name == "attention_mask":
        return {0: BATCH, 1: TOTAL}
    if name in ("encoder_attention_mask", "encoder_hidden_states"):
        return {0: BATCH, 1: ENCODER}
    if name == "decoder_input_ids":
        return {0: BATCH, 1: DECODER}
    return {0: BATCH, 1: SEQUENCE}


def text_vocab_size(config: Any) -> int:
    """The vocabulary input_ids index: the config's, else its text (or decoder) sub-config's."""
    for sub in (config, *(getattr(config, k, None) for k in ("text_config", "decoder"))):
        vocab = int(getattr(sub, "vocab_size", 0) or 0)
        if vocab:
            return vocab
    if getattr(config, "vlm_config", None) is not None:  # a retriever around a VLM (ColPali)
        return text_vocab_size(config.vlm_config)
    if getattr(config, "num_hash_buckets", None):
        return UNICODE_CODE_POINTS  # CANINE reads characters: ids are code points, hashed
    return 0


def _token_id(config: Any, name: str) -> int | None:
    """A special token's id from the config (the first, when it lists several), if in range."""
    value = getattr(config, name, None)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    vocab = text_vocab_size(config)
    return value if isinstance(value, int) and 0 <= value < vocab else None


def make_inputs(
    names: list[str],
    axes: dict[str, dict[int, str]],
    config: Any,
    shape: InputShape,
    *,
    seed: int = 0,
    templates: dict[str, Template] | None = None,
    left_padding: bool = False,
) -> dict[str, torch.Tensor]:
    """Random but valid example inputs for `names` at `shape`.

    Token ids avoid the special tokens' ids so no row is accidentally all padding; the
    padded row keeps at least two real tokens. `templates` give full shapes (axis names or
    fixed sizes) for inputs whose dims are not all dynamic, such as a decoder's past.
    """
    generator = torch.Generator().manual_seed(seed)
    templates = templates or {}
    result: dict[str, torch.Tensor] = {}
    grids = image_grids(shape.batch_size, _merge_size(config))
    sizes = axis_sizes(shape, config)
    for name in names:
        template = templates.get(name) or tuple(axes[name][i] for i in range(len(axes[name])))
        dims = [sizes[d] if isinstance(d, str) else d for d in template]
        if name in ("image_grid_thw", "grid_thw"):
            result[name] = grids
            continue
        result[name] = _make_one(name, dims, config, shape, generator, left_padding)
    eos = _token_id(config, "eos_token_id")
    if "input_ids" in result and eos is not None and not left_padding:
        # As a tokenizer ends each text: BART-style classifiers pool at the </s> token.
        ids = result["input_ids"]
        mask = result.get("attention_mask")
        lengths = mask.sum(-1) if mask is not None and mask.shape == ids.shape else None
        if lengths is None:
            lengths = torch.full(ids.shape[:-1], ids.shape[-1])
        ids.scatter_(-1, (lengths - 1).clamp(min=0).unsqueeze(-1).long(), eos)
    if "position_ids" in result and "attention_mask" in result:
        # Positions follow the mask (left padding shifts them), over the current tokens only.
        positions = (result["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        positions = positions[..., -shape.sequence_length :]
        lead = result["position_ids"].dim() - positions.dim()
        if lead:  # multimodal rotary (Qwen2-VL): one row per axis, offset so that they differ
            offsets = torch.arange(result["position_ids"].shape[0]).view(-1, 1, 1)
            positions = positions.expand(result["position_ids"].shape) + offsets
        result["position_ids"] = positions.contiguous()
    return result


def _make_one(
    name: str,
    dims: list[int],
    config: Any,
    shape: InputShape,
    generator: torch.Generator,
    left_padding: bool,
) -> torch.Tensor:
    if not dims and name != "input_ids":
        # A setting the graph takes (a sampling scale, a dropout probability): 0, where
        # sampling is deterministic and PyTorch and ONNX Runtime must agree.
        return torch.tensor(0.0)
    if name in ("input_ids", "decoder_input_ids"):
        vocab = text_vocab_size(config)
        if vocab < 2:
            raise SpecError(f"config.vocab_size is {vocab}: cannot make example input_ids.")
        low = min(5, vocab - 1)
        return torch.randint(low, vocab, dims, generator=generator, dtype=torch.long)
    if name == "encoder_attention_mask":  # encoders' batches are padded at the end
        return _make_one("attention_mask", dims, config, shape, generator, False)
    if name in (
        "encoder_hidden_states", "input_features", "input_values", "pixel_values", "inputs_embeds",
        "past_values", "inputs", "hidden_states", "output_sequence", "speaker_embeddings",
        "spectrum", "spectrogram",
    ):  # fmt: skip
        return torch.randn(dims, generator=generator)
    if name == "flattened_patches":  # Pix2Struct: row and column (from 1), then pixels
        patches = torch.randn(dims, generator=generator)
        index = torch.arange(dims[1])
        patches[..., 0], patches[..., 1] = index // 4 + 1, index % 4 + 1
        return patches
    if name == "audio_codes":  # an audio codec's codebook entries (MusicGen's EnCodec)
        size = int(getattr(getattr(config, "audio_encoder", config), "codebook_size", 2))
        return torch.randint(0, size, dims, generator=generator, dtype=torch.long)
    if name == "noise":  # what forward would draw: uniform in [0, 1)
        return torch.rand(dims, generator=generator)
    if name == "bbox":  # (x0, y0, x1, y1) per token on LayoutLM's 0-1000 page grid
        corners = torch.randint(0, 500, (*dims[:-1], 2), generator=generator)
        sizes = torch.randint(1, 500, (*dims[:-1], 2), generator=generator)
        return torch.cat([corners, corners + sizes], dim=-1)
    if name in ("pixel_mask", "pixel_attention_mask", "global_attention_mask"):
        return torch.ones(dims, dtype=torch.long)
    if name == "attention_mask":
        mask = torch.ones(dims, dtype=torch.long)
        if shape.padded and dims[0] > 1:
            keep = max(2, dims[-1] // 2)
            if left_padding:
                mask[-1, ..., : dims[-1] - keep] = 0
            else:
                mask[-1, ..., keep:] = 0
        return mask
    if name == "token_type_ids" and isinstance(
        getattr(config, "type_vocab_sizes", None), (list, tuple)
    ):
        # TAPAS: seven ids per token (segment, column, row, rank, ...), each below its size.
        columns = [
            torch.randint(0, int(size), dims, generator=generator)
            for size in config.type_vocab_sizes
        ]
        return torch.stack(columns, dim=-1)
    if name == "token_type_ids":
        types = int(getattr(config, "type_vocab_size", 1) or 1)
        ids = torch.zeros(dims, dtype=torch.long)
        if getattr(config, "image_token_id", None) is not None and dims[-1] > 2:
            # A vision-language model marks image tokens 1 (they attend both ways): a block.
            ids[..., 1 : 1 + dims[-1] // 2] = 1
            return ids
        if types > 1:
            ids[..., dims[-1] // 2 :] = 1
        return ids
    if name == "position_ids":
        return torch.arange(dims[-1], dtype=torch.long).expand(*dims).contiguous()
    if name.startswith("past_key_values."):
        return torch.randn(dims, generator=generator)
    raise SpecError(
        f"Cannot make an example value for input '{name}'. Register an adapter for this "
        "architecture that provides it (see docs: 'Adding an architecture')."
    )
