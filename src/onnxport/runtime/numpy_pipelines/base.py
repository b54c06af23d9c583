"""`NumpyPipeline`: transformers' pipeline protocol without torch.

transformers' `Pipeline.__init__` places the model on a torch device and its `__call__` batches
through a torch `DataLoader`, so neither runs without torch. `NumpyPipeline` is a `Pipeline`
whose `__init__`, `__call__` and `forward` need only numpy. Each task class puts it *below*
transformers' own task pipeline in the method order::

    class NumpyTextClassificationPipeline(TextClassificationPipeline, NumpyPipeline): ...

so the task's parameter handling (`_sanitize_parameters`), its `__call__` wrapper and its
torch-free helpers run unchanged, and only the methods that touch torch are rewritten there.
(mypy flags those class lines, `type: ignore[misc]`: the task's `__call__` signature differs
from ours, which it wraps.)
Batches are padded as transformers' `pad_collate_fn` pads them and split as its
`PipelineIterator` splits them, so `batch_size=` gives transformers' answers too.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import numpy as np
from transformers.pipelines.base import ChunkPipeline, Pipeline
from transformers.pipelines.text_classification import sigmoid, softmax
from transformers.utils import ModelOutput

logger = logging.getLogger(__name__)

# (preprocess, forward, postprocess) keyword arguments, as `_sanitize_parameters` returns them.
Params = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]
# Inputs that are stacked, never padded, in a batch (transformers' `_pad` does the same).
_STACKED = frozenset({"pixel_values", "image"})
# Outputs holding one array per layer.
_PER_LAYER = frozenset({"hidden_states", "attentions"})


class NumpyPipeline(Pipeline):
    """A transformers `Pipeline` over an ORT model that runs on numpy arrays alone.

    Called with one input it returns one answer; with a list, a list; with a generator, an
    iterator of answers. `batch_size=` pads that many inputs into one model call.
    """

    # Whether model inputs of different inputs may share a padded batch.
    batchable: ClassVar[bool] = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any | None = None,
        *,
        image_processor: Any | None = None,
        feature_extractor: Any | None = None,
        task: str = "",
        batch_size: int | None = None,
        num_workers: int | None = None,
        binary_output: bool = False,
        **kwargs: Any,
    ) -> None:
        # Pipeline.__init__ is not called: it moves the model to a torch device, and an ORT
        # model runs wherever its session's provider runs.
        self.task = task
        self.model = model
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.image_processor = image_processor
        self.video_processor = None
        self.processor = None
        self.device = model.device
        self.binary_output = binary_output
        self.call_count = 0
        self._batch_size = batch_size
        self._num_workers = num_workers
        params = self._sanitize_parameters(**kwargs)
        self._preprocess_params, self._forward_params, self._postprocess_params = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task='{self.task}', model={self.model!r})"

    def __call__(
        self,
        inputs: Any,
        *args: Any,
        num_workers: int | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the pipeline on one input, a list of inputs, or a generator of inputs.

        `num_workers` is accepted and ignored: inputs are prepared in this process.
        """
        if args:
            logger.warning("Ignoring args: %s", args)
        params = self._merged_params(kwargs)
        size = batch_size or self._batch_size or 1
        self.call_count += 1
        if isinstance(inputs, list):
            return list(self._stream(inputs, size, params))
        if isinstance(inputs, types.GeneratorType):
            return self._stream(inputs, size, params)
        if isinstance(self, ChunkPipeline):
            return next(self._stream([inputs], size, params))
        pre, forward, post = params
        return self.postprocess(self.forward(self.preprocess(inputs, **pre), **forward), **post)

    def forward(self, model_inputs: Any, **forward_params: Any) -> Any:
        """Run the model: no device placement or `no_grad`, which ORT does not need."""
        return self._forward(model_inputs, **forward_params)

    def _merged_params(self, kwargs: dict[str, Any]) -> Params:
        """The call's parameters over those given when the pipeline was built."""
        pre, forward, post = self._sanitize_parameters(**kwargs)
        return (
            {**self._preprocess_params, **pre},
            {**self._forward_params, **forward},
            {**self._postprocess_params, **post},
        )

    def _stream(self, inputs: Iterable[Any], batch_size: int, params: Params) -> Iterator[Any]:
        """One answer per input, in order; model inputs run `batch_size` at a time."""
        pre, forward, post = params
        chunked = isinstance(self, ChunkPipeline)
        size = batch_size if self.batchable else 1
        collected: list[Any] = []
        for batch in _batches(self._model_inputs(inputs, pre, chunked), size):
            outputs = self._forward_batch([item for item, _ in batch], forward, size)
            for (_, last), output in zip(batch, outputs, strict=True):
                collected.append(output)
                if last:
                    answer: Any = collected if chunked else collected[0]
                    yield self.postprocess(answer, **post)
                    collected = []

    def _model_inputs(
        self, inputs: Iterable[Any], pre: dict[str, Any], chunked: bool
    ) -> Iterator[tuple[Any, bool]]:
        """(model inputs, whether they are the input's last) for every input in turn."""
        for item in inputs:
            if not chunked:
                yield self.preprocess(item, **pre), True
                continue
            chunks = list(self.preprocess(item, **pre))
            for index, chunk in enumerate(chunks):
                yield chunk, index == len(chunks) - 1

    def _forward_batch(
        self, items: list[Any], forward: dict[str, Any], batch_size: int
    ) -> list[Any]:
        if batch_size == 1:
            return [self.forward(items[0], **forward)]
        outputs = self.forward(self._collate(items), **forward)
        return [unbatch(outputs, index) for index in range(len(items))]

    def _collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Pad model inputs into one batch, as transformers' `pad_collate_fn` does."""
        keys = list(items[0])
        if any(set(item) != set(keys) for item in items):
            raise ValueError("The elements of the batch contain different keys; cannot batch them.")
        side, pad_values = self._padding()
        return {
            key: pad_stack(key, [item[key] for item in items], pad_values.get(key, 0), side)
            for key in keys
        }

    def _padding(self) -> tuple[str, dict[str, Any]]:
        """The padding side and the value each input is padded with (`pad_collate_fn`'s)."""
        tokenizer = self.tokenizer
        processor = self.feature_extractor or self.image_processor
        if tokenizer is not None and tokenizer.pad_token_id is None:
            raise ValueError(
                "Pipeline with tokenizer without pad_token cannot do batching. You can try to set "
                "it with `pipe.tokenizer.pad_token_id = model.config.eos_token_id`."
            )
        feature_pad = getattr(processor, "padding_value", None)
        token_pad = tokenizer.pad_token_id if tokenizer is not None else feature_pad
        side = (
            getattr(processor, "padding_side", None)
            or getattr(tokenizer, "padding_side", None)
            or "right"
        )
        values = {"input_ids": token_pad, "p_mask": 1, "special_tokens_mask": 1}
        values.update(
            dict.fromkeys(("input_values", "pixel_values", "input_features"), feature_pad)
        )
        return side, values


