"""VITS: text to waveform, with the sampling noise's scales as graph inputs."""

from __future__ import annotations

from typing import Any

import torch

from onnxport.exporters.adapters.base import ExportAdapter, register_adapter

NOISE_SCALES = ("noise_scale", "noise_scale_duration")


class _NoiseScales(torch.nn.Module):
    """VITS' forward with its two noise scales passed in (it reads them off the instance)."""

    input_templates: dict[str, tuple[()]] = dict.fromkeys(NOISE_SCALES, ())

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        self.main_input_name = "input_ids"

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        noise_scale: torch.Tensor,
        noise_scale_duration: torch.Tensor,
        return_dict: bool = True,
    ) -> Any:
        """The waveform for `input_ids`, sampled at the given noise scales."""
        saved = [getattr(self.model, name) for name in NOISE_SCALES]
        self.model.noise_scale, self.model.noise_scale_duration = noise_scale, noise_scale_duration
        try:
            return self.model(input_ids=input_ids, attention_mask=attention_mask)
        finally:
            self.model.noise_scale, self.model.noise_scale_duration = saved


@register_adapter("vits")
class VitsAdapter(ExportAdapter):
    """VITS samples its durations and its latent with `torch.randn` inside forward.

    The draws are scaled by `noise_scale_duration` and `noise_scale`, which forward reads off
    the model instance (copied from the config at init), so no general rule can reach them.
    The graph takes both scales as scalar inputs: it samples as PyTorch does (ONNX
    RandomNormal) at the config's scales, which the runtime passes by default, and is
    validated at scales 0 (the generic example for a scalar input), where PyTorch and ONNX
    Runtime are deterministic and must agree.
    """

    def input_names(self, config: Any, task: str, default: list[str]) -> list[str]:
        """The tokenizer's inputs and the two noise scales."""
        return [*default, *NOISE_SCALES]

    def prepare_model(self, model: torch.nn.Module, task: str) -> torch.nn.Module:
        """The model behind a wrapper that takes the noise scales as inputs."""
        return _NoiseScales(model)
