"""Run exported models with ONNX Runtime behind the transformers model API."""

from onnxport.runtime.base import ORTModel
from onnxport.runtime.generation import (
    ORTModelForCausalLM,
    ORTModelForSeq2SeqLM,
    ORTModelForSpeechSeq2Seq,
)
from onnxport.runtime.modeling import (
    ORT_MODEL_CLASSES,
    ORTModelForFeatureExtraction,
    ORTModelForMaskedLM,
    ORTModelForMultipleChoice,
    ORTModelForQuestionAnswering,
    ORTModelForSequenceClassification,
    ORTModelForTokenClassification,
)

__all__ = [
    "ORT_MODEL_CLASSES",
    "ORTModel",
    "ORTModelForCausalLM",
    "ORTModelForFeatureExtraction",
    "ORTModelForMaskedLM",
    "ORTModelForMultipleChoice",
    "ORTModelForQuestionAnswering",
    "ORTModelForSeq2SeqLM",
    "ORTModelForSequenceClassification",
    "ORTModelForSpeechSeq2Seq",
    "ORTModelForTokenClassification",
]
