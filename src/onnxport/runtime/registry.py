"""Which ORT model class runs which task, known without importing any of them.

Generative classes need torch (transformers' `GenerationMixin`); the encoder classes do not.
The table names them so that a task can be looked up, and a class named in a message,
without importing torch; `ORT_MODEL_CLASSES[task]` imports the class on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

# task -> (module, class name)
_GENERATION = "onnxport.runtime.generation"
_MODELING = "onnxport.runtime.modeling"
CLASS_NAMES: dict[str, tuple[str, str]] = {
    "feature-extraction": (_MODELING, "ORTModelForFeatureExtraction"),
    "fill-mask": (_MODELING, "ORTModelForMaskedLM"),
    "text-classification": (_MODELING, "ORTModelForSequenceClassification"),
    "token-classification": (_MODELING, "ORTModelForTokenClassification"),
    "question-answering": (_MODELING, "ORTModelForQuestionAnswering"),
    "multiple-choice": (_MODELING, "ORTModelForMultipleChoice"),
    "text-generation": (_GENERATION, "ORTModelForCausalLM"),
    "text2text-generation": (_GENERATION, "ORTModelForSeq2SeqLM"),
    "automatic-speech-recognition": (_GENERATION, "ORTModelForSpeechSeq2Seq"),
    "image-to-text": (_GENERATION, "ORTModelForVision2Seq"),
    "image-text-to-text": (_GENERATION, "ORTModelForImageTextToText"),
    "image-feature-extraction": (_MODELING, "ORTModelForImageFeatureExtraction"),
    "image-classification": (_MODELING, "ORTModelForImageClassification"),
    "object-detection": (_MODELING, "ORTModelForObjectDetection"),
    "zero-shot-object-detection": (_MODELING, "ORTModelForZeroShotObjectDetection"),
    "semantic-segmentation": (_MODELING, "ORTModelForSemanticSegmentation"),
    "depth-estimation": (_MODELING, "ORTModelForDepthEstimation"),
    "keypoint-detection": (_MODELING, "ORTModelForKeypointDetection"),
    "text-to-audio": (_MODELING, "ORTModelForTextToWaveform"),
    "text-to-spectrogram": ("onnxport.runtime.speech_synthesis", "ORTModelForTextToSpectrogram"),
    "text-to-audio-with-past": (
        "onnxport.runtime.music_generation",
        "ORTModelForTextToAudioGeneration",
    ),
    "retrieval": ("onnxport.runtime.retrieval", "ORTModelForRetrieval"),
    "pose-estimation": (_MODELING, "ORTModelForPoseEstimation"),
    "masked-im": (_MODELING, "ORTModelForMaskedImageModeling"),
    "image-to-image": (_MODELING, "ORTModelForImageToImage"),
    "zero-shot-image-classification": (_MODELING, "ORTModelForZeroShotImageClassification"),
    "audio-classification": (_MODELING, "ORTModelForAudioClassification"),
    "audio-frame-classification": (_MODELING, "ORTModelForAudioFrameClassification"),
    "audio-xvector": (_MODELING, "ORTModelForAudioXVector"),
    "ctc": (_MODELING, "ORTModelForCTC"),
}
GENERATIVE_TASKS = frozenset(t for t, (module, _) in CLASS_NAMES.items() if module == _GENERATION)
# Tasks whose class runs its own generation loop over several graphs in numpy (no torch).
LOOP_TASKS = frozenset({"text-to-spectrogram", "text-to-audio-with-past"})


def class_name(task: str) -> str:
    """The ORT class name for `task` (`ORTModelForQuestionAnswering`), without importing it."""
    return CLASS_NAMES[task][1]


def module_of(name: str) -> str | None:
    """The module defining the ORT class `name`, or None if no task uses it."""
    for module, candidate in CLASS_NAMES.values():
        if candidate == name:
            return module
    return None


class _LazyClasses(Mapping[str, Any]):
    """task -> ORT model class, importing the class's module on first lookup."""

    def __getitem__(self, task: str) -> Any:
        module, name = CLASS_NAMES[task]
        return getattr(importlib.import_module(module), name)

    def __iter__(self) -> Iterator[str]:
        return iter(CLASS_NAMES)

    def __len__(self) -> int:
        return len(CLASS_NAMES)


ORT_MODEL_CLASSES: Mapping[str, Any] = _LazyClasses()
