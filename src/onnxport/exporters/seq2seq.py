"""Encoder-decoder models split into the two graphs onnxport exports.

`encoder_model.onnx` runs once per input; `decoder_model.onnx` runs every step, taking the
encoder's hidden states, its self-attention cache and its cross-attention cache
(`past_key_values.<i>.encoder.key/value`), all empty on the first step. Whether transformers
computes the cross-attention keys and values or reuses them is a Python flag (`is_updated`)
that a trace freezes, so the decoder is traced reusing them (`DecoderPart`), the projections
that compute them are traced apart (`CrossAttentionPart`), and cross_cache.py joins the two
with an `If` per layer on whether that cache is empty. After the first step no decoder step touches
the encoder's states again (on Whisper's 1,500 positions that was most of a step's work).

Speech models (Whisper) take log-mel `input_features` of a fixed number of frames instead of
tokens, image captioners (VisionEncoderDecoderModel: TrOCR, Donut) take `pixel_values` of the
vision encoder's size; neither decoder has a mask over the encoder's states. `SpeechEncoderPart`,
`VisionEncoderPart` and `UnmaskedDecoderPart` declare exactly those inputs. Other speech models
(Moonshine's raw audio, Speech2Text's filter banks) take input of any length with a padding
mask: `MaskedSpeechEncoderPart` also returns the mask over its states that the decoder's
cross-attention needs (`encoder_attention_mask`), and `MaskedSpeechDecoderPart` takes it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from onnxport.errors import UnsupportedModelError
from onnxport.exporters.dummy import BATCH, ENCODER, SEQUENCE, Template
from onnxport.layout import DECODER_FILE, ENCODER_FILE

DECODER_INPUTS = ["input_ids", "encoder_attention_mask", "encoder_hidden_states"]
UNMASKED_DECODER_INPUTS = ["input_ids", "encoder_hidden_states"]


def speech_frames(model: Any) -> int:
    """Frames of log-mel features the encoder takes: Whisper's encoder refuses any other length.

    Read as WhisperGenerationMixin reads it (conv strides x encoder positions); an encoder
    without that layout is refused, naming the architecture.
    """
    config = model.config
    encoder = model.get_encoder()
    convs: list[Any] = [getattr(encoder, name, None) for name in ("conv1", "conv2")]
    positions = getattr(config, "max_source_positions", None)
    if None in convs or not positions or not hasattr(config, "num_mel_bins"):
        raise UnsupportedModelError(
            f"automatic-speech-recognition export supports Whisper-style models (log-mel "
            f"input_features of a fixed length); '{config.model_type}' is not supported yet.",
            model_type=config.model_type,
        )
    stride = 1
    for conv in convs:
        stride *= int(conv.stride[0])
    return stride * int(positions)


def _whisper_style(model: Any) -> bool:
    """Whether the encoder takes log-mel features of one fixed length (Whisper's layout)."""
    try:
        speech_frames(model)
    except UnsupportedModelError:
        return False
    return True


class EncoderPart(torch.nn.Module):
    """The encoder stack of an encoder-decoder model, returning `last_hidden_state`."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.encoder = model.get_encoder()
        self.config = model.config

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> BaseModelOutput:
        """Encode the source tokens."""
        output = self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return BaseModelOutput(last_hidden_state=output.last_hidden_state)


def _as_encoder_decoder_cache(cache: Any) -> EncoderDecoderCache:
    """`cache` as the EncoderDecoderCache a decoder step takes (a self-attention one, or none)."""
    if isinstance(cache, EncoderDecoderCache):
        return cache
    return EncoderDecoderCache(cache if cache is not None else DynamicCache(), DynamicCache())


@dataclass
class EncoderStates(BaseModelOutput):
    """The encoder's states as a decoder step receives them.

    Mixture-of-experts encoder-decoders (Switch, NLLB-MoE) read the encoder's router logits
    off it for their output: none here, the step only needs the states.
    """

    router_logits: Any = None


def decoder_step(
    model: Any,
    input_ids: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    cache: Any,
    encoder_attention_mask: torch.Tensor | None = None,
) -> dict[str, Any]:
    """One decoder step: `logits` and the new `cache` (an EncoderDecoderCache).

    A cache with filled cross-attention layers is reused as it is; an empty one (or none)
    is computed from `encoder_hidden_states`.
    """
    cache = _as_encoder_decoder_cache(cache)
    mask = {} if encoder_attention_mask is None else {"attention_mask": encoder_attention_mask}
    output = model(
        encoder_outputs=EncoderStates(last_hidden_state=encoder_hidden_states),
        decoder_input_ids=input_ids,
        cache=cache,
        use_cache=True,
        return_dict=True,
        **mask,
    )
    return {"logits": output.logits, "cache": output.cache}


class _DecoderStep(torch.nn.Module):
    """A decoder graph's module: `step` runs one decoding step of the model."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def step(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        cache: Any,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """One step of this decoder (what CrossAttentionPart reads the cross cache from)."""
        return decoder_step(
            self.model, input_ids, encoder_hidden_states, cache, encoder_attention_mask
        )


class DecoderPart(_DecoderStep):
    """One decoding step given the encoder's states and the self-attention cache so far.

    Returns `logits` and `cache` (the new self-attention cache) like a decoder-only model, so
    the generic with-past path exports and validates it.
    """

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        cache: Any = None,
        use_cache: bool = True,
        return_dict: bool = True,
    ) -> dict[str, Any]:
        """Run the decoder, reusing a filled cross-attention cache."""
        return self.step(input_ids, encoder_hidden_states, cache, encoder_attention_mask)


