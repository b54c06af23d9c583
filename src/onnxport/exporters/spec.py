"""Spec stage: what the ONNX graph takes and returns, derived generically.

Inputs are the tokenizer's `model_input_names`, in the tokenizer's order, so
`session.run(None, dict(tokenizer(..., return_tensors="np")))` works; a decoder also takes
`position_ids` (when its forward does) and its key/value cache as `past_key_values.<i>.key/value`.
Outputs and their dynamic axes are found by running the model at two example shapes whose
axis sizes all differ: a dimension that follows an input axis is named after it. A decoder's
cache layout (heads, head size, which axis grows) is read off the cache its own prefill returns.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from onnxport.errors import SpecError, UnsupportedCacheError
from onnxport.exporters import modality
from onnxport.exporters.adapters import ADAPTERS, ExportAdapter
from onnxport.exporters.dummy import (
    AUDIO,
    BATCH,
    CHOICES,
    CROSS,
    DECODER,
    ENCODER,
    FRAMES,
    HEIGHT,
    IMAGE_BATCH,
    IMAGE_TOKENS,
    PAST,
    PATCHES,
    SEQUENCE,
    TOTAL,
    WIDTH,
    InputShape,
    Template,
    axis_sizes,
    input_axes,
    make_inputs,
    model_dtype,
    probe_shape,
    trace_shape,
)
from onnxport.tasks import (
    Task,
    check_task_for,
    get_task,
    infer_task,
    resolve_task,
    tokenizer_input_names,
)

DEFAULT_ATOL = 1e-4
# Outputs that are on request only (or training only): never part of the exported graph.
_SKIPPED_OUTPUTS = frozenset({"loss", "hidden_states", "attentions", "past_key_values", "cache"})
_CACHE_OUTPUTS = ("cache", "past_key_values")

Axes = dict[int, str]


@dataclass(frozen=True)
class DecoderCache:
    """How a decoder's key/value cache crosses the graph boundary, one key and value per layer.

    `argument` is the name `forward` takes the cache under (`cache` in Transformers 5.24,
    `past_key_values` before). `max_total_length` is set for sliding-window models: past a
    window the cache is cropped, a path the graph does not follow (checked: ONNX Runtime fails
    with an out-of-range gather), so the export is exact up to this many tokens only.
    `cross_layers` counts an encoder-decoder's cross-attention layers, whose keys and values
    (computed once from the encoder's states) cross the boundary as
    `past_key_values.<i>.encoder.key/value` after the self-attention cache.
    """

    num_layers: int
    argument: str
    max_total_length: int | None = None
    cross_layers: int = 0

    def past_names(self) -> list[str]:
        """Graph inputs holding the cache, in order: self-attention, then cross-attention."""
        return [f"past_key_values.{name}" for name in self._names()]

    def present_names(self) -> list[str]:
        """Graph outputs holding the updated cache, in the same order."""
        return [f"present.{name}" for name in self._names()]

    def cross_past_names(self) -> list[str]:
        """The cross-attention part of `past_names`."""
        return self.past_names()[2 * self.num_layers :]

    def cross_present_names(self) -> list[str]:
        """The cross-attention part of `present_names`."""
        return self.present_names()[2 * self.num_layers :]

    def _names(self) -> list[str]:
        kinds = ("key", "value")
        own = [f"{i}.{kv}" for i in range(self.num_layers) for kv in kinds]
        return own + [f"{i}.encoder.{kv}" for i in range(self.cross_layers) for kv in kinds]


@dataclass(frozen=True)
class ExportSpec:
    """The export configuration: ordered inputs and outputs, each mapped to its dynamic axes.

    `token_axes` names, per output, the axis that runs over tokens (validation leaves out
    padded positions there); `input_templates` give full shapes of inputs with fixed dims.

    >>> spec = get_onnx_config(DistilBertConfig())  # doctest: +SKIP
    >>> list(spec.outputs)  # doctest: +SKIP
    ['last_hidden_state']
    """

    model_type: str
    task: str
    inputs: Mapping[str, Axes]
    outputs: Mapping[str, Axes]
    atol: float = DEFAULT_ATOL
    token_axes: Mapping[str, int] = field(default_factory=dict)
    ignored_inputs: tuple[str, ...] = field(default=())
    input_templates: Mapping[str, Template] = field(default_factory=dict)
    decoder: DecoderCache | None = None
    dtype: str = "float32"  # the model's floating-point inputs (images, audio, caches) use it

    @property
    def input_names(self) -> list[str]:
        """Input names in graph order."""
        return list(self.inputs)

    @property
    def output_names(self) -> list[str]:
        """Output names in graph order."""
        return list(self.outputs)

    @property
    def per_token_outputs(self) -> tuple[str, ...]:
        """Outputs with a token axis."""
        return tuple(self.token_axes)

    def model_kwargs(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The plain tensor inputs the PyTorch model takes (no ignored ones, no cache)."""
        past = set(self.decoder.past_names()) if self.decoder else set()
        return {k: v for k, v in inputs.items() if k not in self.ignored_inputs and k not in past}


def forward_parameters(model: torch.nn.Module) -> list[str]:
    """Names the model's `forward` takes explicitly."""
    return list(inspect.signature(model.forward).parameters)


def required_parameters(model: torch.nn.Module) -> set[str]:
    """Names `forward` cannot run without (no default value)."""
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {
        name
        for name, parameter in inspect.signature(model.forward).parameters.items()
        if parameter.kind in plain and parameter.default is inspect.Parameter.empty
    }


def default_input_names(
    model: torch.nn.Module, config: Any, tokenizer: Any | None, *, with_past: bool = False
) -> list[str]:
    """The tokenizer's input names, in its order: the graph takes everything it returns.

    An output the model does not take (DistilBERT's tokenizer is BERT's and returns
    token_type_ids) becomes an ignored graph input, so the tokenizer's output always feeds a
    plain InferenceSession as is. A decoder also takes position_ids where its forward does:
    with left padding the positions cannot be inferred from the step alone.
    """
    accepted = set(forward_parameters(model))
    needs_text = "input_ids" in required_parameters(model)  # grounding models: image + text
    if modality.modality(model) != modality.TEXT and not with_past and not needs_text:
        return modality.input_names(model, config, accepted)
    names = tokenizer_input_names(config, tokenizer, accepted=accepted)
    if (
        not with_past
        and "pixel_values" in accepted
        and "pixel_values" not in names
        and modality.has_image_processor(config.model_type)
        and not (_splices_images(config) and "pixel_values" not in required_parameters(model))
    ):
        names.append("pixel_values")  # a dual encoder (CLIP, SigLIP): text and images
    if "bbox" in accepted and "bbox" not in names:
        names.append("bbox")  # document models (LayoutLM): a box per token
    if "input_ids" not in accepted or "input_ids" not in names:
        raise SpecError(
            f"'{config.model_type}' does not take input_ids from its tokenizer "
            f"(forward takes: {', '.join(sorted(accepted))}); the text path cannot export it. "
            "Register an adapter that declares its inputs."
        )
    if not with_past and "decoder_input_ids" not in names and modality.takes_decoder_tokens(model):
        # A bare encoder-decoder (T5Model, BartModel): its decoder's tokens are an input of
        # their own length. T5 cannot run without them; BART-style models would shift
        # input_ids into them, a path that breaks at batch 1 in ONNX Runtime for mBART/PLBart.
        names.append("decoder_input_ids")
    if with_past:
        if "attention_mask" not in names:
            names.append("attention_mask")
        if "position_ids" in accepted and "position_ids" not in names:
            names.append("position_ids")
    return names


def _width(config: Any) -> int | None:
    return getattr(config, "d_model", None) or getattr(config, "hidden_size", None)


def _splices_images(config: Any) -> bool:
    """Whether the model puts image features in place of image tokens (a vision-language model).

    Its text tasks export the text path (images optional in forward stay out): a prompt with
    images needs its placeholder tokens expanded by the processor, and image-text-to-text
    exports that path as the graphs generation needs.
    """
    return any(
        getattr(config, k, None) is not None for k in ("image_token_id", "image_token_index")
    )


def _cache_argument(model: torch.nn.Module) -> str:
    accepted = forward_parameters(model)
    for name in _CACHE_OUTPUTS:
        if name in accepted:
            return name
    raise UnsupportedCacheError(
        f"'{model.config.model_type}' takes no key/value cache in forward; export it as "  # type: ignore[union-attr]
        "text-generation without past is not supported yet."
    )


def build_cache(config: Any, tensors: list[torch.Tensor], cross_layers: int = 0) -> Any:
    """A transformers DynamicCache holding `tensors` (key, value per layer).

    With `cross_layers`, the last 2 x cross_layers tensors are cross-attention keys and
    values, and the result is an EncoderDecoderCache. Empty ones leave the model to compute
    them from the encoder's states; filled ones it reuses (its `is_updated` flags).
    """
    from transformers import DynamicCache, EncoderDecoderCache

    if cross_layers:
        own, cross = tensors[: -2 * cross_layers], tensors[-2 * cross_layers :]
        cross_cache = DynamicCache()
        if cross[0].shape[2]:
            cross_cache = build_cache(config, cross)
        return EncoderDecoderCache(build_cache(config, own), cross_cache)
    cache = DynamicCache(config=config)
    if len(cache.layers) not in (0, len(tensors) // 2):
        # The config counts another stack's layers (T5's num_layers is the encoder's);
        # without a config the cache grows one layer per update.
        cache = DynamicCache()
    for layer in range(len(tensors) // 2):
        cache.update(tensors[2 * layer], tensors[2 * layer + 1], layer)
    return cache


def flatten_outputs(
    output: Any, *, with_cache: bool = False, with_cross: bool = False
) -> dict[str, torch.Tensor]:
    """Tensor fields of a transformers ModelOutput, minus on-request ones.

    With `with_cache`, a decoder's new cache becomes `present.<i>.key/value`, and with
    `with_cross` its cross-attention cache `present.<i>.encoder.key/value`.
    """
    items = output.items() if hasattr(output, "items") else enumerate(output)
    items = list(items)
    result = {
        str(key): value
        for key, value in items
        if isinstance(value, torch.Tensor) and key not in _SKIPPED_OUTPUTS
    }
    if not result:  # every output a tuple of tensors (MGP-STR's three logits): one per item
        result = {
            f"{key}.{index}": item
            for key, value in items
            if isinstance(value, (tuple, list)) and key not in _SKIPPED_OUTPUTS
            for index, item in enumerate(value)
            if isinstance(item, torch.Tensor)
        }
    if with_cache:
        own, cross = _cache_layers(_cache_of(output))
        for index, layer in enumerate(own):
            result[f"present.{index}.key"] = layer.keys
            result[f"present.{index}.value"] = layer.values
        for index, layer in enumerate(cross if with_cross else []):
            result[f"present.{index}.encoder.key"] = layer.keys
            result[f"present.{index}.encoder.value"] = layer.values
    return result


def _cache_of(output: Any) -> Any:
    """The cache a model returned, under either name transformers has used for it."""
    return next((output[k] for k in _CACHE_OUTPUTS if output.get(k) is not None), None)


def _cache_layers(cache: Any) -> tuple[list[Any], list[Any]]:
    """The self-attention layers of a cache, and its cross-attention layers (if any)."""
    cross_cache = getattr(cache, "cross_attention_cache", None)
    if cross_cache is not None:
        cross = list(getattr(cross_cache, "layers", None) or [])
        return _plain_layers(cache.self_attention_cache), cross
    return _plain_layers(cache), []


def _plain_layers(cache: Any) -> list[Any]:
    layers = list(getattr(cache, "layers", None) or [])
    if not layers or not all(isinstance(getattr(x, "keys", None), torch.Tensor) for x in layers):
        raise UnsupportedCacheError(
            f"The model's cache ({type(cache).__name__}) is not a plain key/value cache per "
            "layer (recurrent or linear-attention state?); text-generation export does not "
            "support it yet."
        )
    return layers


def run_reference(
    model: torch.nn.Module, spec: ExportSpec, inputs: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Run the PyTorch model on graph-style inputs; returns outputs under graph names.

    The capture wrapper calls this too, so the exported graph computes exactly what is
    validated against.
    """
    kwargs: dict[str, Any] = spec.model_kwargs(inputs)
    if spec.decoder is not None:
        past = [inputs[name] for name in spec.decoder.past_names()]
        kwargs[spec.decoder.argument] = build_cache(model.config, past, spec.decoder.cross_layers)
        kwargs["use_cache"] = True
    elif "use_cache" in forward_parameters(model):
        # No graph output holds a cache here; hybrid models cannot even build theirs without
        # a generation step.
        kwargs["use_cache"] = False
    output = model(**kwargs, return_dict=True)
    decoder = spec.decoder
    outputs = flatten_outputs(
        output, with_cache=decoder is not None, with_cross=bool(decoder and decoder.cross_layers)
    )
    if decoder is not None and decoder.cross_layers:
        # A step that reuses the cross-attention cache returns it empty: the caller keeps the
        # first step's (as transformers.js does), and the graph copies nothing per step.
        for name in decoder.cross_present_names():
            if inputs[name.replace("present.", "past_key_values.")].shape[2] > 0:
                outputs[name] = outputs[name][:, :, :0]
    return outputs


def _probe_cache(
    model: torch.nn.Module,
    inputs: dict[str, Axes],
    ignored: tuple[str, ...],
    templates: dict[str, Template],
    argument: str,
) -> tuple[DecoderCache, dict[str, Template]]:
    """Run a prefill and read the cache layout: which axes are batch and past, which fixed."""
    config: Any = model.config
    batch, length = 2, 5
    shape = InputShape(batch, length, past_length=0, encoder_length=7)
    names = [name for name in inputs if name not in ignored]
    values = make_inputs(names, inputs, config, shape, templates=templates, left_padding=True)
    try:
        with torch.no_grad():
            output = model(**_on_device_of(model, values), use_cache=True, return_dict=True)
    except Exception as err:
        raise UnsupportedCacheError(
            f"PyTorch prefill of '{config.model_type}' failed: {err}"
        ) from err
    cache = _cache_of(output)
    if cache is None:
        hint = ""
        if getattr(config, "is_decoder", None) is False:
            hint = " An encoder architecture used as a decoder needs is_decoder=True in its config."
        raise UnsupportedCacheError(
            f"'{config.model_type}' returned no cache with use_cache=True.{hint}"
        )
    layers, cross = _cache_layers(cache)
    window: Any = getattr(config, "sliding_window", None)
    sliding = window is not None and any(getattr(x, "is_sliding", False) for x in layers)
    max_total = int(window) - 1 if sliding else None
    if max_total is not None and max_total <= 2 * length:
        raise SpecError(
            f"'{config.model_type}' uses sliding-window attention with a window of {window} "
            "tokens, too short to export and validate; onnxport needs a window above "
            f"{2 * length + 1}."
        )
    # Only a cross-attention cache of (batch, heads, encoder positions, head size) per layer is
    # taken in; any other layout keeps its keys and values recomputed at every step.
    # A decoder built from an encoder (BERT-like, is_decoder=True) returns an
    # EncoderDecoderCache even without cross-attention: no encoder states, no cross cache.
    if "encoder_hidden_states" not in values:
        cross = []
    encoder_length = int(values["encoder_hidden_states"].shape[1]) if cross else 0
    if not all(
        isinstance(getattr(x, "keys", None), torch.Tensor)
        and x.keys.dim() == 4
        and tuple(x.keys.shape[::2]) == (batch, encoder_length)
        for x in cross
    ):
        cross = []
    decoder = DecoderCache(
        num_layers=len(layers), argument=argument, max_total_length=max_total,
        cross_layers=len(cross),
    )  # fmt: skip
    past: dict[str, Template] = {}
    tensors = [t for x in layers + cross for t in (x.keys, x.values)]
    own = set(decoder.past_names()) - set(decoder.cross_past_names())
    for name, tensor in zip(decoder.past_names(), tensors, strict=True):
        expected = length if name in own else encoder_length
        if tensor.dim() != 4 or tensor.shape[0] != batch or tensor.shape[2] != expected:
            raise UnsupportedCacheError(
                f"'{config.model_type}' keeps its cache as {tuple(tensor.shape)}, not (batch, "
                "heads, sequence, head size); text-generation export does not support it yet."
            )
        axis = PAST if name in own else CROSS
        past[name] = (BATCH, int(tensor.shape[1]), axis, int(tensor.shape[3]))
    return decoder, past


def derive_spec(
    model: torch.nn.Module,
    task: Task,
    input_names: list[str],
    *,
    adapter: ExportAdapter | None = None,
    traced: InputShape | None = None,
    fixed_image_size: bool = False,
) -> ExportSpec:
    """Run `model` at two shapes and read its outputs and their dynamic axes.

    `fixed_image_size` keeps images at the config's size even when the model runs at others.
    """
    config: Any = model.config
    adapter = adapter or ADAPTERS.get(config.model_type)
    traced = traced or trace_shape(with_past=task.with_past)
    dtype = str(model_dtype(model)).removeprefix("torch.")
    multiple_choice = task.name == "multiple-choice"
    inputs = {
        name: input_axes(name, multiple_choice, with_past=task.with_past) for name in input_names
    }
    accepted = set(forward_parameters(model))
    ignored = tuple(name for name in input_names if name not in accepted)
    decoder = None
    # Parts with fixed-size inputs (a speech encoder's frames) declare their templates.
    declared: dict[str, Template] = dict(getattr(model, "input_templates", {}))
    derived = [n for n in input_names if n in accepted and n not in declared]
    templates = modality.input_templates(model, config, derived, any_size=not fixed_image_size)
    templates.update(declared)
    for name, template in templates.items():
        if name in inputs:
            inputs[name] = {i: axis for i, axis in enumerate(template) if isinstance(axis, str)}
    if "encoder_hidden_states" in inputs and "encoder_hidden_states" not in declared:
        # An EncoderDecoderModel's config holds no width: its encoder's states are the input.
        encoder = getattr(config, "encoder", None)
        hidden = _width(config) or _width(encoder) or _width(getattr(encoder, "text_config", None))
        if not hidden:
            raise SpecError(f"'{config.model_type}' names no width for its encoder's states.")
        templates["encoder_hidden_states"] = (BATCH, ENCODER, int(hidden))
    if task.with_past:
        argument = _cache_argument(model)
        decoder, past_templates = _probe_cache(model, inputs, ignored, templates, argument)
        templates.update(past_templates)
        inputs.update({name: {0: BATCH, 2: PAST} for name in decoder.past_names()})
        # Traced filled (the step after the first): as long as the encoder's states.
        inputs.update({name: {0: BATCH, 2: ENCODER} for name in decoder.cross_past_names()})
    draft = ExportSpec(
        model_type=config.model_type, task=task.name, inputs=inputs, outputs={},
        ignored_inputs=ignored, input_templates=templates, decoder=decoder, dtype=dtype,
    )  # fmt: skip
    probe = probe_shape(traced)
    for shape in (traced, probe):
        sizes = [shape.batch_size, shape.sequence_length, shape.num_choices]
        if shape.past_length:
            sizes += [shape.past_length, shape.past_length + shape.sequence_length]
        if shape.encoder_length:
            sizes.append(shape.encoder_length)
        if DECODER in {axis for axes in inputs.values() for axis in axes.values()}:
            sizes.append(shape.size_of(DECODER))
        if len(set(sizes)) != len(sizes):
            raise SpecError(f"Example axis sizes must differ pairwise: {shape}")
    first = _run(model, draft, adapter, traced)
    second = _run(model, draft, adapter, probe)
    outputs: dict[str, Axes] = {}
    token_axes: dict[str, int] = {}
    image_axes = [IMAGE_BATCH, HEIGHT, WIDTH, IMAGE_TOKENS, PATCHES]
    traced_sizes, probe_sizes = axis_sizes(traced, config), axis_sizes(probe, config)
    axis_names = (
        [BATCH, SEQUENCE, TOTAL, PAST, ENCODER]
        if task.with_past
        else [BATCH, SEQUENCE, DECODER, CHOICES, AUDIO, FRAMES, *image_axes]
    )
    for name, tensor in first.items():
        if name in inputs:
            continue  # an input handed back (Grounding DINO returns input_ids): the caller has it
        other = second.get(name)
        if other is None or other.dim() != tensor.dim():
            raise SpecError(f"Output '{name}' changes rank with the input shape.")
        axes: Axes = {}
        for dim, (size_a, size_b) in enumerate(zip(tensor.shape, other.shape, strict=True)):
            for axis in axis_names:
                if size_a == traced_sizes[axis] and size_b == probe_sizes[axis]:
                    axes[dim] = axis
                    break
        outputs[name] = axes
        if axes.get(0) == BATCH and CHOICES not in axes.values():
            token_axis = next((d for d, a in axes.items() if a in (SEQUENCE, TOTAL)), None)
            if token_axis is not None:
                token_axes[name] = token_axis
    if not outputs:
        raise SpecError(f"'{config.model_type}' returned no tensor outputs for {task.name}.")
    return ExportSpec(
        model_type=config.model_type,
        task=task.name,
        inputs=inputs,
        outputs=outputs,
        atol=adapter.atol or DEFAULT_ATOL,
        token_axes=token_axes,
        ignored_inputs=ignored,
        input_templates=templates,
        decoder=decoder,
        dtype=dtype,
    )


def example_inputs(
    spec: ExportSpec, config: Any, adapter: ExportAdapter, shape: InputShape, *, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Example inputs at `shape`: the adapter's if it makes them, else the generic ones."""
    names = spec.input_names
    axes = dict(spec.inputs)
    custom = adapter.dummy_inputs(config, spec.task, names, axes, shape)
    if custom is None:
        custom = make_inputs(
            names, axes, config, shape, seed=seed, templates=dict(spec.input_templates),
            left_padding=spec.decoder is not None,
        )  # fmt: skip
    dtype = getattr(torch, spec.dtype)
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in custom.items()}


def _run(
    model: torch.nn.Module, spec: ExportSpec, adapter: ExportAdapter, shape: InputShape
) -> dict[str, torch.Tensor]:
    config: Any = model.config
    values = example_inputs(spec, config, adapter, shape)
    try:
        with torch.no_grad():
            return run_reference(model, spec, _on_device_of(model, values))
    except SpecError:
        raise
    except Exception as err:
        raise SpecError(
            f"PyTorch forward of '{config.model_type}' failed on example inputs "
            f"({', '.join(values)} at {shape.label()}): {err}"
        ) from err


# Masks only zero out values; on the meta device their data-dependent checks (`mask.all()`)
# cannot run, and the output shapes do not depend on them.
_MASKS = frozenset({"attention_mask", "decoder_attention_mask", "encoder_attention_mask"})


def _on_device_of(model: torch.nn.Module, values: dict[str, Any]) -> dict[str, Any]:
    """Inputs for a model on the meta device (shapes only: masks left out); else unchanged."""
    parameter = next(model.parameters(), None)
    if parameter is None or parameter.device.type != "meta":
        return values
    return {
        k: v.to("meta") if isinstance(v, torch.Tensor) else v
        for k, v in values.items()
        if k not in _MASKS
    }


def _model_as_configured(config: Any, task: Task) -> torch.nn.Module:
    """The task's model for `config` at its real size, on the meta device: no weights exist.

    Running it computes shapes only, which is all a spec reads, so an 8-layer Llama is
    described with its 8 layers of cache and its real head sizes without allocating it.
    """
    config = copy.deepcopy(config)
    causal = task.with_past and not task.encoder_decoder
    if causal and getattr(config, "is_decoder", None) is False:
        config.is_decoder = True  # an encoder architecture's causal-LM head, as saved for it
    head_class = task.model_classes().get(config.model_type)
    if head_class is not None:
        config.architectures = [head_class]  # picks between several classes of one type
    with torch.device("meta"):
        model: torch.nn.Module = task.auto_model_class().from_config(config)
    return model.eval()


def get_onnx_config(
    config_or_model: Any,
    task: str | None = None,
    *,
    tokenizer: Any | None = None,
) -> ExportSpec:
    """The export configuration of an architecture and task, as onnxport would export it.

    `config_or_model` is a transformers config, a model, or a model type name. Given a config,
    the model is built as configured but on the meta device (no weights are allocated) and
    run for shapes only, so the spec lists every layer's cache at the real head sizes.

    >>> from transformers import DistilBertConfig
    >>> list(get_onnx_config(DistilBertConfig()).outputs)
    ['last_hidden_state']
    """
    if isinstance(config_or_model, str):
        from transformers import AutoConfig

        config_or_model = AutoConfig.for_model(config_or_model)
    config: Any = (
        config_or_model.config if isinstance(config_or_model, torch.nn.Module) else config_or_model
    )
    task_obj = resolve_task(get_task(task), config.model_type) if task else infer_task(config)
    check_task_for(task_obj, config.model_type)
    if isinstance(config_or_model, torch.nn.Module):
        model = config_or_model
    else:
        model = _model_as_configured(config, task_obj)
    adapter = ADAPTERS.get(config.model_type)
    default = default_input_names(model, config, tokenizer, with_past=task_obj.with_past)
    names = adapter.input_names(config, task_obj.name, default)
    return derive_spec(model, task_obj, names, adapter=adapter)
