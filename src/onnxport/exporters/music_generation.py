"""MusicGen text-to-audio split into the graphs its generation loop runs.

MusicGen writes audio as tokens of K parallel codebooks, each delayed by its index (the
delay pattern), with classifier-free guidance (a batch half without the text), then decodes
the codes with EnCodec. transformers runs that in `MusicgenForConditionalGeneration.generate`;
the graphs are its pieces:

- `text_encoder.onnx`: the T5 text encoder, its projection to the decoder's width and the
  mask over its states (what the model's forward feeds the decoder): `encoder_hidden_states`;
- `decoder_model.onnx`: one decoder step with a key/value cache, `input_ids` of shape
  (batch, codebooks, tokens) in, `logits` (batch, codebooks, tokens, vocabulary) out (the
  model's own forward folds the codebooks into the batch, which no example batch could show);
- `audio_decoder.onnx`: EnCodec's decoder, `audio_codes` (1, batch, codebooks, frames) to
  `audio_values` (batch, channels, samples).

Two of EnCodec's layers do not capture as written, so while exporting (only then) they run
in a form that does: its padded convolutions compute their padding from int64 buffers and
branch on the input's length (a data-dependent guard), and torch.export unrolls its LSTM over
the traced number of frames. `_CodecConv` pads in plain integers and reflects without a
branch; `_CodecLSTM` writes each layer as one ONNX `LSTM` node (`torch.onnx.ops.symbolic`).
Validation compares the graph with EnCodec's own code.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch

from onnxport.errors import UnsupportedModelError
from onnxport.exporters.dummy import BATCH, ENCODER, SEQUENCE, Template
from onnxport.exporters.packed_vision import attention_implementation
from onnxport.exporters.seq2seq import DecoderPart, _as_encoder_decoder_cache
from onnxport.layout import AUDIO_DECODER_FILE, DECODER_FILE, TEXT_ENCODER_FILE


def _check_music_model(model: Any) -> None:
    """Refuse a model without MusicGen's text encoder, decoder and audio codec, naming it."""
    parts = ("text_encoder", "decoder", "audio_encoder")
    if not all(hasattr(model, name) for name in parts) or hasattr(model, "audio_enc_to_dec_proj"):
        raise UnsupportedModelError(
            f"text-to-audio-with-past export supports MusicGen (a text encoder, a codebook "
            f"decoder and an audio codec); '{model.config.model_type}' is not supported yet.",
            model_type=model.config.model_type,
        )