class SpeechEncoderPart(torch.nn.Module):
    """The audio encoder of a Whisper-style model: fixed-length log-mel features in."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.encoder = model.get_encoder()
        self.config = model.config
        frames = speech_frames(model)
        self.input_templates: dict[str, Template] = {
            "input_features": (BATCH, int(model.config.num_mel_bins), frames)
        }

    def forward(self, input_features: torch.Tensor, return_dict: bool = True) -> BaseModelOutput:
        """Encode the log-mel features."""
        output = self.encoder(input_features=input_features, return_dict=True)
        return BaseModelOutput(last_hidden_state=output.last_hidden_state)


class VisionEncoderPart(torch.nn.Module):
    """The image encoder of a VisionEncoderDecoderModel: `pixel_values` at its configured size.

    The size is the encoder's own (its position embeddings fix it), read from its config.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        from onnxport.exporters import modality

        self.encoder = model.get_encoder()
        self.config = model.config
        encoder_config = self.encoder.config
        height, width = modality.image_size(encoder_config)
        channels = modality.num_channels(encoder_config)
        self.input_templates: dict[str, Template] = {
            "pixel_values": (BATCH, channels, height, width)
        }

    def forward(self, pixel_values: torch.Tensor, return_dict: bool = True) -> BaseModelOutput:
        """Encode the images."""
        output = self.encoder(pixel_values=pixel_values, return_dict=True)
        return BaseModelOutput(last_hidden_state=output.last_hidden_state)


class PatchEncoderPart(torch.nn.Module):
    """Pix2Struct's image encoder: `flattened_patches` with their mask.

    Each patch is (batch, patches, 2 + patch size): its row and column (from 1; 0 pads),
    then its pixels. The mask is also the one its decoder's cross-attention uses (as the
    model's forward passes it on).
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        vision = model.config.vision_config
        self.input_templates: dict[str, Template] = {
            "flattened_patches": (BATCH, SEQUENCE, 2 + int(vision.patch_embed_hidden_size))
        }

    def forward(
        self,
        flattened_patches: torch.Tensor,
        attention_mask: torch.Tensor,
        return_dict: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Encode the patches; the mask over the states is the input's."""
        output = self.model.get_encoder()(
            flattened_patches=flattened_patches, attention_mask=attention_mask, return_dict=True
        )
        return {
            "last_hidden_state": output.last_hidden_state,
            "encoder_attention_mask": attention_mask.long(),
        }


