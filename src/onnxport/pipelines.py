"""`onnxport.pipeline`: transformers pipelines running on ONNX Runtime.

The pipeline logic (pre- and post-processing) is transformers' own; only the model is
replaced by an ORT model, so results follow PyTorch's pipeline exactly. Question answering,
which transformers 5 dropped, uses onnxport's `QuestionAnsweringPipeline`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from onnxport.errors import ORTModelError, TaskError
from onnxport.runtime import ORT_MODEL_CLASSES, ORTModel
from onnxport.tasks import get_task

# Tasks with a pipeline; multiple-choice has none in transformers either.
PIPELINE_TASKS = (
    "feature-extraction",
    "fill-mask",
    "question-answering",
    "text-classification",
    "text-generation",
    "token-classification",
)


class _DropUnsupportedModelMessage(logging.Filter):
    """Hide transformers' "model is not supported" error while onnxport builds a pipeline.

    transformers logs it for any class outside its Auto mappings, ORT models included,
    although they work.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "is not supported for" not in record.getMessage()


@contextlib.contextmanager
def _quiet_model_check() -> Iterator[None]:
    target = logging.getLogger("transformers.pipelines.base")
    drop = _DropUnsupportedModelMessage()
    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


def pipeline(
    task: str,
    model: str | os.PathLike[str] | ORTModel | None = None,
    tokenizer: Any | None = None,
    *,
    export: bool | None = None,
    provider: str = "CPUExecutionProvider",
    **kwargs: Any,
) -> Any:
    """Build a transformers pipeline whose model runs on ONNX Runtime.

    `model` is an exported folder, a PyTorch checkpoint (exported on the fly; force either way
    with `export=`), or an ORT model. The tokenizer defaults to the model folder's. Other
    keyword arguments go to `transformers.pipeline`.

    Example:
        >>> classifier = pipeline("text-classification", model="out/")  # doctest: +SKIP
        >>> classifier("I love this")  # doctest: +SKIP
        [{'label': 'POSITIVE', 'score': 0.99}]

    """
    import transformers
    from transformers import AutoTokenizer

    task_obj = get_task(task)
    if task_obj.name not in PIPELINE_TASKS:
        raise TaskError(
            f"There is no pipeline for '{task_obj.name}'; call the ORT model directly. "
            f"Pipelines: {', '.join(PIPELINE_TASKS)}.",
            task=task,
            available=PIPELINE_TASKS,
        )
    if model is None:
        raise ORTModelError("pipeline() needs model=: an exported folder or a checkpoint.")
    model_class = ORT_MODEL_CLASSES[task_obj.name]
    ort_model: Any
    tokenizer_obj: Any = tokenizer
    if isinstance(model, ORTModel):
        ort_model = model
    else:
        folder = Path(model)
        if export is None:
            export = not (folder.is_dir() and any(folder.glob("*.onnx")))
        ort_model = model_class.from_pretrained(model, export=export, provider=provider)
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        source = tokenizer if tokenizer is not None else ort_model.model_dir
        try:
            tokenizer_obj = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as err:
            raise ORTModelError(
                f"No tokenizer in '{source}'; pass tokenizer=... explicitly."
            ) from err
    if task_obj.name == "question-answering":
        from onnxport.qa_pipeline import QuestionAnsweringPipeline

        return QuestionAnsweringPipeline(model=ort_model, tokenizer=tokenizer_obj, **kwargs)
    pipeline_task = task if task in transformers.pipelines.SUPPORTED_TASKS else task_obj.name
    # transformers' overloads type only literal task names; ours is chosen at run time.
    build: Any = transformers.pipeline
    with _quiet_model_check():
        return build(pipeline_task, model=ort_model, tokenizer=tokenizer_obj, **kwargs)
