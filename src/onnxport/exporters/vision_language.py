"""Vision-language models split into the three graphs generation runs.

transformers.js' split, derived from the model's own methods rather than written per model:

- `vision_encoder.onnx`: `pixel_values` -> `image_features`, the model's `get_image_features`
  (vision tower and projector), one row of features per image placeholder token;
- `embed_tokens.onnx`: `input_ids` -> `inputs_embeds`, the model's `get_input_embeddings()`;
- `decoder_model.onnx`: `inputs_embeds` and the key/value cache -> `logits` and the new cache,
  the model's own forward given embeddings (the language model and its head).

The runtime splices the image features into the embeddings where `input_ids` holds the
config's `image_token_id`, as the model's forward does (`get_placeholder_mask` +
`masked_scatter`), and runs the decoder with the generic decoder path's cache.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from onnxport.errors import UnsupportedModelError
from onnxport.exporters.dummy import BATCH, SEQUENCE, Template
from onnxport.exporters.packed_vision import PackedVisionPart, takes_image_grid
from onnxport.layout import DECODER_FILE, EMBED_FILE, VISION_FILE
from onnxport.layout import image_token_id as placeholder_token

# Inputs of the decoder graph; token_type_ids only where the model's forward takes them
# (Gemma 3 marks image tokens with 1: they attend to each other both ways).
DECODER_INPUTS = ["inputs_embeds", "attention_mask", "position_ids"]
# Vision inputs beside pixel_values that get_image_features takes (Idefics3's padding mask).
_VISION_EXTRAS = ("pixel_attention_mask",)


def image_token_id(config: Any) -> int:
    """The placeholder token whose embeddings the image features replace."""
    token = placeholder_token(config)
    if token is not None:
        return token
    hint = (
        " It is an encoder-decoder: export it with --task image-to-text."
        if getattr(config, "is_encoder_decoder", False)
        else ""
    )
    raise UnsupportedModelError(
        f"'{config.model_type}' has no image_token_id in its config: image-text-to-text export "
        f"splices image features at that token and cannot place them.{hint}",
        model_type=config.model_type,
    )


def _check_structure(model: Any) -> None:
    missing = [
        name for name in ("get_image_features", "get_input_embeddings") if not hasattr(model, name)
    ]
    vision = getattr(model.config, "vision_config", None)
    if missing or vision is None:
        what = ", ".join(missing) or "config.vision_config"
        raise UnsupportedModelError(
            f"'{model.config.model_type}' has no {what}: image-text-to-text export splits a "
            "model with a vision tower, a token embedding and a language model.",
            model_type=model.config.model_type,
        )


class VisionPart(torch.nn.Module):
    """`get_image_features` at the vision tower's configured image size.

    Arguments `get_image_features` takes that the config also holds (LLaVA's
    `vision_feature_layer`) are passed from the config, as the model's forward does.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        from onnxport.exporters import modality

        _check_structure(model)
        self.model = model
        self.config = model.config
        accepted = inspect.signature(model.get_image_features).parameters
        self.settings = {
            name: getattr(model.config, name)
            for name in accepted
            if name not in ("pixel_values", *_VISION_EXTRAS) and hasattr(model.config, name)
        }
        self.extras = [name for name in _VISION_EXTRAS if name in accepted]
        vision = model.config.vision_config
        height, width = modality.image_size(vision)
        channels = modality.num_channels(vision)
        # Idefics3-style models take images per prompt (batch, images, channels, h, w).
        lead: Template = (BATCH, 1) if self.extras else (BATCH,)
        self.input_templates: dict[str, Template] = {
            "pixel_values": (*lead, channels, height, width)
        }
        if self.extras:
            self.input_templates["pixel_attention_mask"] = (*lead, height, width)
        # A model that returns its features as a Python list (LLaVA unbinds them per image,
        # Idefics3 splits them by a count read off the data) fixes the number of images in
        # any graph traced through it: such a graph is traced for one image and wrapped in a
        # Loop over the images (image_loop.py), then validated at several counts.
        self.lead = len(lead)
        self.one_image = self._returns_a_list(lead)

    def _returns_a_list(self, lead: Template) -> bool:
        sizes = {name: [2 if isinstance(d, str) else d for d in template]
                 for name, template in self.input_templates.items()}  # fmt: skip
        parameter = next(self.model.parameters())
        example = {
            name: torch.ones(
                dims, device=parameter.device,
                dtype=parameter.dtype if name == "pixel_values" else torch.long,
            )
            for name, dims in sizes.items()
        }  # fmt: skip
        with torch.no_grad():
            output = self.model.get_image_features(**example, return_dict=True, **self.settings)
        return isinstance(output.pooler_output, (list, tuple))

    def single_image_spec(self, spec: Any) -> Any:
        """`spec` for tracing one image: the leading axes fixed at 1, nothing else dynamic."""
        from dataclasses import replace

        fixed = {
            name: (*(1,) * self.lead, *template[self.lead :])
            for name, template in spec.input_templates.items()
        }
        outputs: dict[str, dict[int, str]] = {name: {} for name in spec.outputs}
        return replace(
            spec, inputs={name: {} for name in spec.inputs}, outputs=outputs,
            input_templates=fixed,
        )  # fmt: skip

    def input_names(self) -> list[str]:
        """The graph's inputs."""
        return ["pixel_values", *self.extras]

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> dict[str, torch.Tensor]:
        """`image_features`: (images, tokens per image, hidden size)."""
        extra = (
            {} if pixel_attention_mask is None else {"pixel_attention_mask": pixel_attention_mask}
        )
        output = self.model.get_image_features(
            pixel_values=pixel_values, return_dict=True, **self.settings, **extra
        )
        features = output.pooler_output
        if isinstance(features, (list, tuple)):
            features = torch.stack(list(features))
        if features.dim() == 2:
            features = features.unsqueeze(0)
        return {"image_features": features}


