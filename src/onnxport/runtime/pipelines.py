"""`onnxport.pipeline`: transformers pipelines running on ONNX Runtime.

The pipeline logic (pre- and post-processing) is transformers' own; only the model is
replaced by an ORT model, so results follow PyTorch's pipeline exactly. Question answering,
text-to-text generation, summarization, translation and image-to-text, which transformers 5
dropped, use onnxport's own pipelines (`qa_pipeline`, `text2text_pipeline`,
`image_to_text_pipeline`). transformers' pipelines need
torch; without it (or with `backend="numpy"`) the tasks in `NUMPY_PIPELINE_TASKS` run on
onnxport's torch-free `numpy_pipelines`, with the same answers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from onnxport import hub
from onnxport.errors import ORTModelError, TaskError
from onnxport.layout import graph_folder
from onnxport.runtime.base import ORTModel
from onnxport.runtime.numpy_pipelines import NUMPY_PIPELINE_TASKS
from onnxport.runtime.registry import ORT_MODEL_CLASSES
from onnxport.tasks import Task, get_task, resolve_task

# Tasks with a pipeline; multiple-choice, masked-im, image-to-image, audio frame
# classification and x-vectors have none in transformers 5 either.
PIPELINE_TASKS = (
    "audio-classification",
    "automatic-speech-recognition",
    "ctc",
    "depth-estimation",
    "feature-extraction",
    "fill-mask",
    "image-classification",
    "image-feature-extraction",
    "image-text-to-text",
    "image-to-text",
    "object-detection",
    "question-answering",
    "semantic-segmentation",
    "text-classification",
    "text-generation",
    "text2text-generation",
    "text-to-audio",
    "text-to-audio-with-past",
    "text-to-spectrogram",
    "token-classification",
    "zero-shot-classification",
    "zero-shot-image-classification",
    "zero-shot-object-detection",
)
# Pipelines that run on another task's export: zero-shot classification on an NLI classifier.
_RUNS_ON = {"zero-shot-classification": "text-classification"}
BACKENDS = ("transformers", "numpy")
# onnxport task -> transformers pipeline name, where they differ.
_PIPELINE_NAMES = {
    "semantic-segmentation": "image-segmentation",
    "ctc": "automatic-speech-recognition",
    "text-to-spectrogram": "text-to-audio",
    "text-to-audio-with-past": "text-to-audio",
}
# What each task's pipeline needs besides the model; text tasks need the tokenizer only.
_IMAGE_TASKS = frozenset(
    {
        "depth-estimation",
        "image-classification",
        "image-feature-extraction",
        "object-detection",
        "semantic-segmentation",
        "zero-shot-image-classification",
        "zero-shot-object-detection",
    }
)
_AUDIO_TASKS = frozenset({"audio-classification", "automatic-speech-recognition", "ctc"})
_NEEDS_TOKENIZER = frozenset(
    {"ctc", "zero-shot-image-classification", "zero-shot-object-detection"}
)
# Pipeline names that pick onnxport's text-to-text pipelines (translation_xx_to_yy too).
_TEXT2TEXT_NAMES = ("text2text-generation", "summarization", "translation")


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
    backend: str | None = None,
    **kwargs: Any,
) -> Any:
    """Build a pipeline whose model runs on ONNX Runtime.

    `model` is an exported folder, a PyTorch checkpoint (exported on the fly; force either way
    with `export=`), or an ORT model. The tokenizer defaults to the model folder's. `backend`
    picks the pipeline code: "transformers" (transformers' pipelines, which need torch) or
    "numpy" (onnxport's torch-free pipelines, same answers, for `NUMPY_PIPELINE_TASKS`). By
    default it is "transformers" where torch is installed and "numpy" where it is not. Other
    keyword arguments go to the pipeline (`transformers.pipeline` for the first).

    Example:
        >>> classifier = pipeline("text-classification", model="out/")  # doctest: +SKIP
        >>> classifier("I love this")  # doctest: +SKIP
        [{'label': 'POSITIVE', 'score': 0.99}]
        >>> pipeline("fill-mask", model="out/", backend="numpy")  # doctest: +SKIP

    """
    translation_pair = task.startswith("translation_")
    runs_on = _RUNS_ON.get(task.strip().lower())
    task_obj = get_task(runs_on or ("translation" if translation_pair else task))
    if task_obj.name not in PIPELINE_TASKS:
        raise TaskError(
            f"There is no pipeline for '{task_obj.name}'; call the ORT model directly. "
            f"Pipelines: {', '.join(PIPELINE_TASKS)}.",
            task=task,
            available=PIPELINE_TASKS,
        )
    if model is None:
        raise ORTModelError("pipeline() needs model=: an exported folder or a checkpoint.")
    numpy_name = task.strip().lower() if runs_on else task_obj.name
    if _PIPELINE_NAMES.get(numpy_name) in NUMPY_PIPELINE_TASKS:  # SpeechT5 speaks as VITS does
        numpy_name = _PIPELINE_NAMES[numpy_name]
    use_numpy = _numpy_backend(backend, numpy_name)
    ort_model, task_obj = _load_model(task_obj, model, export, provider)
    if task_obj.name == "text-to-spectrogram":
        _check_speaks(ort_model)
    if use_numpy:
        return _numpy_pipeline(numpy_name, ort_model, tokenizer, kwargs)
    return _transformers_pipeline(task, task_obj, ort_model, tokenizer, kwargs)


def _check_speaks(ort_model: Any) -> None:
    """A spectrogram synthesizer needs its vocoder to speak.

    transformers' pipeline would download its default vocoder for a PyTorch SpeechT5; an
    export carries its own (`--vocoder`), or it is refused in one line.
    """
    if getattr(ort_model, "vocoder", None) is None:
        raise ORTModelError(
            f"'{ort_model.model_dir}' was exported without a vocoder, so it makes spectrograms, "
            "not speech: export it again with --vocoder (for SpeechT5: "
            "microsoft/speecht5_hifigan), or call the ORT model's generate()."
        )


def _numpy_backend(backend: str | None, name: str) -> bool:
    """Whether pipeline `name` runs on the numpy pipelines: asked for, or torch is missing."""
    if backend is not None and backend not in BACKENDS:
        raise ORTModelError(f"Unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}.")
    torch_missing = importlib.util.find_spec("torch") is None
    if backend == "transformers" and torch_missing:
        raise ORTModelError(
            "backend='transformers' needs torch, which is not installed: pip install torch, or "
            "leave backend unset for the torch-free pipelines."
        )
    use_numpy = backend == "numpy" or (backend is None and torch_missing)
    if use_numpy and name not in NUMPY_PIPELINE_TASKS:
        tasks = ", ".join(NUMPY_PIPELINE_TASKS)
        if backend == "numpy":
            raise ORTModelError(
                f"backend='numpy' has no {name} pipeline; it runs {tasks}. Leave backend unset "
                "for transformers' pipeline (which needs torch)."
            )
        raise ORTModelError(
            f"The {name} pipeline needs torch, which is not installed: pip install torch. "
            f"These run without it: {tasks}."
        )
    return use_numpy


def _load_model(
    task_obj: Task, model: str | os.PathLike[str] | ORTModel, export: bool | None, provider: str
) -> tuple[Any, Task]:
    """The ORT model for `task_obj`, and the task as its architecture runs it."""
    if isinstance(model, ORTModel):
        return model, resolve_task(task_obj, model.config.model_type)
    folder = Path(model)
    if export is None:
        export = not (folder.is_dir() and any(graph_folder(folder).glob("*.onnx")))
    if folder.is_dir():  # speech recognition: CTC or encoder-decoder, by architecture
        task_obj = resolve_task(task_obj, hub.load_config(folder).model_type)
    model_class = ORT_MODEL_CLASSES[task_obj.name]
    return model_class.from_pretrained(model, export=export, provider=provider), task_obj


def _numpy_pipeline(name: str, ort_model: Any, tokenizer: Any, kwargs: dict[str, Any]) -> Any:
    from onnxport.runtime.numpy_pipelines import numpy_pipeline

    if name in _IMAGE_TASKS:
        if "image_processor" not in kwargs:
            kwargs["image_processor"] = _preprocessor(ort_model.model_dir, "AutoImageProcessor")
        return numpy_pipeline(name, ort_model, tokenizer, **kwargs)
    return numpy_pipeline(name, ort_model, _tokenizer(tokenizer, ort_model.model_dir), **kwargs)


def _transformers_pipeline(
    task: str, task_obj: Task, ort_model: Any, tokenizer: Any, kwargs: dict[str, Any]
) -> Any:
    import transformers

    translation_pair = task.startswith("translation_")
    name = task_obj.name
    if name == "image-to-text":
        from onnxport.runtime.image_to_text_pipeline import ImageToTextPipeline

        if "image_processor" not in kwargs:
            kwargs["image_processor"] = _preprocessor(ort_model.model_dir, "AutoImageProcessor")
        tokenizer_obj = _tokenizer(tokenizer, ort_model.model_dir)
        return ImageToTextPipeline(model=ort_model, tokenizer=tokenizer_obj, **kwargs)
    if name == "image-text-to-text":
        # transformers' own pipeline: chat messages and images through the folder's processor.
        if kwargs.get("processor") is None:
            kwargs["processor"] = _preprocessor(ort_model.model_dir, "AutoProcessor")
        return _build(name, ort_model, tokenizer, kwargs)
    if name in _IMAGE_TASKS or name in _AUDIO_TASKS:
        if name in _IMAGE_TASKS and "image_processor" not in kwargs:
            kwargs["image_processor"] = _preprocessor(ort_model.model_dir, "AutoImageProcessor")
        if name in _AUDIO_TASKS and "feature_extractor" not in kwargs:
            kwargs["feature_extractor"] = _preprocessor(ort_model.model_dir, "AutoFeatureExtractor")
        if name not in _NEEDS_TOKENIZER and name != "automatic-speech-recognition":
            return _build(_PIPELINE_NAMES.get(name, name), ort_model, tokenizer, kwargs)
    tokenizer_obj = _tokenizer(tokenizer, ort_model.model_dir)
    if name == "question-answering":
        from onnxport.runtime.qa_pipeline import QuestionAnsweringPipeline

        return QuestionAnsweringPipeline(model=ort_model, tokenizer=tokenizer_obj, **kwargs)
    if name == "text2text-generation":
        from onnxport.runtime.text2text_pipeline import pipeline_class

        name = task if translation_pair or task in _TEXT2TEXT_NAMES else name
        return pipeline_class(name)(model=ort_model, tokenizer=tokenizer_obj, task=name, **kwargs)
    if name == "text-to-spectrogram" and kwargs.get("sampling_rate") is None:
        kwargs["sampling_rate"] = ort_model.sampling_rate  # the vocoder's
    pipeline_task = task if task in transformers.pipelines.SUPPORTED_TASKS else name
    built = _build(
        _PIPELINE_NAMES.get(pipeline_task, pipeline_task), ort_model, tokenizer_obj, kwargs
    )
    if name == "automatic-speech-recognition" and not getattr(ort_model, "whisper_style", True):
        # transformers tells a speech encoder-decoder by its PyTorch class name; ours is not
        # one of them, and without this the pipeline would decode it as CTC.
        built.type = "seq2seq"
    return built


def _tokenizer(tokenizer: Any, folder: Path) -> Any:
    """`tokenizer` itself, or loaded from the path given or the model folder."""
    from transformers import AutoTokenizer

    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    source = tokenizer if tokenizer is not None else folder
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise ORTModelError(f"No tokenizer in '{source}'; pass tokenizer=... explicitly.") from err


def _build(task: str, model: Any, tokenizer: Any, kwargs: dict[str, Any]) -> Any:
    import transformers

    # transformers' overloads type only literal task names; ours is chosen at run time.
    build: Any = transformers.pipeline
    with _quiet_model_check():
        return build(task, model=model, tokenizer=tokenizer, **kwargs)


def _preprocessor(folder: Path, auto_class: str) -> Any:
    """The folder's image processor, feature extractor or processor (its saved configs)."""
    import transformers

    kinds = {"AutoImageProcessor": "image_processor", "AutoProcessor": "processor"}
    kind = kinds.get(auto_class, "feature_extractor")
    try:
        return getattr(transformers, auto_class).from_pretrained(folder)
    except (OSError, ValueError, KeyError) as err:
        raise ORTModelError(
            f"No {kind.replace('_', ' ')} (preprocessor_config.json or processor_config.json) in "
            f"'{folder}'; pass "
            f"{kind}=... explicitly, or export with processor=..."
        ) from err