class UnmaskedDecoderPart(_DecoderStep):
    """One decoding step of a decoder that attends to every encoder state (frames, patches).

    `encoder_hidden_states` are the encoder's own width: a VisionEncoderDecoderModel projects
    them to the decoder's inside its forward, so the projection is part of this graph.
    """

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        encoder_config = getattr(model.config, "encoder", None)
        width = getattr(encoder_config, "hidden_size", None)
        self.input_templates: dict[str, Template] = (
            {"encoder_hidden_states": (BATCH, ENCODER, int(width))} if width else {}
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        cache: Any = None,
        use_cache: bool = True,
        return_dict: bool = True,
    ) -> dict[str, Any]:
        """Run the decoder, reusing a filled cross-attention cache."""
        return self.step(input_ids, encoder_hidden_states, cache)


def _frame_mask_owner(model: Any) -> Any:
    """Where `_get_feature_vector_attention_mask` lives: the model or its encoder's prenet.

    That method turns the input's mask into the mask over the encoder's states: Speech2Text
    has it on the model, SpeechT5 on its speech prenet.
    """
    encoder = model.get_encoder()
    for owner in (model, getattr(encoder, "prenet", None)):
        if hasattr(owner, "_get_feature_vector_attention_mask"):
            return owner
    return None


def _frame_mask_source(model: Any) -> str | None:
    """How a speech model derives the mask over its encoder's states from the input's mask.

    "owner": a `_get_feature_vector_attention_mask` method (`_frame_mask_owner`); "encoder":
    the encoder takes the mask and returns the one over its states (Moonshine's
    `attention_mask` output); None: neither.
    """
    if _frame_mask_owner(model) is not None:
        return "owner"
    if "attention_mask" in inspect.signature(model.get_encoder().forward).parameters:
        return "encoder"
    return None


class MaskedSpeechEncoderPart(torch.nn.Module):
    """A speech encoder of any input length, with a padding mask (Moonshine, Speech2Text).

    Returns its states and `encoder_attention_mask`, the mask over them that the decoder's
    cross-attention uses, derived as the model derives it: the encoder's own output
    (Moonshine), or `_get_feature_vector_attention_mask` (Speech2Text, SpeechT5).
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        self.main_input_name = model.main_input_name

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Encode the audio; the mask over the states follows the input's."""
        audio = input_values if input_values is not None else input_features
        encoder = self.model.get_encoder()
        output = encoder(**{self.main_input_name: audio}, attention_mask=attention_mask)
        hidden = output.last_hidden_state
        frames = None
        owner = _frame_mask_owner(self.model)
        if attention_mask is not None and owner is not None:
            frames = owner._get_feature_vector_attention_mask(hidden.shape[1], attention_mask)
        elif attention_mask is not None:
            frames = getattr(output, "attention_mask", None)
            if frames is None:
                raise UnsupportedModelError(
                    f"'{self.config.model_type}' encodes audio of any length but returns no "
                    "mask over its states: its decoder cannot be told which are padding.",
                    model_type=self.config.model_type,
                )
        if frames is None:
            frames = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        return {"last_hidden_state": hidden, "encoder_attention_mask": frames.long()}


