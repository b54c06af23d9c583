"""ORT model classes per task: each declares its task and transformers output class."""

from __future__ import annotations

import functools
import typing
from typing import Any

from onnxport.layout import TOKEN_EMBEDDINGS
from onnxport.runtime.base import ORTModel
from onnxport.runtime.outputs import OUTPUT_FIELDS, graph_output_class, output_class, torch_loaded


class ORTModelForFeatureExtraction(ORTModel):
    """Bare encoder: `last_hidden_state` (and `pooler_output` where the model has a pooler)."""

    task = "feature-extraction"
    output_class_name = "BaseModelOutput"

    def _wrap(self, outputs: dict[str, Any]) -> Any:
        if TOKEN_EMBEDDINGS in outputs and "last_hidden_state" not in outputs:
            # A sentence-transformers graph: its token embeddings are the transformer's last
            # hidden state (what pipelines read first), beside the pooled sentence embedding.
            outputs = {"last_hidden_state": outputs.pop(TOKEN_EMBEDDINGS), **outputs}
            return graph_output_class(tuple(outputs))(**outputs)
        if "pooler_output" in outputs:
            return output_class("BaseModelOutputWithPooling")(**outputs)
        if set(outputs) <= set(OUTPUT_FIELDS["BaseModelOutput"]):
            return output_class("BaseModelOutput")(**outputs)
        return graph_output_class(tuple(outputs))(**outputs)


class ORTModelForMaskedLM(ORTModel):
    """Masked language model: `logits` over the vocabulary per token."""

    task = "fill-mask"
    output_class_name = "MaskedLMOutput"


class ORTModelForSequenceClassification(ORTModel):
    """Text (pair) classification: `logits` per text."""

    task = "text-classification"
    output_class_name = "SequenceClassifierOutput"


class ORTModelForTokenClassification(ORTModel):
    """Token classification (NER): `logits` per token."""

    task = "token-classification"
    output_class_name = "TokenClassifierOutput"


class ORTModelForQuestionAnswering(ORTModel):
    """Extractive QA: `start_logits` and `end_logits`."""

    task = "question-answering"
    output_class_name = "QuestionAnsweringModelOutput"


class ORTModelForMultipleChoice(ORTModel):
    """Multiple choice: `logits` per choice; inputs are (batch, choices, sequence)."""

    task = "multiple-choice"
    output_class_name = "MultipleChoiceModelOutput"


class ORTModelForImageFeatureExtraction(ORTModelForFeatureExtraction):
    """Bare vision model: patch embeddings (and pooled output where the model pools)."""

    task = "image-feature-extraction"
    main_input_name = "pixel_values"


