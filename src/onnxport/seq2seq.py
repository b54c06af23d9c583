"""Encoder-decoder models split into the two graphs onnxport exports.

`encoder_model.onnx` runs once per input; `decoder_model.onnx` runs every step, taking the
encoder's hidden states and its own self-attention cache (empty on the first step). It
recomputes the cross-attention keys and values each step instead of caching them: whether
transformers reuses a cross-attention cache is a Python flag (`is_updated`) that a traced
graph would freeze, so one graph could not serve both the first step and the later ones.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model.onnx"
DECODER_INPUTS = ["input_ids", "encoder_attention_mask", "encoder_hidden_states"]


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


class DecoderPart(torch.nn.Module):
    """One decoding step given the encoder's states and the self-attention cache so far.

    Returns `logits` and `cache` (the new self-attention cache) like a decoder-only model, so
    the generic with-past path exports and validates it.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        cache: Any = None,
        use_cache: bool = True,
        return_dict: bool = True,
    ) -> dict[str, Any]:
        """Run the decoder with an empty cross-attention cache (recomputed from the states)."""
        self_attention = cache if cache is not None else DynamicCache()
        output = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden_states),
            attention_mask=encoder_attention_mask,
            decoder_input_ids=input_ids,
            cache=EncoderDecoderCache(self_attention, DynamicCache()),
            use_cache=True,
            return_dict=True,
        )
        return {"logits": output.logits, "cache": output.cache.self_attention_cache}
