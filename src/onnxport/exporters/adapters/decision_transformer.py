"""Decision Transformer: a trajectory of states, actions and returns, not tokens."""

from __future__ import annotations

from typing import Any

import torch

from onnxport.exporters.adapters.base import ExportAdapter, register_adapter
from onnxport.exporters.dummy import InputShape

INPUTS = ["states", "actions", "returns_to_go", "timesteps", "attention_mask"]


@register_adapter("decision_transformer")
class DecisionTransformerAdapter(ExportAdapter):
    """Decision Transformer reads a trajectory, not tokens.

    Per step: a state, an action, the return still to go and the step's index. Their widths
    come from config fields only this model has
    (`state_dim`, `act_dim`, `max_ep_len`), and no tokenizer or processor names them, so no
    general rule can derive its inputs.
    """

    def input_names(self, config: Any, task: str, default: list[str]) -> list[str]:
        """The trajectory's tensors and its mask (rewards are not read by forward)."""
        return list(INPUTS)

    def dummy_inputs(
        self,
        config: Any,
        task: str,
        names: list[str],
        axes: dict[str, dict[int, str]],
        shape: InputShape,
    ) -> dict[str, torch.Tensor]:
        """A random trajectory of `shape`'s batch and length, its last row padded if asked."""
        generator = torch.Generator().manual_seed(0)
        batch, length = shape.batch_size, shape.sequence_length
        mask = torch.ones(batch, length, dtype=torch.long)
        if shape.padded and batch > 1:
            mask[-1, length // 2 :] = 0
        steps = torch.randint(0, int(config.max_ep_len), (batch, length), generator=generator)
        values = {
            "states": torch.randn(batch, length, int(config.state_dim), generator=generator),
            "actions": torch.randn(batch, length, int(config.act_dim), generator=generator),
            "returns_to_go": torch.randn(batch, length, 1, generator=generator),
            "timesteps": steps,
            "attention_mask": mask,
        }
        return {name: values[name] for name in names}
