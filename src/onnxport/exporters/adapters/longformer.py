"""Longformer: its self-attention, in a form torch.export can capture at any length."""

from __future__ import annotations

import math
import types
from typing import Any

import torch

from onnxport.exporters.adapters.base import ExportAdapter, register_adapter
from onnxport.exporters.dummy import InputShape, make_inputs

GLOBAL_MASK = "global_attention_mask"


def _heads(self: Any, states: torch.Tensor) -> torch.Tensor:
    """(batch, tokens, width) -> (batch, heads, tokens, head size)."""
    batch, length = states.shape[:2]
    return states.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)


def _attend(scores: torch.Tensor, allowed: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Softmax of `scores` over the `allowed` keys (float32, as transformers), times values."""
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    probabilities = torch.softmax(scores, dim=-1, dtype=torch.float32).type_as(scores)
    return probabilities @ values


def _self_attention_forward(
    self: Any,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    is_index_masked: torch.Tensor | None = None,
    is_index_global_attn: torch.Tensor | None = None,
    is_global_attn: Any = None,
    output_attentions: bool = False,
) -> tuple[torch.Tensor, ...]:
    """LongformerSelfAttention.forward as masked attention over every key, without branches.

    transformers chooses its global-attention code with `.item()` on the mask and gathers
    the global tokens with `nonzero` (data-dependent sizes), and its sliding windows are
    `as_strided` views whose strides a trace freezes. The same attention, written as masks:
    a token attends to the tokens within `one_sided_attn_window_size` of it that are neither
    padding nor global, and to every global token; a global token attends to every
    non-padding token through the global projections; padding queries output zero. Scores are
    (tokens x tokens) per head, where the windows are (tokens x window): more memory on long
    inputs. Used while torch.onnx exports only; validation compares with transformers' code.
    """
    if not torch.onnx.is_in_onnx_export() or output_attentions:
        return type(self).forward(
            self, hidden_states, attention_mask, is_index_masked, is_index_global_attn,
            is_global_attn, output_attentions,
        )  # fmt: skip
    assert attention_mask is not None
    assert is_index_masked is not None
    assert is_index_global_attn is not None
    batch, length, width = hidden_states.shape
    scale = math.sqrt(self.head_dim)
    query = _heads(self, self.query(hidden_states) / scale)
    key, value = _heads(self, self.key(hidden_states)), _heads(self, self.value(hidden_states))
    positions = torch.arange(length, device=hidden_states.device)
    window = (positions[:, None] - positions[None, :]).abs() <= self.one_sided_attn_window_size
    local_keys = attention_mask == 0  # neither padding (< 0) nor global (> 0)
    allowed = (window[None] & local_keys[:, None, :]) | is_index_global_attn[:, None, :]
    output = _attend(query @ key.transpose(-1, -2), allowed[:, None], value)
    global_query = _heads(self, self.query_global(hidden_states) / scale)
    global_key = _heads(self, self.key_global(hidden_states))
    global_value = _heads(self, self.value_global(hidden_states))
    global_output = _attend(
        global_query @ global_key.transpose(-1, -2), ~is_index_masked[:, None, None, :],
        global_value,
    )  # fmt: skip
    output = torch.where(is_index_global_attn[:, None, :, None], global_output, output)
    output = output.masked_fill(is_index_masked[:, None, :, None], 0.0)
    return (output.transpose(1, 2).reshape(batch, length, width),)


def _no_window_padding(self: Any, **inputs: Any) -> tuple[Any, ...]:
    """LongformerModel._pad_to_window_size, skipped while exporting (masks need no padding).

    transformers pads the tokens to a multiple of the window for its chunked windows, and cuts
    the padding off the output, branching on the padding's length (which a trace freezes).
    The masked attention above takes any length, and padding tokens are masked out anyway.
    """
    if not torch.onnx.is_in_onnx_export():
        return type(self)._pad_to_window_size(self, **inputs)
    return (
        0, inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"],
        inputs["position_ids"], inputs["inputs_embeds"],
    )  # fmt: skip


@register_adapter("longformer")
class LongformerAdapter(ExportAdapter):
    """Longformer's self-attention does not capture as written.

    It branches on `.item()` of its mask (global tokens or not), gathers global tokens with
    `nonzero` and slides its windows with `as_strided`. None of that is a pattern a general
    rule can rewrite: while exporting, each self-attention instance runs
    `_self_attention_forward`, the same attention as masks over every key; outside an export
    it is transformers' forward unchanged. The graph takes `global_attention_mask` (which
    tokens attend globally) as the reference exporter's does; examples mark the first token
    of every row and one more in the first, so validation runs global and local attention
    together.
    """

    def input_names(self, config: Any, task: str, default: list[str]) -> list[str]:
        """The tokenizer's inputs and `global_attention_mask`."""
        return [*default, GLOBAL_MASK]

    def dummy_inputs(
        self,
        config: Any,
        task: str,
        names: list[str],
        axes: dict[str, dict[int, str]],
        shape: InputShape,
    ) -> dict[str, torch.Tensor]:
        """Generic inputs, and global attention on token 0 of each row and token 3 of the first."""
        values = make_inputs(names, axes, config, shape)
        if GLOBAL_MASK in values:
            marks = torch.zeros_like(values[GLOBAL_MASK])
            marks[..., 0] = 1
            marks[0, ..., min(3, marks.shape[-1] - 1)] = 1
            values[GLOBAL_MASK] = marks
        return values

    def prepare_model(self, model: torch.nn.Module, task: str) -> torch.nn.Module:
        """Give every self-attention instance the exportable forward (the class is untouched)."""
        for module in model.modules():
            if type(module).__name__ == "LongformerSelfAttention":
                module.forward = types.MethodType(_self_attention_forward, module)
            if type(module).__name__ == "LongformerModel":
                vars(module)["_pad_to_window_size"] = types.MethodType(_no_window_padding, module)
        return model