class TextEncoderPart(torch.nn.Module):
    """The text encoder's states as the decoder reads them: projected and masked."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        _check_music_model(model)
        self.model = model
        self.config = model.config

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, return_dict: bool = True
    ) -> dict[str, torch.Tensor]:
        """`encoder_hidden_states` (batch, tokens, decoder width); zero where masked."""
        # T5's sdpa path does not capture at dynamic shapes (a view torch.onnx refuses).
        with attention_implementation(self.model.text_encoder.config, "eager"):
            states = self.model.text_encoder(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state
        # As MusicgenForConditionalGeneration.forward: projected when the widths differ.
        if getattr(self.model, "enc_to_dec_proj", None) is not None:
            states = self.model.enc_to_dec_proj(states)
        states = states * attention_mask[..., None].to(states.dtype)
        return {"encoder_hidden_states": states}


class MusicDecoderPart(DecoderPart):
    """One step of MusicGen's codebook decoder (MusicgenForCausalLM) with its cache."""

    def __init__(self, model: Any) -> None:
        _check_music_model(model)
        super().__init__(model.decoder)  # the codebook decoder alone: self.model
        self.codebooks = int(self.config.num_codebooks)
        self.input_templates: dict[str, Template] = {
            "input_ids": (BATCH, self.codebooks, SEQUENCE),
            "encoder_hidden_states": (BATCH, ENCODER, int(self.config.hidden_size)),
        }

    def step(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        cache: Any,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """The logits (batch, codebooks, tokens, vocabulary) and the new cache.

        CrossAttentionPart passes token ids of shape (batch, 1): they are repeated over the
        codebooks (the cross-attention keys and values depend on the encoder's states alone).
        """
        if input_ids.dim() == 2:
            input_ids = input_ids[:, None].expand(-1, self.codebooks, -1)
        batch, codebooks, length = input_ids.shape
        output = self.model(
            input_ids=input_ids.reshape(batch * codebooks, length),
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            cache=_as_encoder_decoder_cache(cache),
            use_cache=True,
            return_dict=True,
        )
        logits = output.logits.reshape(batch, codebooks, length, -1)
        return {"logits": logits, "cache": output.cache}


def _conv_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    """EncodecConv1d.forward for stride 1 (the whole decoder), in exportable form.

    EnCodec pads `padding_total = kernel - stride` (all left when causal, else split) and,
    for reflect padding of an input shorter than the pad, zero-extends, reflects and cuts the
    extension; zero-extending to max(length, pad + 1) always gives the same values with no
    branch on the length.
    """
    conv = self.conv
    kernel = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1
    if conv.stride[0] != 1:
        return type(self).forward(self, hidden_states)
    total = kernel - 1
    right = 0 if self.causal else total // 2
    left = total - right
    if total > 0 and self.pad_mode == "reflect":
        widest = max(left, right)
        length = hidden_states.shape[-1]
        extended = torch.nn.functional.pad(hidden_states, (0, widest + 1))
        extended = extended[..., : torch.sym_max(length, widest + 1)]
        padded = torch.nn.functional.pad(extended, (left, right), mode="reflect")
        hidden_states = padded[..., : left + length + right]
    elif total > 0:
        hidden_states = torch.nn.functional.pad(hidden_states, (left, right), self.pad_mode)
    hidden_states = conv(hidden_states)
    if self.norm_type == "time_group_norm":
        hidden_states = self.norm(hidden_states)
    return hidden_states


def _onnx_gates(tensor: torch.Tensor, hidden: int) -> torch.Tensor:
    """PyTorch's LSTM gates (input, forget, cell, output) in ONNX's order (i, o, f, c)."""
    i, f, g, o = (tensor[k * hidden : (k + 1) * hidden] for k in range(4))
    return torch.cat([i, o, f, g], dim=0)


def _lstm_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    """EncodecLSTM.forward with each layer one ONNX LSTM node (the sequence stays dynamic)."""
    lstm = self.lstm
    hidden = lstm.hidden_size
    states = hidden_states.permute(2, 0, 1)  # (frames, batch, channels)
    frames, batch = states.shape[0], states.shape[1]
    output = states
    for layer in range(lstm.num_layers):
        weights = _onnx_gates(getattr(lstm, f"weight_ih_l{layer}"), hidden).unsqueeze(0)
        recurrent = _onnx_gates(getattr(lstm, f"weight_hh_l{layer}"), hidden).unsqueeze(0)
        bias = torch.cat(
            [
                _onnx_gates(getattr(lstm, f"bias_ih_l{layer}"), hidden),
                _onnx_gates(getattr(lstm, f"bias_hh_l{layer}"), hidden),
            ]
        ).unsqueeze(0)
        output = torch.onnx.ops.symbolic(
            "LSTM", (output, weights, recurrent, bias),
            {"hidden_size": hidden, "direction": "forward"},
            dtype=states.dtype, shape=(frames, 1, batch, hidden), version=14,
        ).squeeze(1)  # fmt: skip
    return (output + states).permute(1, 2, 0)


@contextlib.contextmanager
def _exportable_codec(codec: Any) -> Iterator[None]:
    """While torch.onnx exports, EnCodec's convolutions and LSTMs run in exportable form.

    Set on the instances for the duration of the capture, then removed: PyTorch's own runs
    (validation's reference) use EnCodec's code.
    """
    if not torch.onnx.is_in_onnx_export():
        yield
        return
    patched = []
    for module in codec.modules():
        name = type(module).__name__
        replacement = {"EncodecConv1d": _conv_forward, "EncodecLSTM": _lstm_forward}.get(name)
        if replacement is not None:
            module.forward = types.MethodType(replacement, module)
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


class AudioDecoderPart(torch.nn.Module):
    """EnCodec's decoder: codes (1, batch, codebooks, frames) to (batch, channels, samples)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        _check_music_model(model)
        self.codec = model.audio_encoder
        self.config = model.config
        codebooks = int(model.decoder.config.num_codebooks)
        if getattr(model.config, "audio_channels", 1) != 1:
            raise UnsupportedModelError(
                "Stereo MusicGen (two interleaved codebook sets) is not supported yet.",
                model_type=model.config.model_type,
            )
        self.input_templates: dict[str, Template] = {"audio_codes": (1, BATCH, codebooks, SEQUENCE)}

    def forward(self, audio_codes: torch.Tensor, return_dict: bool = True) -> dict[str, Any]:
        """`audio_values` for the codes."""
        with _exportable_codec(self.codec):
            audio = self.codec.decode(audio_codes, audio_scales=[None]).audio_values
        return {"audio_values": audio}


def graph_parts(model: Any) -> list[tuple[str, torch.nn.Module, list[str], bool]]:
    """(file name, module, input names, cached) of each graph; the decoder's last."""
    return [
        (TEXT_ENCODER_FILE, TextEncoderPart(model), ["input_ids", "attention_mask"], False),
        (AUDIO_DECODER_FILE, AudioDecoderPart(model), ["audio_codes"], False),
        (
            DECODER_FILE,
            MusicDecoderPart(model),
            ["input_ids", "encoder_hidden_states", "encoder_attention_mask"],
            True,
        ),
    ]


def is_music_generation(task: Any) -> bool:
    """Whether `task` exports MusicGen's graphs."""
    return bool(task.name == "text-to-audio-with-past")
