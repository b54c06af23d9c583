"""Late-interaction retrievers (ColPali) split into the graphs a retrieval service runs.

A ColPali-style model embeds page images and text queries with one vision-language model:
pages are a prompt whose image placeholder tokens hold the image's features, queries are
text alone. One graph taking `pixel_values` could not embed a query, so the export is split
as for vision-language generation, from the model's own structure:

- `vision_encoder.onnx`: the inner VLM's `get_image_features` (run for pages only);
- `embed_tokens.onnx`: its token embedding;
- `model.onnx`: the retriever's forward given `inputs_embeds` and the mask, returning the
  normalized multi-vector `embeddings` (one per token).

The runtime splices image features at the placeholder tokens, as the model's forward does.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from onnxport.errors import UnsupportedModelError
from onnxport.exporters.dummy import BATCH, SEQUENCE, Template
from onnxport.exporters.vision_language import EmbedPart, VisionPart
from onnxport.layout import EMBED_FILE, ONNX_FILE, VISION_FILE


def inner_vision_language_model(model: Any) -> Any:
    """The sub-module that splices images into text (ColPali's `vlm`), found by its methods."""
    for module in model.modules():
        if module is model:
            continue
        if callable(getattr(module, "get_image_features", None)) and callable(
            getattr(module, "get_input_embeddings", None)
        ):
            return module
    raise UnsupportedModelError(
        f"'{model.config.model_type}' holds no vision-language model (a module with "
        "get_image_features and get_input_embeddings): retrieval export splits one.",
        model_type=model.config.model_type,
    )


class RetrieverPart(torch.nn.Module):
    """The retriever's forward given token embeddings (images already spliced in)."""

    def __init__(self, model: Any, inner: Any) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        hidden = int(inner.config.get_text_config().hidden_size)
        self.input_templates: dict[str, Template] = {"inputs_embeds": (BATCH, SEQUENCE, hidden)}
        self.names = ["inputs_embeds", "attention_mask"]
        # PaliGemma-based retrievers attend both ways over the prefix its processor marks with
        # token type 0 (the whole query or page); without them, transformers' mask depends on
        # whether the batch is padded.
        if "token_type_ids" in inspect.signature(inner.forward).parameters:
            self.names.append("token_type_ids")

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> dict[str, torch.Tensor]:
        """`embeddings`: (batch, sequence, embedding dim), unit length, zero where masked."""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        output = self.model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False, **extra
        )
        return {"embeddings": output.embeddings}


def graph_parts(model: Any) -> list[tuple[str, torch.nn.Module, list[str]]]:
    """(file name, module, input names) of the three graphs."""
    inner = inner_vision_language_model(model)
    vision = VisionPart(inner)
    retriever = RetrieverPart(model, inner)
    return [
        (VISION_FILE, vision, vision.input_names()),
        (EMBED_FILE, EmbedPart(inner), ["input_ids"]),
        (ONNX_FILE, retriever, retriever.names),
    ]
