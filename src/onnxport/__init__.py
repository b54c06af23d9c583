"""onnxport: Hugging Face Transformers models to ONNX, proven right, run with ONNX Runtime.

Export:
    >>> import onnxport
    >>> result = onnxport.export("path/to/checkpoint", "out/")  # doctest: +SKIP
    >>> print(result.validation.format())  # doctest: +SKIP

Run:
    >>> model = onnxport.ORTModelForFeatureExtraction.from_pretrained("out/")  # doctest: +SKIP

Heavy modules load on first use, so `import onnxport` stays cheap for the runtime.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from onnxport._version import __version__

if TYPE_CHECKING:
    from onnxport.exporters.adapters import ExportAdapter, register_adapter
    from onnxport.exporters.api import ExportResult, export
    from onnxport.exporters.spec import ExportSpec, get_onnx_config
    from onnxport.exporters.validate import OutputCheck, ValidationReport
    from onnxport.runtime import (
        ORTModel,
        ORTModelForAudioClassification,
        ORTModelForAudioFrameClassification,
        ORTModelForAudioXVector,
        ORTModelForCausalLM,
        ORTModelForCTC,
        ORTModelForDepthEstimation,
        ORTModelForFeatureExtraction,
        ORTModelForImageClassification,
        ORTModelForImageFeatureExtraction,
        ORTModelForImageTextToText,
        ORTModelForImageToImage,
        ORTModelForKeypointDetection,
        ORTModelForMaskedImageModeling,
        ORTModelForMaskedLM,
        ORTModelForMultipleChoice,
        ORTModelForObjectDetection,
        ORTModelForPoseEstimation,
        ORTModelForQuestionAnswering,
        ORTModelForRetrieval,
        ORTModelForSemanticSegmentation,
        ORTModelForSeq2SeqLM,
        ORTModelForSequenceClassification,
        ORTModelForSpeechSeq2Seq,
        ORTModelForTextToAudioGeneration,
        ORTModelForTextToSpectrogram,
        ORTModelForTextToWaveform,
        ORTModelForTokenClassification,
        ORTModelForVision2Seq,
        ORTModelForZeroShotImageClassification,
        ORTModelForZeroShotObjectDetection,
    )
    from onnxport.runtime.pipelines import pipeline
    from onnxport.runtime.sentence_transformers import CrossEncoder, SentenceTransformer

_LAZY = {
    "export": "onnxport.exporters.api",
    "ExportResult": "onnxport.exporters.api",
    "get_onnx_config": "onnxport.exporters.spec",
    "ExportSpec": "onnxport.exporters.spec",
    "ValidationReport": "onnxport.exporters.validate",
    "OutputCheck": "onnxport.exporters.validate",
    "ExportAdapter": "onnxport.exporters.adapters",
    "register_adapter": "onnxport.exporters.adapters",
    "pipeline": "onnxport.runtime.pipelines",
    "SentenceTransformer": "onnxport.runtime.sentence_transformers",
    "CrossEncoder": "onnxport.runtime.sentence_transformers",
    "ORTModel": "onnxport.runtime",
    "ORTModelForCausalLM": "onnxport.runtime",
    "ORTModelForImageFeatureExtraction": "onnxport.runtime",
    "ORTModelForImageTextToText": "onnxport.runtime",
    "ORTModelForImageClassification": "onnxport.runtime",
    "ORTModelForObjectDetection": "onnxport.runtime",
    "ORTModelForZeroShotObjectDetection": "onnxport.runtime",
    "ORTModelForSemanticSegmentation": "onnxport.runtime",
    "ORTModelForDepthEstimation": "onnxport.runtime",
    "ORTModelForKeypointDetection": "onnxport.runtime",
    "ORTModelForPoseEstimation": "onnxport.runtime",
    "ORTModelForRetrieval": "onnxport.runtime",
    "ORTModelForTextToWaveform": "onnxport.runtime",
    "ORTModelForTextToSpectrogram": "onnxport.runtime",
    "ORTModelForTextToAudioGeneration": "onnxport.runtime",
    "ORTModelForMaskedImageModeling": "onnxport.runtime",
    "ORTModelForImageToImage": "onnxport.runtime",
    "ORTModelForZeroShotImageClassification": "onnxport.runtime",
    "ORTModelForAudioClassification": "onnxport.runtime",
    "ORTModelForAudioFrameClassification": "onnxport.runtime",
    "ORTModelForAudioXVector": "onnxport.runtime",
    "ORTModelForCTC": "onnxport.runtime",
    "ORTModelForFeatureExtraction": "onnxport.runtime",
    "ORTModelForMaskedLM": "onnxport.runtime",
    "ORTModelForMultipleChoice": "onnxport.runtime",
    "ORTModelForQuestionAnswering": "onnxport.runtime",
    "ORTModelForSeq2SeqLM": "onnxport.runtime",
    "ORTModelForSequenceClassification": "onnxport.runtime",
    "ORTModelForSpeechSeq2Seq": "onnxport.runtime",
    "ORTModelForTokenClassification": "onnxport.runtime",
    "ORTModelForVision2Seq": "onnxport.runtime",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        if importlib.util.find_spec(f"onnxport.{name}") is not None:
            return importlib.import_module(f"onnxport.{name}")
        raise AttributeError(f"module 'onnxport' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