class EmbedPart(torch.nn.Module):
    """The token embedding. A placeholder outside the vocabulary embeds as token 0.

    (Gemma 3's lies outside it; its forward does the same. Its rows are replaced by image
    features; a placeholder inside the vocabulary that the model generates embeds as itself.)
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        _check_structure(model)
        self.embed = model.get_input_embeddings()
        self.config = model.config
        self.image_token = image_token_id(model.config)
        self.outside = self.image_token >= int(self.embed.weight.shape[0])

    def forward(self, input_ids: torch.Tensor, return_dict: bool = True) -> dict[str, torch.Tensor]:
        """`inputs_embeds` for the tokens."""
        ids = input_ids
        if self.outside:
            ids = torch.where(ids == self.image_token, torch.zeros_like(ids), ids)
        return {"inputs_embeds": self.embed(ids)}


class DecoderPart(torch.nn.Module):
    """The model's forward given `inputs_embeds` (no images): the language model and head."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        _check_structure(model)
        self.model = model
        self.config = model.config
        hidden = int(model.config.get_text_config().hidden_size)
        self.input_templates: dict[str, Template] = {"inputs_embeds": (BATCH, SEQUENCE, hidden)}
        if multimodal_rotary(model):  # (temporal, height, width) position of every token
            self.input_templates["position_ids"] = (3, BATCH, SEQUENCE)
        accepted = inspect.signature(model.forward).parameters
        self.names = [n for n in DECODER_INPUTS if n in accepted]
        if "token_type_ids" in accepted:
            self.names.append("token_type_ids")

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = True,
        return_dict: bool = True,
    ) -> dict[str, Any]:
        """One step: `logits` and the new `cache`."""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        if position_ids is not None:
            extra["position_ids"] = position_ids
        output = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            cache=cache,
            use_cache=True,
            return_dict=True,
            **extra,
        )
        return {"logits": output.logits, "cache": output.cache}


def multimodal_rotary(model: Any) -> bool:
    """Whether the language model rotates by 3-D positions (Qwen2-VL's M-RoPE).

    Such a model computes them with its own `get_rope_index` (from the image grids); the
    decoder graph takes them as `position_ids` (3, batch, sequence).
    """
    base = getattr(model, "model", model)
    return callable(getattr(base, "get_rope_index", None))


def graph_parts(model: Any) -> list[tuple[str, torch.nn.Module, list[str], bool]]:
    """(file name, module, input names, with a cache) of the three graphs, in run order."""
    image_token_id(model.config)
    _check_structure(model)
    vision = PackedVisionPart(model) if takes_image_grid(model) else VisionPart(model)
    decoder = DecoderPart(model)
    return [
        (VISION_FILE, vision, vision.input_names(), False),
        (EMBED_FILE, EmbedPart(model), ["input_ids"], False),
        (DECODER_FILE, decoder, decoder.names, True),
    ]
