"""Task registry: task name -> transformers Auto class, synonyms, and task inference.

A task is looked up by name or synonym; `infer_task` picks one from `config.architectures`
and falls back to the bare model (feature-extraction) when no head matches.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import transformers
from transformers import PretrainedConfig
from transformers.models.auto import modeling_auto

from onnxport.errors import TaskError, UnsupportedModelError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One export task.

    Attributes:
        name: canonical name, as `transformers.pipeline` spells it where it has one.
        auto_class: transformers Auto class that builds the model with this task's head.
        mapping: name of the `modeling_auto` table from model_type to that head's class.
        synonyms: other names users type for it.
        description: one line for `onnxport tasks`.
        with_past: the graph takes and returns a key/value cache (decoder generation).
        encoder_decoder: exported as encoder_model.onnx plus decoder_model.onnx.
        model_types: when set, only these model types of `mapping` have this task's head
            (transformers files encoder-decoder captioners and vision-language models under
            one table; they export in different ways).
        excluded_types: model types of `mapping` that another task exports instead.
        vision_language: exported as vision_encoder.onnx, embed_tokens.onnx and
            decoder_model.onnx (image features spliced into the token embeddings).

    """

    name: str
    auto_class: str
    mapping: str
    synonyms: tuple[str, ...] = ()
    description: str = ""
    with_past: bool = False
    encoder_decoder: bool = False
    model_types: frozenset[str] = frozenset()
    excluded_types: frozenset[str] = frozenset()
    vision_language: bool = False

    def model_classes(self) -> dict[str, str]:
        """Model type -> class name for every architecture with a head for this task."""
        table = getattr(modeling_auto, self.mapping)
        return {
            k: v if isinstance(v, str) else v[0]
            for k, v in table.items()
            if (not self.model_types or k in self.model_types) and k not in self.excluded_types
        }

    def has_head(self, model_type: str) -> bool:
        """Whether transformers has a model class for `model_type` with this task's head."""
        return model_type in self.model_classes()

    def auto_model_class(self) -> Any:
        """The transformers Auto class, e.g. `AutoModelForQuestionAnswering`."""
        auto_class: type = getattr(transformers, self.auto_class)
        return auto_class


