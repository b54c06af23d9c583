"""Pipelines that run without torch, with transformers' answers.

transformers' `Pipeline.__init__` needs torch, so where torch is not installed
`onnxport.pipeline()` builds these instead (and with `backend="numpy"` where it is). Each is
transformers' own task pipeline with its torch parts replaced by numpy (see `base`); question
answering follows onnxport's `qa_pipeline`. Tokenizers and image processors are called with
`return_tensors="np"`, and the ORT model runs on the arrays.

Example:
    >>> from onnxport.runtime import ORTModelForSequenceClassification
    >>> model = ORTModelForSequenceClassification.from_pretrained("out/")  # doctest: +SKIP
    >>> classify = numpy_pipeline("text-classification", model, tokenizer)  # doctest: +SKIP
    >>> classify("I love this", top_k=None)  # doctest: +SKIP
    [{'label': 'POSITIVE', 'score': 0.99}, {'label': 'NEGATIVE', 'score': 0.01}]

"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from onnxport.errors import ORTModelError

if TYPE_CHECKING:
    from onnxport.runtime.numpy_pipelines.base import NumpyPipeline

# pipeline task -> (module, class); modules load on first use: they import transformers.pipelines.
_CLASSES: dict[str, tuple[str, str]] = {
    "feature-extraction": ("text", "NumpyFeatureExtractionPipeline"),
    "fill-mask": ("text", "NumpyFillMaskPipeline"),
    "image-classification": ("vision", "NumpyImageClassificationPipeline"),
    "question-answering": ("qa", "NumpyQuestionAnsweringPipeline"),
    "text-classification": ("text", "NumpyTextClassificationPipeline"),
    "text-to-audio": ("audio", "NumpyTextToAudioPipeline"),
    "token-classification": ("tokens", "NumpyTokenClassificationPipeline"),
    "zero-shot-classification": ("text", "NumpyZeroShotClassificationPipeline"),
}
NUMPY_PIPELINE_TASKS = tuple(_CLASSES)
_IMAGE_TASKS = frozenset({"image-classification"})


def pipeline_class(task: str) -> type[NumpyPipeline]:
    """The torch-free pipeline class for `task` (one of `NUMPY_PIPELINE_TASKS`)."""
    if task not in _CLASSES:
        raise ORTModelError(
            f"No torch-free pipeline for '{task}'; these run without torch: "
            f"{', '.join(NUMPY_PIPELINE_TASKS)}."
        )
    module, name = _CLASSES[task]
    found: type[NumpyPipeline] = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return found


def numpy_pipeline(
    task: str,
    model: Any,
    tokenizer: Any | None = None,
    *,
    image_processor: Any | None = None,
    **kwargs: Any,
) -> NumpyPipeline:
    """Build the torch-free pipeline for `task` over an ORT model.

    Text tasks need `tokenizer`, image classification `image_processor`; other keyword
    arguments are the pipeline's own (`top_k=`, `aggregation_strategy=`, `batch_size=`...).
    """
    cls = pipeline_class(task)
    needed = "image_processor" if task in _IMAGE_TASKS else "tokenizer"
    if (image_processor if task in _IMAGE_TASKS else tokenizer) is None:
        raise ORTModelError(f"The {task} pipeline needs {needed}=...; none was given.")
    return cls(model, tokenizer, image_processor=image_processor, task=task, **kwargs)


__all__ = ["NUMPY_PIPELINE_TASKS", "numpy_pipeline", "pipeline_class"]
