"""ORT model classes per task: each declares its task and transformers output class."""

from __future__ import annotations

from typing import Any

from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

from onnxport.runtime.base import ORTModel
from onnxport.runtime.generation import (
    ORTModelForCausalLM,
    ORTModelForSeq2SeqLM,
    ORTModelForSpeechSeq2Seq,
)


class ORTModelForFeatureExtraction(ORTModel):
    """Bare encoder: `last_hidden_state` (and `pooler_output` where the model has a pooler)."""

    task = "feature-extraction"
    output_class = BaseModelOutput

    def _wrap(self, outputs: dict[str, Any]) -> Any:
        if "pooler_output" in outputs:
            return BaseModelOutputWithPooling(**outputs)
        return BaseModelOutput(**outputs)


class ORTModelForMaskedLM(ORTModel):
    """Masked language model: `logits` over the vocabulary per token."""

    task = "fill-mask"
    output_class = MaskedLMOutput


class ORTModelForSequenceClassification(ORTModel):
    """Text (pair) classification: `logits` per text."""

    task = "text-classification"
    output_class = SequenceClassifierOutput


class ORTModelForTokenClassification(ORTModel):
    """Token classification (NER): `logits` per token."""

    task = "token-classification"
    output_class = TokenClassifierOutput


class ORTModelForQuestionAnswering(ORTModel):
    """Extractive QA: `start_logits` and `end_logits`."""

    task = "question-answering"
    output_class = QuestionAnsweringModelOutput


class ORTModelForMultipleChoice(ORTModel):
    """Multiple choice: `logits` per choice; inputs are (batch, choices, sequence)."""

    task = "multiple-choice"
    output_class = MultipleChoiceModelOutput


ORT_MODEL_CLASSES: dict[str, type[ORTModel]] = {
    cls.task: cls
    for cls in (
        ORTModelForFeatureExtraction,
        ORTModelForMaskedLM,
        ORTModelForSequenceClassification,
        ORTModelForTokenClassification,
        ORTModelForQuestionAnswering,
        ORTModelForMultipleChoice,
        ORTModelForCausalLM,
        ORTModelForSeq2SeqLM,
        ORTModelForSpeechSeq2Seq,
    )
}
