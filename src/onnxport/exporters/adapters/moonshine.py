"""Moonshine: its encoder's frame mask, computed in a form torch.export can capture."""

from __future__ import annotations

import types
from typing import Any

import torch

from onnxport.exporters.adapters.base import ExportAdapter, register_adapter

# The encoder's three convolutions advance 64, 3 and 2 samples: one state per 384 samples.
_SAMPLES_PER_STATE = 64 * 3 * 2


def _encoder_forward(
    self: Any, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
) -> Any:
    """MoonshineEncoder.forward, with the mask over its states taken from the audio's length.

    transformers cuts the audio's mask to one value per state with
    `mask[..., ::384][..., :int((samples - 127) / 64 + 1) ...]`: the `int()` of a float
    freezes the count at the traced length, and as integer arithmetic torch.export cannot
    prove the slice's length. For a mask padded at the end (what the feature extractor
    returns) state j is real exactly when sample 384 j is, i.e. when 384 j < the audio's
    length: the same mask, at the states' own length. Used while torch.onnx exports only;
    validation compares the graph with transformers' forward.
    """
    if not torch.onnx.is_in_onnx_export() or attention_mask is None:
        return type(self).forward(self, input_values, attention_mask, **kwargs)
    from transformers.masking_utils import create_bidirectional_mask
    from transformers.models.moonshine.modeling_moonshine import MoonshineEncoderModelOutput

    hidden = torch.tanh(self.conv1(input_values.unsqueeze(1)))
    hidden = self.groupnorm(hidden)
    hidden = torch.nn.functional.gelu(self.conv2(hidden))
    hidden = torch.nn.functional.gelu(self.conv3(hidden)).permute(0, 2, 1)
    starts = torch.arange(hidden.shape[1], device=hidden.device)[None] * _SAMPLES_PER_STATE
    frames = (starts < attention_mask.sum(-1, keepdim=True)).to(attention_mask.dtype)
    mask = create_bidirectional_mask(
        config=self.config, inputs_embeds=hidden, attention_mask=frames,
        encoder_hidden_states=hidden,
    )  # fmt: skip
    positions = torch.arange(0, hidden.shape[1], device=hidden.device).unsqueeze(0)
    rotary = self.rotary_emb(hidden, position_ids=positions)
    for layer in self.layers:
        hidden = layer(
            hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary,
            **kwargs,
        )  # fmt: skip
    return MoonshineEncoderModelOutput(
        last_hidden_state=self.layer_norm(hidden), attention_mask=frames.int()
    )


@register_adapter("moonshine")
class MoonshineAdapter(ExportAdapter):
    """Moonshine's encoder slices its frame mask to a length computed with `int()` on floats.

    No general rule reaches a slice inside an encoder's forward, so while exporting the
    encoder instance runs `_encoder_forward` (the same states, the mask from the audio's
    length); outside an export it is transformers' forward unchanged.
    """

    def prepare_model(self, model: torch.nn.Module, task: str) -> torch.nn.Module:
        """Give the encoder instance the exportable forward (the class is untouched)."""
        if task == "automatic-speech-recognition":
            encoder: Any = model.get_encoder()  # type: ignore[operator]
            encoder.forward = types.MethodType(_encoder_forward, encoder)
        return model