# Order matters for inference: specific heads first, the bare model last.
TASKS: tuple[Task, ...] = (
    Task(
        "question-answering",
        "AutoModelForQuestionAnswering",
        "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
        ("qa", "extractive-question-answering"),
        "extractive QA: start/end logits",
    ),
    Task(
        "token-classification",
        "AutoModelForTokenClassification",
        "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
        ("ner",),
        "one label per token (NER, POS)",
    ),
    Task(
        "multiple-choice",
        "AutoModelForMultipleChoice",
        "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES",
        (),
        "score each of N choices",
    ),
    Task(
        "text-classification",
        "AutoModelForSequenceClassification",
        "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
        ("sequence-classification", "sentiment-analysis"),
        "one label per text or text pair",
    ),
    # Before text-generation: a Gemma 3 checkpoint's class heads both tables, and a
    # vision-language checkpoint is exported with its vision tower.
    Task(
        "image-text-to-text",
        "AutoModelForImageTextToText",
        "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
        ("vision-language", "vlm", "image-text-to-text-with-past"),
        "vision encoder + token embedding + decoder with a cache (LLaVA, SmolVLM); generate()",
        with_past=True,
        excluded_types=frozenset({"vision-encoder-decoder"}),
        vision_language=True,
    ),
    Task(
        "text-generation",
        "AutoModelForCausalLM",
        "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
        ("causal-lm", "text-generation-with-past", "causal-lm-with-past"),
        "next-token logits with a key/value cache; generate()",
        with_past=True,
    ),
    Task(
        "text2text-generation",
        "AutoModelForSeq2SeqLM",
        "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
        ("seq2seq-lm", "text2text-generation-with-past", "translation", "summarization"),
        "encoder + decoder with a self-attention cache; generate()",
        with_past=True,
        encoder_decoder=True,
    ),
    Task(
        "automatic-speech-recognition",
        "AutoModelForSpeechSeq2Seq",
        "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES",
        (
            "asr",
            "speech2seq-lm",
            "automatic-speech-recognition-with-past",
            "speech2seq-lm-with-past",
        ),
        "speech encoder (log-mel features) + text decoder with a cache; generate()",
        with_past=True,
        encoder_decoder=True,
    ),
    Task(
        "image-to-text",
        "AutoModelForImageTextToText",
        "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
        ("vision2seq-lm", "image-to-text-with-past", "image-captioning", "ocr"),
        "image encoder + text decoder with a cache (TrOCR, Donut, Pix2Struct); generate()",
        with_past=True,
        encoder_decoder=True,
        model_types=frozenset({"vision-encoder-decoder", "pix2struct"}),
    ),
    Task(
        "text-to-audio",
        "AutoModelForTextToWaveform",
        "MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES",
        ("text-to-speech", "tts"),
        "a waveform from text, sampled as the model samples it (VITS / MMS-TTS)",
        excluded_types=frozenset({"musicgen"}),
    ),
    Task(
        "text-to-audio-with-past",
        "AutoModelForTextToWaveform",
        "MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES",
        ("text-to-music",),
        "audio codes token by token with a cache, then the codec (MusicGen); generate()",
        with_past=True,
        encoder_decoder=True,
        model_types=frozenset({"musicgen"}),
    ),
    Task(
        "text-to-spectrogram",
        "AutoModelForTextToSpectrogram",
        "MODEL_FOR_TEXT_TO_SPECTROGRAM_MAPPING_NAMES",
        ("text-to-speech-with-past",),
        "speech frame by frame with a cache, then postnet and vocoder (SpeechT5); generate()",
        with_past=True,
        encoder_decoder=True,
        model_types=frozenset({"speecht5"}),
    ),
    Task(
        "retrieval",
        "AutoModelForPreTraining",
        "MODEL_FOR_RETRIEVAL_MAPPING_NAMES",
        ("document-retrieval", "visual-retrieval"),
        "multi-vector embeddings of page images and queries (ColPali)",
    ),
    Task(
        "image-classification",
        "AutoModelForImageClassification",
        "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
        (),
        "one label per image",
    ),
    Task(
        "object-detection",
        "AutoModelForObjectDetection",
        "MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES",
        (),
        "boxes and class logits per query",
    ),
    Task(
        "zero-shot-object-detection",
        "AutoModelForZeroShotObjectDetection",
        "MODEL_FOR_ZERO_SHOT_OBJECT_DETECTION_MAPPING_NAMES",
        (),
        "boxes scored against free-text labels",
    ),
    Task(
        "semantic-segmentation",
        "AutoModelForSemanticSegmentation",
        "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES",
        ("image-segmentation",),
        "one label per pixel",
    ),
    Task(
        "depth-estimation",
        "AutoModelForDepthEstimation",
        "MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES",
        (),
        "depth per pixel",
    ),
    Task(
        "keypoint-detection",
        "AutoModelForKeypointDetection",
        "MODEL_FOR_KEYPOINT_DETECTION_MAPPING_NAMES",
        (),
        "keypoints, scores and descriptors",
    ),
    Task(
        "pose-estimation",
        "AutoModelForPoseEstimation",
        "MODEL_FOR_POSE_ESTIMATION_MAPPING_NAMES",
        ("keypoint-detection-top-down", "pose"),
        "keypoint heatmaps for a cropped person (ViTPose)",
    ),
    Task(
        "masked-im",
        "AutoModelForMaskedImageModeling",
        "MODEL_FOR_MASKED_IMAGE_MODELING_MAPPING_NAMES",
        ("masked-image-modeling",),
        "reconstruct masked image patches",
    ),
    Task(
        "image-to-image",
        "AutoModelForImageToImage",
        "MODEL_FOR_IMAGE_TO_IMAGE_MAPPING_NAMES",
        ("image-super-resolution",),
        "an image in, an image out (super-resolution)",
    ),
    Task(
        "zero-shot-image-classification",
        "AutoModelForZeroShotImageClassification",
        "MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES",
        (),
        "image-text similarity (CLIP-style)",
    ),
    Task(
        "audio-classification",
        "AutoModelForAudioClassification",
        "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES",
        (),
        "one label per audio clip",
    ),
    Task(
        "audio-frame-classification",
        "AutoModelForAudioFrameClassification",
        "MODEL_FOR_AUDIO_FRAME_CLASSIFICATION_MAPPING_NAMES",
        (),
        "one label per audio frame (diarization)",
    ),
    Task(
        "audio-xvector",
        "AutoModelForAudioXVector",
        "MODEL_FOR_AUDIO_XVECTOR_MAPPING_NAMES",
        (),
        "speaker embeddings (x-vectors)",
    ),
    Task(
        "ctc",
        "AutoModelForCTC",
        "MODEL_FOR_CTC_MAPPING_NAMES",
        ("automatic-speech-recognition-ctc", "speech-recognition-ctc"),
        "speech recognition with a CTC head: character logits per frame",
    ),
    Task(
        "fill-mask",
        "AutoModelForMaskedLM",
        "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
        ("masked-lm",),
        "predict masked tokens",
    ),
    Task(
        "feature-extraction",
        "AutoModel",
        "MODEL_MAPPING_NAMES",
        ("default", "bare"),
        "bare model: hidden states (embeddings)",
    ),
    Task(
        "image-feature-extraction",
        "AutoModel",
        "MODEL_FOR_IMAGE_MAPPING_NAMES",
        ("image-embedding",),
        "bare vision model: image embeddings",
    ),
)

