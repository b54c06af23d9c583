"""ORT model classes per task: each declares its task and transformers output class."""

from __future__ import annotations

import functools
import typing
from typing import Any

from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPooling,
    CausalLMOutput,
    DepthEstimatorOutput,
    ImageClassifierOutput,
    ImageSuperResolutionOutput,
    MaskedImageModelingOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SemanticSegmenterOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    XVectorOutput,
)
from transformers.utils import ModelOutput

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


class ORTModelForImageFeatureExtraction(ORTModelForFeatureExtraction):
    """Bare vision model: patch embeddings (and pooled output where the model pools)."""

    task = "image-feature-extraction"
    main_input_name = "pixel_values"


class _ArchitectureOutput(ORTModel):
    """Returns the output class the PyTorch architecture's forward declares.

    Detection and dual-encoder heads have per-architecture output classes (DETR's boxes,
    CLIP's logits_per_image); post-processing code reads their fields by name.
    """

    def _wrap(self, outputs: dict[str, Any]) -> Any:
        output = architecture_output_class(self.task, self.config.model_type, self.output_class)
        return output(**outputs)


@functools.cache  # read once per class: type hints are resolved on every call otherwise
def architecture_output_class(task: str, model_type: str, default: type) -> type:
    """The ModelOutput class `forward` of `model_type`'s class for `task` is annotated to return."""
    import transformers

    from onnxport.tasks import get_task

    name = get_task(task).model_classes().get(model_type)
    model_class = getattr(transformers, name, None) if name else None
    if model_class is None:
        return default
    try:
        annotation = typing.get_type_hints(model_class.forward).get("return")
    except Exception:  # an annotation that does not resolve: the task's generic class
        return default
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, ModelOutput):
            return candidate
    return default


class ORTModelForImageClassification(_ArchitectureOutput):
    """Image classification: `logits` per image."""

    task = "image-classification"
    main_input_name = "pixel_values"
    output_class = ImageClassifierOutput


class ORTModelForObjectDetection(_ArchitectureOutput):
    """Object detection: class `logits` and `pred_boxes` per query (the model's output class)."""

    task = "object-detection"
    main_input_name = "pixel_values"
    output_class = ModelOutput


class ORTModelForZeroShotObjectDetection(_ArchitectureOutput):
    """Boxes scored against text queries (OWL-ViT style)."""

    task = "zero-shot-object-detection"
    output_class = ModelOutput


class ORTModelForSemanticSegmentation(_ArchitectureOutput):
    """Semantic segmentation: `logits` per class and (downsampled) pixel."""

    task = "semantic-segmentation"
    main_input_name = "pixel_values"
    output_class = SemanticSegmenterOutput


class ORTModelForDepthEstimation(_ArchitectureOutput):
    """Depth estimation: `predicted_depth` per pixel."""

    task = "depth-estimation"
    main_input_name = "pixel_values"
    output_class = DepthEstimatorOutput


class ORTModelForKeypointDetection(_ArchitectureOutput):
    """Keypoints, their scores and descriptors."""

    task = "keypoint-detection"
    main_input_name = "pixel_values"
    output_class = ModelOutput


class ORTModelForMaskedImageModeling(_ArchitectureOutput):
    """Masked image modeling: the `reconstruction` of the input image."""

    task = "masked-im"
    main_input_name = "pixel_values"
    output_class = MaskedImageModelingOutput


class ORTModelForImageToImage(_ArchitectureOutput):
    """Image to image (super-resolution): the `reconstruction`."""

    task = "image-to-image"
    main_input_name = "pixel_values"
    output_class = ImageSuperResolutionOutput


class ORTModelForZeroShotImageClassification(_ArchitectureOutput):
    """Dual encoder: `logits_per_image` (images x texts), text and image embeddings."""

    task = "zero-shot-image-classification"
    output_class = ModelOutput


class ORTModelForAudioClassification(_ArchitectureOutput):
    """Audio classification: `logits` per clip."""

    task = "audio-classification"
    main_input_name = "input_values"
    output_class = SequenceClassifierOutput


class ORTModelForAudioFrameClassification(_ArchitectureOutput):
    """Audio frame classification: `logits` per frame."""

    task = "audio-frame-classification"
    main_input_name = "input_values"
    output_class = TokenClassifierOutput


class ORTModelForAudioXVector(_ArchitectureOutput):
    """Speaker verification: `embeddings` (x-vectors) and their classifier `logits`."""

    task = "audio-xvector"
    main_input_name = "input_values"
    output_class = XVectorOutput


class ORTModelForCTC(_ArchitectureOutput):
    """CTC speech recognition: character `logits` per audio frame."""

    task = "ctc"
    main_input_name = "input_values"
    output_class = CausalLMOutput


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
        ORTModelForImageFeatureExtraction,
        ORTModelForImageClassification,
        ORTModelForObjectDetection,
        ORTModelForZeroShotObjectDetection,
        ORTModelForSemanticSegmentation,
        ORTModelForDepthEstimation,
        ORTModelForKeypointDetection,
        ORTModelForMaskedImageModeling,
        ORTModelForImageToImage,
        ORTModelForZeroShotImageClassification,
        ORTModelForAudioClassification,
        ORTModelForAudioFrameClassification,
        ORTModelForAudioXVector,
        ORTModelForCTC,
    )
}