def pad_stack(key: str, values: list[Any], pad_value: Any, side: str) -> Any:
    """One batch from batches of one: arrays stacked or padded along axis 1, others listed."""
    first = values[0]
    if not isinstance(first, np.ndarray):
        return list(values)
    lengths = [value.shape[1] for value in values] if first.ndim >= 2 else []
    if (
        first.ndim == 1
        or key in _STACKED
        or (first.ndim == 4 and key == "input_features")
        or (first.ndim == 2 and min(lengths) == max(lengths))
    ):
        return np.concatenate(values, axis=0)
    longest = max(lengths)
    batch = np.full((len(values), longest, *first.shape[2:]), pad_value, dtype=first.dtype)
    for row, value in zip(batch, values, strict=True):
        length = value.shape[1]
        if side == "left":
            row[longest - length :] = value[0]
        else:
            row[:length] = value[0]
    return batch


def unbatch(batch: Any, index: int) -> Any:
    """Item `index` of a batch's outputs, as a batch of one (transformers' `loader_batch_item`)."""
    if isinstance(batch, np.ndarray):
        return batch[index : index + 1]
    items: dict[str, Any] = {}
    for key, value in batch.items():
        if key == "cache":
            continue
        if isinstance(value, ModelOutput):
            value = value.to_tuple()
        elif not (key in _PER_LAYER and isinstance(value, tuple)):
            items[key] = _item(value, index)
            continue
        items[key] = tuple(part[index : index + 1] for part in value)
    return type(batch)(items)


def _item(value: Any, index: int) -> Any:
    if value is None:  # optional data passed along, such as a missing offset mapping
        return None
    if isinstance(value[index], np.ndarray):
        return np.expand_dims(value[index], 0)
    return value[index]


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def classification_scores(logits: Any, config: Any, function_to_apply: Any = None) -> np.ndarray:
    """Scores from one row of logits: `function_to_apply`, else the config's default function.

    The text and image classification pipelines of transformers share this choice but apply it
    to torch tensors; here the logits are numpy (float16 exports are read as float32).
    """
    name = _function_name(function_to_apply) if function_to_apply else default_function(config)
    values = np.asarray(logits, dtype=np.float32)
    if name == "sigmoid":
        return np.asarray(sigmoid(values))
    if name == "softmax":
        return np.asarray(softmax(values))
    if name == "none":
        return values
    raise ValueError(f"Unrecognized `function_to_apply` argument: {function_to_apply}")


def default_function(config: Any) -> str:
    """What transformers applies to classification logits when no function is given."""
    if config.problem_type == "regression":
        return "none"
    if config.problem_type == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    if config.problem_type == "single_label_classification" or config.num_labels > 1:
        return "softmax"
    return _function_name(getattr(config, "function_to_apply", "none"))


def _function_name(function: Any) -> str:
    return str(getattr(function, "value", function))
