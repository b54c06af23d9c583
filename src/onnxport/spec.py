"""Spec stage: what the ONNX graph takes and returns, derived generically.

Inputs are the tokenizer's `model_input_names` that the model's `forward` accepts, in the
tokenizer's order, so `session.run(None, dict(tokenizer(..., return_tensors="np")))` works.
Outputs and their dynamic axes are found by running the model at two example shapes whose
axis sizes all differ: a dimension that follows an input axis is named after it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from onnxport.adapters import ADAPTERS, ExportAdapter
from onnxport.dummy import CHOICES, InputShape, input_axes, make_inputs, trace_shape
from onnxport.errors import SpecError
from onnxport.tasks import Task, check_task_for, get_task, infer_task

DEFAULT_ATOL = 1e-4
# Outputs that are on request only (or training only): never part of the exported graph.
_SKIPPED_OUTPUTS = frozenset({"loss", "hidden_states", "attentions", "past_key_values", "cache"})
_FALLBACK_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]

Axes = dict[int, str]


@dataclass(frozen=True)
class ExportSpec:
    """The export configuration: ordered inputs and outputs, each mapped to its dynamic axes.

    >>> spec = get_onnx_config(DistilBertConfig())  # doctest: +SKIP
    >>> list(spec.outputs)  # doctest: +SKIP
    ['last_hidden_state']
    """

    model_type: str
    task: str
    inputs: Mapping[str, Axes]
    outputs: Mapping[str, Axes]
    atol: float = DEFAULT_ATOL
    per_token_outputs: tuple[str, ...] = field(default=())
    ignored_inputs: tuple[str, ...] = field(default=())

    def model_kwargs(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inputs the PyTorch model takes (graph inputs minus `ignored_inputs`)."""
        return {k: v for k, v in inputs.items() if k not in self.ignored_inputs}

    @property
    def input_names(self) -> list[str]:
        """Input names in graph order."""
        return list(self.inputs)

    @property
    def output_names(self) -> list[str]:
        """Output names in graph order."""
        return list(self.outputs)


def tokenizer_input_names(config: Any, tokenizer: Any | None) -> list[str]:
    """`model_input_names` of the given tokenizer, else of the architecture's tokenizer class."""
    if tokenizer is not None and getattr(tokenizer, "model_input_names", None):
        return list(tokenizer.model_input_names)
    from transformers.models.auto.tokenization_auto import (
        TOKENIZER_MAPPING_NAMES,
        tokenizer_class_from_name,
    )

    class_name = TOKENIZER_MAPPING_NAMES.get(config.model_type)
    if isinstance(class_name, (tuple, list)):
        class_name = next((name for name in class_name if name), None)
    tokenizer_class = tokenizer_class_from_name(class_name) if class_name else None
    names = getattr(tokenizer_class, "model_input_names", None)
    return list(names) if names else list(_FALLBACK_INPUTS)


def forward_parameters(model: torch.nn.Module) -> list[str]:
    """Names the model's `forward` takes explicitly."""
    return list(inspect.signature(model.forward).parameters)


def default_input_names(model: torch.nn.Module, config: Any, tokenizer: Any | None) -> list[str]:
    """The tokenizer's input names, in its order: the graph takes everything it returns.

    An output the model does not take (DistilBERT's tokenizer is BERT's and returns
    token_type_ids) becomes an ignored graph input, so the tokenizer's output always feeds a
    plain InferenceSession as is.
    """
    accepted = set(forward_parameters(model))
    names = tokenizer_input_names(config, tokenizer)
    if "input_ids" not in accepted or "input_ids" not in names:
        raise SpecError(
            f"'{config.model_type}' does not take input_ids from its tokenizer "
            f"(forward takes: {', '.join(sorted(accepted))}); the text path cannot export it. "
            "Register an adapter that declares its inputs."
        )
    return names


