"""Run exported models with ONNX Runtime behind the transformers model API.

The encoder classes, pipelines and sentence embedders run on numpy without torch (`pip install
onnxport`); with torch installed they also take and return torch tensors. The generative
classes use transformers' `GenerationMixin`, which needs torch. Classes load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from onnxport.runtime.registry import CLASS_NAMES, GENERATIVE_TASKS, ORT_MODEL_CLASSES, module_of

if TYPE_CHECKING:
    from onnxport.runtime.base import ORTModel
    from onnxport.runtime.generation import (
        ORTModelForCausalLM,
        ORTModelForImageTextToText,
        ORTModelForSeq2SeqLM,
        ORTModelForSpeechSeq2Seq,
        ORTModelForVision2Seq,
    )
    from onnxport.runtime.modeling import (
        ORTModelForAudioClassification,
        ORTModelForAudioFrameClassification,
        ORTModelForAudioXVector,
        ORTModelForCTC,
        ORTModelForDepthEstimation,
        ORTModelForFeatureExtraction,
        ORTModelForImageClassification,
        ORTModelForImageFeatureExtraction,
        ORTModelForImageToImage,
        ORTModelForKeypointDetection,
        ORTModelForMaskedImageModeling,
        ORTModelForMaskedLM,
        ORTModelForMultipleChoice,
        ORTModelForObjectDetection,
        ORTModelForPoseEstimation,
        ORTModelForQuestionAnswering,
        ORTModelForSemanticSegmentation,
        ORTModelForSequenceClassification,
        ORTModelForTextToWaveform,
        ORTModelForTokenClassification,
        ORTModelForZeroShotImageClassification,
        ORTModelForZeroShotObjectDetection,
    )
    from onnxport.runtime.music_generation import ORTModelForTextToAudioGeneration
    from onnxport.runtime.retrieval import ORTModelForRetrieval
    from onnxport.runtime.speech_synthesis import ORTModelForTextToSpectrogram

__all__ = [
    "CLASS_NAMES",
    "GENERATIVE_TASKS",
    "ORT_MODEL_CLASSES",
    "ORTModel",
    *sorted(name for _, name in CLASS_NAMES.values()),
]


def __getattr__(name: str) -> Any:
    if name == "ORTModel":
        from onnxport.runtime.base import ORTModel

        return ORTModel
    module = module_of(name)
    if module is None:
        raise AttributeError(f"module 'onnxport.runtime' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