_BY_NAME: dict[str, Task] = {}
for _task in TASKS:
    for _name in (_task.name, *_task.synonyms):
        _BY_NAME[_name] = _task

BARE_TASK = "feature-extraction"


def task_names() -> list[str]:
    """Canonical names of every supported task, in display order."""
    return sorted(task.name for task in TASKS)


def get_task(name: str) -> Task:
    """Look a task up by name or synonym.

    >>> get_task("sentiment-analysis").name
    'text-classification'
    """
    task = _BY_NAME.get(name.strip().lower())
    if task is None:
        raise TaskError(
            f"Unknown task '{name}'. Supported tasks: {', '.join(task_names())} "
            "(run `onnxport tasks` for synonyms).",
            task=name,
            available=task_names(),
        )
    return task


def tasks_for_model_type(model_type: str) -> list[str]:
    """Supported tasks for which transformers has a head for `model_type`."""
    return sorted(task.name for task in TASKS if task.has_head(model_type))


def resolve_task(task: Task, model_type: str) -> Task:
    """The task as this architecture exports it: speech recognition is CTC for wav2vec2 & co.

    Likewise text-to-audio is text-to-spectrogram for SpeechT5 (a decoder loop and a vocoder)
    and text-to-audio-with-past for MusicGen (codebook tokens, then an audio codec).

    `automatic-speech-recognition` names both the encoder-decoder (Whisper) and the CTC
    (wav2vec2) forms, as transformers' pipeline does; the head the model type has decides.
    """
    if task.name == "automatic-speech-recognition" and not task.has_head(model_type):
        ctc = get_task("ctc")
        if ctc.has_head(model_type):
            return ctc
    if task.name == "text-to-audio" and not task.has_head(model_type):
        for name in ("text-to-spectrogram", "text-to-audio-with-past"):
            if get_task(name).has_head(model_type):
                return get_task(name)
    return task


def check_task_for(task: Task, model_type: str) -> None:
    """Raise a TaskError naming the alternatives when `model_type` has no head for `task`."""
    if task.has_head(model_type):
        return
    available = tasks_for_model_type(model_type)
    if not available:
        raise UnsupportedModelError(
            f"Architecture '{model_type}' has no head for any supported task "
            f"({', '.join(task_names())}). Run `onnxport architectures` for what is supported.",
            model_type=model_type,
        )
    raise TaskError(
        f"Architecture '{model_type}' has no head for task '{task.name}'. "
        f"Tasks it supports: {', '.join(available)}.",
        task=task.name,
        model_type=model_type,
        available=available,
    )


def infer_task(config: PretrainedConfig) -> Task:
    """Pick the task from `config.architectures`; the bare model when no head matches.

    A checkpoint saved from `BertForQuestionAnswering` gives question-answering; one saved
    from `BertModel`, `BertForPreTraining` or with no `architectures` gives feature-extraction.
    """
    model_type = config.model_type
    architectures = list(getattr(config, "architectures", None) or [])
    matches = [
        task for task in TASKS
        if (head := task.model_classes().get(model_type)) is not None and head in architectures
    ]  # fmt: skip
    # A task that names the type wins over one its head class merely maps (Pix2Struct's
    # head is image-text-to-text's too; image-to-text exports it).
    named = [task for task in matches if task.model_types and model_type in task.model_types]
    if named or matches:
        return (named or matches)[0]
    bare = get_task(BARE_TASK)
    check_task_for(bare, model_type)
    if architectures:
        logger.info(
            "No supported task head matches %s; exporting the bare model (%s).",
            ", ".join(architectures),
            BARE_TASK,
        )
    return bare


# What a tokenizer returns when neither it nor the architecture says (BERT-style).
_FALLBACK_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def tokenizer_input_names(
    config: Any, tokenizer: Any | None, *, accepted: Collection[str] | None = None
) -> list[str]:
    """`model_input_names` of the given tokenizer, else of the architecture's tokenizer class.

    When neither says (Transformers 5 maps no tokenizer class to Llama), the BERT-style
    fallback is cut to the names in `accepted` (the model's forward), so a Llama spec does
    not list a `token_type_ids` its tokenizer never returns.
    """
    if tokenizer is not None and getattr(tokenizer, "model_input_names", None):
        return list(tokenizer.model_input_names)
    from transformers.models.auto.tokenization_auto import (
        TOKENIZER_MAPPING_NAMES,
        tokenizer_class_from_name,
    )

    class_name = TOKENIZER_MAPPING_NAMES.get(config.model_type)
    if isinstance(class_name, (tuple, list)):
        class_name = next((name for name in class_name if name), None)
    tokenizer_class = tokenizer_class_from_name(class_name) if class_name else None
    names = getattr(tokenizer_class, "model_input_names", None)
    if names:
        return list(names)
    return [n for n in _FALLBACK_INPUTS if accepted is None or n in accepted or n == "input_ids"]