def derive_spec(
    model: torch.nn.Module,
    task: Task,
    input_names: list[str],
    *,
    adapter: ExportAdapter | None = None,
    traced: InputShape | None = None,
) -> ExportSpec:
    """Run `model` at two shapes and read its outputs and their dynamic axes."""
    config: Any = model.config
    adapter = adapter or ADAPTERS.get(config.model_type)
    traced = traced or trace_shape()
    multiple_choice = task.name == "multiple-choice"
    inputs = {name: input_axes(name, multiple_choice) for name in input_names}
    accepted = set(forward_parameters(model))
    ignored = tuple(name for name in input_names if name not in accepted)
    probe = InputShape(traced.batch_size + 1, traced.sequence_length + 3, traced.num_choices + 2)
    for shape in (traced, probe):
        if len({shape.batch_size, shape.sequence_length, shape.num_choices}) != 3:
            raise SpecError(f"Example axis sizes must differ pairwise: {shape}")
    first = _run(model, task, config, adapter, ignored, inputs, traced)
    second = _run(model, task, config, adapter, ignored, inputs, probe)
    outputs: dict[str, Axes] = {}
    per_token: list[str] = []
    axis_names = sorted({axis for axes in inputs.values() for axis in axes.values()})
    for name, tensor in first.items():
        other = second.get(name)
        if other is None or other.dim() != tensor.dim():
            raise SpecError(f"Output '{name}' changes rank with the input shape.")
        axes: Axes = {}
        for dim, (size_a, size_b) in enumerate(zip(tensor.shape, other.shape, strict=True)):
            for axis in axis_names:
                if size_a == traced.size_of(axis) and size_b == probe.size_of(axis):
                    axes[dim] = axis
                    break
        outputs[name] = axes
        token_axes = [axes.get(0), axes.get(1)]
        if multiple_choice:
            token_axes = [axes.get(0), axes.get(2) if axes.get(1) == CHOICES else None]
        if token_axes == ["batch_size", "sequence_length"]:
            per_token.append(name)
    if not outputs:
        raise SpecError(f"'{config.model_type}' returned no tensor outputs for {task.name}.")
    return ExportSpec(
        model_type=config.model_type,
        task=task.name,
        inputs=inputs,
        outputs=outputs,
        atol=adapter.atol or DEFAULT_ATOL,
        per_token_outputs=tuple(per_token),
        ignored_inputs=ignored,
    )


def example_inputs(
    spec_inputs: Mapping[str, Axes],
    config: Any,
    task: str,
    adapter: ExportAdapter,
    shape: InputShape,
    *,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Example inputs at `shape`: the adapter's if it makes them, else the generic ones."""
    names = list(spec_inputs)
    axes = dict(spec_inputs)
    custom = adapter.dummy_inputs(config, task, names, axes, shape)
    if custom is not None:
        return custom
    return make_inputs(names, axes, config, shape, seed=seed)


def flatten_outputs(output: Any) -> dict[str, torch.Tensor]:
    """Tensor fields of a transformers ModelOutput (or dict), minus on-request outputs."""
    items = output.items() if hasattr(output, "items") else enumerate(output)
    return {
        str(key): value
        for key, value in items
        if isinstance(value, torch.Tensor) and key not in _SKIPPED_OUTPUTS
    }


def _run(
    model: torch.nn.Module,
    task: Task,
    config: Any,
    adapter: ExportAdapter,
    ignored: tuple[str, ...],
    axes: dict[str, Axes],
    shape: InputShape,
) -> dict[str, torch.Tensor]:
    values = example_inputs(axes, config, task.name, adapter, shape)
    names = [name for name in values if name not in ignored]
    try:
        with torch.no_grad():
            output = model(**{k: values[k] for k in names}, return_dict=True)
    except Exception as err:
        raise SpecError(
            f"PyTorch forward of '{config.model_type}' failed on example inputs "
            f"({', '.join(names)} at {shape.label()}): {err}"
        ) from err
    return flatten_outputs(output)


def get_onnx_config(
    config_or_model: Any,
    task: str | None = None,
    *,
    tokenizer: Any | None = None,
) -> ExportSpec:
    """The export configuration of an architecture and task, as onnxport would export it.

    `config_or_model` is a transformers config, a model, or a model type name. Given only a
    config, a tiny random copy of the model is built to read the outputs (names and dynamic
    axes do not depend on layer sizes).

    >>> from transformers import DistilBertConfig
    >>> list(get_onnx_config(DistilBertConfig()).outputs)
    ['last_hidden_state']
    """
    from onnxport.testing import tiny_model

    if isinstance(config_or_model, str):
        from transformers import AutoConfig

        config_or_model = AutoConfig.for_model(config_or_model)
    config: Any = (
        config_or_model.config if isinstance(config_or_model, torch.nn.Module) else config_or_model
    )
    task_obj = get_task(task) if task else infer_task(config)
    check_task_for(task_obj, config.model_type)
    if isinstance(config_or_model, torch.nn.Module):
        model = config_or_model
    else:
        model = tiny_model(config, task_obj.name)
    adapter = ADAPTERS.get(config.model_type)
    names = adapter.input_names(
        config, task_obj.name, default_input_names(model, config, tokenizer)
    )
    return derive_spec(model, task_obj, names, adapter=adapter)
