"""PaliGemma: the prefix's two-way attention, chosen inside the decoder graph."""

from __future__ import annotations

from typing import Any

import torch

from onnxport.exporters.adapters.base import ExportAdapter, register_adapter


@register_adapter("paligemma")
class PaliGemmaAdapter(ExportAdapter):
    """PaliGemma's image + prompt prefix attends both ways on the first step only.

    Its forward picks the mask in Python (`is_first_iteration`: the cache is empty), so a
    decoder graph traced with a past would keep the causal mask for every prompt, and one
    traced without a past the prefix mask for every step. Its positions also start at 1,
    which `prepare_inputs_for_generation` adds outside forward. The graph computes both from
    its inputs: the block mask where no past precedes the tokens (type 0: prefix), plain
    causal after it, and the positions shifted by one. No general rule finds this: the first
    step is a Python branch on cache state in this model's forward alone.
    """

    def prepare_model(self, model: torch.nn.Module, task: str) -> torch.nn.Module:
        """For image-text-to-text, the model with its decoding step in graph form."""
        return PrefixDecoding(model) if task == "image-text-to-text" else model


class PrefixDecoding(torch.nn.Module):
    """PaliGemma's generation model, its forward (given `inputs_embeds`) as a graph can hold.

    The mask comes from the token types and the past's length with tensor operations.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.inner = model
        self.config = model.config
        self.generation_config = model.generation_config

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        """The model's own image features (vision tower and projector)."""
        return self.inner.get_image_features(pixel_values, **kwargs)

    def get_input_embeddings(self) -> torch.nn.Module:
        """The model's token embedding."""
        return self.inner.get_input_embeddings()

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        cache: Any = None,
        use_cache: bool = True,
        return_dict: bool = True,
    ) -> Any:
        """One step as `PaliGemmaForConditionalGeneration` runs it inside `generate()`."""
        from transformers.masking_utils import (
            create_causal_mask,
            create_sliding_window_causal_mask,
        )
        from transformers.modeling_outputs import CausalLMOutputWithPast

        text_config = self.config.get_text_config()
        # Lengths as tensors: a comparison of shapes would be frozen at the traced one.
        total = torch.ones_like(attention_mask[:1]).sum()
        new = torch.ones_like(token_type_ids[:1]).sum()
        first = total == new
        groups = torch.where(first & (token_type_ids == 0), 0, -1)
        positions = position_ids + 1  # PaliGemma's positions are 1-indexed
        mask_kwargs = {
            "config": text_config,
            "inputs_embeds": inputs_embeds,
            "attention_mask": attention_mask,
            "cache": cache,
            "position_ids": positions,
            "block_sequence_ids": groups,
        }
        mask: Any = create_causal_mask(**mask_kwargs)
        if getattr(text_config, "sliding_window", None) is not None:  # PaliGemma 2
            mask = {
                "full_attention": mask,
                "sliding_attention": create_sliding_window_causal_mask(**mask_kwargs),
            }
        outputs = self.inner.model.language_model(
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=True,
        )
        logits = self.inner.lm_head(outputs.last_hidden_state)
        softcap = getattr(text_config, "final_logit_softcapping", None)
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        return CausalLMOutputWithPast(logits=logits, cache=outputs.cache)