class _ArchitectureOutput(ORTModel):
    """Returns the output class the PyTorch architecture's forward declares.

    Detection and dual-encoder heads have per-architecture output classes (DETR's boxes,
    CLIP's logits_per_image); post-processing code reads their fields by name.
    """

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the graph, then put back the inputs the architecture hands back.

        Grounding DINO returns its input_ids (its post-processing reads them); an input is
        no graph output, so the ORT model sets it on the output itself.
        """
        result = super().forward(*args, **kwargs)
        if torch_loaded() and isinstance(result, dict):
            for name in set(kwargs) & set(self.input_names) - set(self.output_names):
                if name in getattr(type(result), "__dataclass_fields__", {}):
                    result[name] = kwargs[name]
        return result

    def _wrap(self, outputs: dict[str, Any]) -> Any:
        if torch_loaded():
            default = output_class(self.output_class_name) if self.output_class_name else None
            found = architecture_output_class(
                self.task, self.config.model_type, default, tuple(sorted(outputs))
            )
            if found is not None:
                return found(**outputs)
        # The architecture's class lives in its PyTorch modeling module: without torch the
        # task's class, else one named after the graph's outputs, holds the arrays.
        if self.output_class_name and set(outputs) <= set(OUTPUT_FIELDS[self.output_class_name]):
            return output_class(self.output_class_name)(**outputs)
        return graph_output_class(tuple(outputs))(**outputs)


@functools.cache  # read once per class: type hints are resolved on every call otherwise
def architecture_output_class(
    task: str, model_type: str, default: type | None, fields: tuple[str, ...] = ()
) -> type | None:
    """The ModelOutput class `forward` of `model_type`'s class for `task` returns.

    Its return annotation says; where forward has none (Grounding DINO), the output class of
    its modeling module that holds every graph output (`fields`), the closest fit.
    """
    import sys

    import transformers
    from transformers.utils import ModelOutput

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
    if annotation is None and fields:
        module = vars(sys.modules[model_class.__module__]).values()
        fitting = [
            c for c in module
            if isinstance(c, type) and issubclass(c, ModelOutput) and c is not ModelOutput
            and set(fields) <= set(getattr(c, "__dataclass_fields__", {}))
        ]  # fmt: skip
        if fitting:
            return min(fitting, key=lambda c: len(getattr(c, "__dataclass_fields__", {})))
    return default


class ORTModelForImageClassification(_ArchitectureOutput):
    """Image classification: `logits` per image."""

    task = "image-classification"
    main_input_name = "pixel_values"
    output_class_name = "ImageClassifierOutput"


class ORTModelForObjectDetection(_ArchitectureOutput):
    """Object detection: class `logits` and `pred_boxes` per query (the model's output class)."""

    task = "object-detection"
    main_input_name = "pixel_values"


class ORTModelForZeroShotObjectDetection(_ArchitectureOutput):
    """Boxes scored against text queries (OWL-ViT style)."""

    task = "zero-shot-object-detection"


class ORTModelForSemanticSegmentation(_ArchitectureOutput):
    """Semantic segmentation: `logits` per class and (downsampled) pixel."""

    task = "semantic-segmentation"
    main_input_name = "pixel_values"
    output_class_name = "SemanticSegmenterOutput"


class ORTModelForDepthEstimation(_ArchitectureOutput):
    """Depth estimation: `predicted_depth` per pixel."""

    task = "depth-estimation"
    main_input_name = "pixel_values"
    output_class_name = "DepthEstimatorOutput"


class ORTModelForKeypointDetection(_ArchitectureOutput):
    """Keypoints, their scores and descriptors."""

    task = "keypoint-detection"
    main_input_name = "pixel_values"


class ORTModelForPoseEstimation(_ArchitectureOutput):
    """Top-down pose estimation: keypoint `heatmaps` for each cropped person."""

    task = "pose-estimation"
    main_input_name = "pixel_values"


class ORTModelForTextToWaveform(_ArchitectureOutput):
    """Text to speech: a `waveform` per text, at `config.sampling_rate`.

    Settings the graph takes as inputs (VITS' `noise_scale`, `noise_scale_duration`) default
    to the config's values; pass others as keyword arguments.
    """

    task = "text-to-audio"


class ORTModelForMaskedImageModeling(_ArchitectureOutput):
    """Masked image modeling: the `reconstruction` of the input image."""

    task = "masked-im"
    main_input_name = "pixel_values"
    output_class_name = "MaskedImageModelingOutput"


class ORTModelForImageToImage(_ArchitectureOutput):
    """Image to image (super-resolution): the `reconstruction`."""

    task = "image-to-image"
    main_input_name = "pixel_values"
    output_class_name = "ImageSuperResolutionOutput"


class ORTModelForZeroShotImageClassification(_ArchitectureOutput):
    """Dual encoder: `logits_per_image` (images x texts), text and image embeddings."""

    task = "zero-shot-image-classification"


class ORTModelForAudioClassification(_ArchitectureOutput):
    """Audio classification: `logits` per clip."""

    task = "audio-classification"
    main_input_name = "input_values"
    output_class_name = "SequenceClassifierOutput"


class ORTModelForAudioFrameClassification(_ArchitectureOutput):
    """Audio frame classification: `logits` per frame."""

    task = "audio-frame-classification"
    main_input_name = "input_values"
    output_class_name = "TokenClassifierOutput"


class ORTModelForAudioXVector(_ArchitectureOutput):
    """Speaker verification: `embeddings` (x-vectors) and their classifier `logits`."""

    task = "audio-xvector"
    main_input_name = "input_values"
    output_class_name = "XVectorOutput"


class ORTModelForCTC(_ArchitectureOutput):
    """CTC speech recognition: character `logits` per audio frame."""

    task = "ctc"
    main_input_name = "input_values"
    output_class_name = "CausalLMOutput"