class MaskedSpeechDecoderPart(DecoderPart):
    """One decoding step of a speech decoder masked over the encoder's states.

    The mask over the states is given as it is: the model's own forward would derive it from
    the audio's mask (Speech2Text) or read it off the encoder's output (Moonshine), so the
    step runs the model's decoder stack and output projection directly.
    """

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        encoder = model.get_encoder().config  # Pix2Struct's: its vision config
        width = getattr(encoder, "d_model", None) or encoder.hidden_size
        self.input_templates: dict[str, Template] = {
            "encoder_hidden_states": (BATCH, ENCODER, int(width))
        }

    def step(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        cache: Any,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """The decoder stack, then the output projection, as the model's forward runs them."""
        cache = _as_encoder_decoder_cache(cache)
        decoder = self.model.get_decoder()
        # SpeechT5's text decoder names its token ids input_values.
        parameters = inspect.signature(decoder.forward).parameters
        tokens = "input_ids" if "input_ids" in parameters else "input_values"
        output = decoder(
            **{tokens: input_ids},
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            cache=cache,
            use_cache=True,
            return_dict=True,
        )
        logits = getattr(output, "logits", None)  # Pix2Struct's text decoder has its head
        if logits is None:
            logits = self.model.get_output_embeddings()(output.last_hidden_state)
        return {"logits": logits, "cache": output.cache}


class CrossAttentionPart(torch.nn.Module):
    """The cross-attention keys and values of every decoder layer, from the encoder's states.

    Read off transformers' own first decoding step (its cross-attention cache), so no
    architecture's projection layout is written here; the rest of that step's graph does not
    reach the outputs and is dropped from the capture.
    """

    def __init__(self, decoder: Any, num_layers: int) -> None:
        super().__init__()
        self.decoder = decoder
        self.config = decoder.config
        self.num_layers = num_layers

    def forward(
        self, encoder_hidden_states: torch.Tensor, return_dict: bool = True
    ) -> dict[str, torch.Tensor]:
        """`present.<i>.encoder.key/value` for the encoder's states."""
        # Any token will do: the keys and values depend on the encoder's states alone.
        ids = torch.zeros(
            (encoder_hidden_states.shape[0], 1), dtype=torch.long,
            device=encoder_hidden_states.device,
        )  # fmt: skip
        cache = self.decoder.step(ids, encoder_hidden_states, None)["cache"]
        layers = cache.cross_attention_cache.layers
        outputs: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(layers[: self.num_layers]):
            outputs[f"present.{index}.encoder.key"] = layer.keys
            outputs[f"present.{index}.encoder.value"] = layer.values
        return outputs


# Tasks whose encoder takes one float input and whose decoder attends to all of its states.
_UNMASKED_ENCODERS: dict[str, tuple[type[torch.nn.Module], str]] = {
    "automatic-speech-recognition": (SpeechEncoderPart, "input_features"),
    "image-to-text": (VisionEncoderPart, "pixel_values"),
}


def graph_parts(model: Any, task: str) -> list[tuple[str, torch.nn.Module, list[str] | None]]:
    """(file name, module, input names) of the two graphs; None: the tokenizer's names."""
    if task == "automatic-speech-recognition" and not _whisper_style(model):
        source = _frame_mask_source(model)
        audio = model.main_input_name
        if source is None or audio not in ("input_values", "input_features"):
            speech_frames(model)  # refuses in one line, naming the architecture
        return [
            (ENCODER_FILE, MaskedSpeechEncoderPart(model), [audio, "attention_mask"]),
            (DECODER_FILE, MaskedSpeechDecoderPart(model), list(DECODER_INPUTS)),
        ]
    if task == "image-to-text" and model.main_input_name == "flattened_patches":
        return [
            (ENCODER_FILE, PatchEncoderPart(model), ["flattened_patches", "attention_mask"]),
            (DECODER_FILE, MaskedSpeechDecoderPart(model), list(DECODER_INPUTS)),
        ]
    if task in _UNMASKED_ENCODERS:
        encoder_part, encoder_input = _UNMASKED_ENCODERS[task]
        return [
            (ENCODER_FILE, encoder_part(model), [encoder_input]),
            (DECODER_FILE, UnmaskedDecoderPart(model), list(UNMASKED_DECODER_INPUTS)),
        ]
    return [
        (ENCODER_FILE, EncoderPart(model), None),
        (DECODER_FILE, DecoderPart(model), list(DECODER_INPUTS)),
    ]
