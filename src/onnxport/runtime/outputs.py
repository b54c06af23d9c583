"""The transformers output classes ORT models return, with or without torch.

`transformers.modeling_outputs` imports torch at its top, so a deployment without torch
cannot use it. Where torch is already loaded (the caller passed torch tensors, or imported it
anyway) transformers' own classes are returned; otherwise classes of the same names and
fields, built here on transformers' torch-free `ModelOutput` base, hold the numpy arrays.
Either way `outputs.logits`, `outputs["logits"]` and `outputs[0]` work as in transformers.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any

from transformers.utils import ModelOutput

# Class name -> fields, as transformers 5 declares them (checked by tests/test_runtime.py).
OUTPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "BaseModelOutput": ("last_hidden_state", "hidden_states", "attentions"),
    "BaseModelOutputWithPooling": (
        "last_hidden_state",
        "pooler_output",
        "hidden_states",
        "attentions",
    ),
    "CausalLMOutput": ("loss", "logits", "hidden_states", "attentions"),
    "DepthEstimatorOutput": ("loss", "predicted_depth", "hidden_states", "attentions"),
    "ImageClassifierOutput": ("loss", "logits", "hidden_states", "attentions"),
    "ImageSuperResolutionOutput": ("loss", "reconstruction", "hidden_states", "attentions"),
    "MaskedImageModelingOutput": ("loss", "reconstruction", "hidden_states", "attentions"),
    "MaskedLMOutput": ("loss", "logits", "hidden_states", "attentions"),
    "MultipleChoiceModelOutput": ("loss", "logits", "hidden_states", "attentions"),
    "QuestionAnsweringModelOutput": (
        "loss",
        "start_logits",
        "end_logits",
        "hidden_states",
        "attentions",
    ),
    "SemanticSegmenterOutput": ("loss", "logits", "hidden_states", "attentions"),
    "SequenceClassifierOutput": ("loss", "logits", "hidden_states", "attentions"),
    "TokenClassifierOutput": ("loss", "logits", "hidden_states", "attentions"),
    "XVectorOutput": ("loss", "logits", "embeddings", "hidden_states", "attentions"),
}


def torch_loaded() -> bool:
    """Whether torch is imported in this process (never imports it)."""
    return "torch" in sys.modules


def output_class(name: str) -> type:
    """Transformers' output class `name` when torch is loaded, else its torch-free twin."""
    if torch_loaded():
        from transformers import modeling_outputs

        found: type = getattr(modeling_outputs, name)
        return found
    return _numpy_class(name, OUTPUT_FIELDS[name])


def graph_output_class(names: tuple[str, ...]) -> type:
    """A ModelOutput class whose fields are a graph's output names.

    For architecture-specific outputs (DETR's boxes) when the architecture's class needs torch.
    """
    return _numpy_class("ModelOutput_" + "_".join(n.replace(".", "_") for n in names), names)


@functools.cache
def _numpy_class(name: str, fields: tuple[str, ...]) -> type:
    namespace: dict[str, Any] = {"__annotations__": dict.fromkeys(fields, Any)}
    namespace.update(dict.fromkeys(fields))
    namespace["__module__"] = __name__
    cls = type(name, (ModelOutput,), namespace)
    return dataclasses.dataclass(cls)
