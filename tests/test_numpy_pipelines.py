"""Torch-free pipelines (`backend="numpy"`) give the answers of transformers' PyTorch pipelines.

Each case runs the same inputs and keyword arguments through `onnxport.pipeline(...,
backend="numpy")` on the export and through transformers' pipeline (onnxport's own QA pipeline)
on the PyTorch model: same labels, spans and tokens; scores within `TOLERANCE`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import transformers
from PIL import Image
from transformers import AutoTokenizer

import onnxport
from onnxport.errors import ORTModelError
from onnxport.runtime import ORT_MODEL_CLASSES
from onnxport.runtime.numpy_pipelines import NUMPY_PIPELINE_TASKS
from onnxport.runtime.numpy_pipelines.base import NumpyPipeline
from onnxport.runtime.qa_pipeline import QuestionAnsweringPipeline
from onnxport.serve.runner import PipelineRunner
from onnxport.tasks import get_task
from onnxport.testing import tiny_config, tiny_model

TOLERANCE = 1e-4
LONG = "the quick brown fox jumps over the lazy dog near paris " * 14  # > 128 tokens
TEXTS = ["good tools make hard work easy", "where is the nearest train station?"]
# Out-of-vocabulary words split into subwords, so first/average/max differ from simple.
WORDS = "the parisian foxes jumped over sleepy cats in marseille"
PAIR = {"text": "the fox jumps", "text_pair": "over the lazy dog"}
QA = {
    "question": ["What is the capital of France?", "Who jumps?"],
    "context": [
        "Paris is the capital of France and its largest city.",
        "The quick brown fox jumps over the lazy dog.",
    ],
}
# Relabelled heads (configs only), so tags group and zero-shot finds its entailment id.
TAGS = {0: "O", 1: "B-PLACE", 2: "I-PLACE"}
NLI = {0: "contradiction", 1: "neutral", 2: "entailment"}
LABELS = {"token-classification": TAGS, "zero-shot-classification": NLI}

# task -> (inputs, call keyword arguments) cases; config relabelling per task below.
CASES: dict[str, list[tuple[Any, dict[str, Any]]]] = {
    "feature-extraction": [
        ("Paris is lovely.", {}),
        (TEXTS, {}),
        (TEXTS, {"return_tensors": True}),
        (TEXTS, {"batch_size": 2}),
        (LONG, {"truncation": True}),
        (TEXTS[0], {"tokenize_kwargs": {"max_length": 5, "truncation": True}}),
    ],
    "text-classification": [
        (TEXTS[0], {}),
        (TEXTS, {}),
        (TEXTS[0], {"top_k": 1}),
        (TEXTS, {"top_k": None}),
        (TEXTS, {"top_k": 2, "batch_size": 2}),
        (PAIR, {}),
        ([PAIR, PAIR | {"text_pair": "a cat"}], {"top_k": None}),
        (TEXTS, {"function_to_apply": "sigmoid", "top_k": None}),
        (TEXTS[1], {"function_to_apply": "none"}),
        (LONG, {"truncation": True}),
    ],
    "token-classification": [
        (WORDS, {}),
        ([WORDS, TEXTS[0]], {"batch_size": 2}),
        (WORDS, {"ignore_labels": []}),
        *((WORDS, {"aggregation_strategy": s}) for s in ("simple", "first", "average", "max")),
        (WORDS.split(), {"is_split_into_words": True, "aggregation_strategy": "first"}),
        (LONG, {"stride": 16, "aggregation_strategy": "simple"}),
        (LONG, {"stride": 32, "aggregation_strategy": "max", "ignore_labels": []}),
    ],
    "fill-mask": [
        ("paris is the [MASK] of france.", {}),
        ("paris is the [MASK] of france.", {"top_k": 3}),
        ("the quick [MASK] fox.", {"targets": ["brown", "lazy", "paris"]}),
        ("the quick [MASK] fox.", {"targets": "brown", "top_k": 3}),
        ("the [MASK] brown [MASK] jumps.", {"top_k": 2}),
        (["the quick [MASK] fox.", "paris is the [MASK] of france."], {"batch_size": 2}),
        (["the quick [MASK] fox."], {}),
    ],
    "zero-shot-classification": [
        (TEXTS[0], {"candidate_labels": ["work", "travel", "cats"]}),
        (TEXTS, {"candidate_labels": "work, travel, cats"}),
        (TEXTS[1], {"candidate_labels": ["work", "travel"], "multi_label": True}),
        (TEXTS[1], {"candidate_labels": ["work", "travel"], "multi_label": False}),
        (TEXTS[0], {"candidate_labels": ["travel"]}),
        (TEXTS[0], {"candidate_labels": ["a", "b"], "hypothesis_template": "It is about {}."}),
        (TEXTS, {"candidate_labels": ["work", "travel", "cats"], "batch_size": 2}),
    ],
}


def max_difference(actual: Any, expected: Any, path: str = "") -> float:
    """Assert the same structure and non-float values; return the largest float difference."""
    if hasattr(expected, "tolist") and not isinstance(expected, (float, np.floating)):
        expected = expected.tolist()  # torch tensors, numpy arrays
    if hasattr(actual, "tolist") and not isinstance(actual, (float, np.floating)):
        actual = actual.tolist()
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        assert list(actual) == list(expected), path
        return max(
            (max_difference(actual[k], expected[k], f"{path}.{k}") for k in expected), default=0.0
        )
    if isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)), path
        assert len(actual) == len(expected), path
        pairs = zip(actual, expected, strict=True)
        return max(
            (max_difference(a, e, f"{path}[{i}]") for i, (a, e) in enumerate(pairs)), default=0.0
        )
    if isinstance(expected, (float, np.floating)):
        assert isinstance(actual, (float, np.floating)), (path, actual)
        return abs(float(actual) - float(expected))
    assert actual == expected, (path, actual, expected)
    return 0.0


def assert_same(actual: Any, expected: Any) -> float:
    difference = max_difference(actual, expected)
    assert difference <= TOLERANCE, difference
    return difference


def relabel(config: Any, labels: dict[int, str]) -> None:
    config.id2label = dict(labels)
    config.label2id = {label: index for index, label in labels.items()}


@pytest.fixture(scope="module")
def pair(exported, checkpoint):
    """task -> (our numpy pipeline, transformers' PyTorch pipeline), built once per task."""
    cache: dict[str, tuple[Any, Any]] = {}

    def build(task: str) -> tuple[Any, Any]:
        if task not in cache:
            export_task = "text-classification" if task.startswith("zero-shot") else task
            folder = exported("bert", export_task)
            tokenizer = AutoTokenizer.from_pretrained(folder)
            auto = get_task(export_task).auto_model_class()
            pt_model = auto.from_pretrained(checkpoint("bert", export_task)).eval()
            source: Any = folder
            if task in LABELS:  # the same new labels on both models' configs
                source = ORT_MODEL_CLASSES[export_task].from_pretrained(folder)
                relabel(source.config, LABELS[task])
                relabel(pt_model.config, LABELS[task])
            ours = onnxport.pipeline(task, source, backend="numpy")
            if task == "question-answering":
                theirs = QuestionAnsweringPipeline(model=pt_model, tokenizer=tokenizer)
            else:
                theirs = transformers.pipeline(task, model=pt_model, tokenizer=tokenizer)
            cache[task] = (ours, theirs)
        return cache[task]

    return build


@pytest.mark.parametrize(
    ("task", "case"),
    [(task, index) for task, cases in CASES.items() for index in range(len(cases))],
)
def test_answers_equal_transformers(task: str, case: int, pair) -> None:
    inputs, kwargs = CASES[task][case]
    ours, theirs = pair(task)
    assert isinstance(ours, NumpyPipeline)
    assert_same(ours(inputs, **kwargs), theirs(inputs, **kwargs))


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"top_k": 3}, {"top_k": 2, "max_seq_len": 32, "doc_stride": 8}, {"max_answer_len": 2}],
)
def test_question_answering_equals_onnxports_pipeline(kwargs: dict[str, Any], pair) -> None:
    ours, theirs = pair("question-answering")
    assert_same(ours(**QA, **kwargs), theirs(**QA, **kwargs))
    one = {"question": QA["question"][0], "context": QA["context"][0]}
    assert_same(ours(one, **kwargs), theirs(one, **kwargs))
    answer = ours(**one)
    assert one["context"][answer["start"] : answer["end"]] == answer["answer"]


@pytest.mark.parametrize("problem_type", ["regression", "multi_label_classification"])
def test_default_function_follows_the_config(problem_type: str, pair) -> None:
    ours, theirs = pair("text-classification")
    for config in (ours.model.config, theirs.model.config):
        config.problem_type = problem_type
    try:
        assert_same(ours(TEXTS, top_k=None), theirs(TEXTS, top_k=None))
    finally:
        for config in (ours.model.config, theirs.model.config):
            config.problem_type = None


def test_a_folder_runs_on_numpy_by_name(exported) -> None:
    folder = exported("bert", "token-classification")
    ner = onnxport.pipeline("ner", folder, backend="numpy", aggregation_strategy="simple")
    assert isinstance(ner, NumpyPipeline)
    assert ner(WORDS) == ner([WORDS])[0]
    # Zero-shot on a classifier's export; torch is installed here, so transformers' pipeline.
    nli_folder = exported("bert", "text-classification")
    nli = onnxport.pipeline("zero-shot-classification", nli_folder)
    assert isinstance(nli, transformers.ZeroShotClassificationPipeline)
    assert not isinstance(nli, NumpyPipeline)
    ours = onnxport.pipeline("zero-shot-classification", nli_folder, backend="numpy")
    labels = {"candidate_labels": ["a", "b", "c"]}
    assert_same(ours(TEXTS, **labels), nli(TEXTS, **labels))


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    model = tiny_model(tiny_config("vit", image_size=32, patch_size=8), "image-classification")
    processor = transformers.ViTImageProcessorPil(size={"height": 32, "width": 32})
    folder = tmp_path_factory.mktemp("numpy-vit") / "model"
    onnxport.export(model, folder, task="image-classification", processor=processor)
    return folder, model.eval(), processor


@pytest.mark.parametrize(
    "kwargs", [{}, {"top_k": 1}, {"function_to_apply": "sigmoid"}, {"function_to_apply": "none"}]
)
def test_image_classification_equals_transformers(kwargs: dict[str, Any], vit) -> None:
    folder, model, processor = vit
    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((40, 52, 3)) * 255).astype("uint8")) for _ in range(3)]
    ours = onnxport.pipeline("image-classification", folder, backend="numpy")
    theirs = transformers.pipeline("image-classification", model=model, image_processor=processor)
    assert_same(ours(images, **kwargs), theirs(images, **kwargs))
    assert_same(ours(images[0], batch_size=2, **kwargs), theirs(images[0], **kwargs))
    assert_same(ours(images, batch_size=2, **kwargs), theirs(images, **kwargs))


def test_runner_runs_encoders_on_numpy(exported) -> None:
    folder = exported("bert", "token-classification")
    runner = PipelineRunner(folder)
    assert isinstance(runner.pipeline, NumpyPipeline)
    reference = onnxport.pipeline("token-classification", folder, backend="transformers")
    values = [outcome.value for outcome in runner.run([*TEXTS, WORDS])]
    assert_same(values, reference([*TEXTS, WORDS]))


def test_without_torch_only_numpy_tasks_build(exported, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "torch" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    folder = exported("bert", "text-classification")
    assert isinstance(onnxport.pipeline("text-classification", folder), NumpyPipeline)
    with pytest.raises(ORTModelError, match=r"needs torch, which is not installed: pip install"):
        onnxport.pipeline("text-generation", folder)
    with pytest.raises(ORTModelError, match="backend='transformers' needs torch"):
        onnxport.pipeline("text-classification", folder, backend="transformers")


def test_wrong_backend_or_task_is_one_line(exported) -> None:
    folder = exported("bert", "text-classification")
    with pytest.raises(ORTModelError, match="Unknown backend 'jax'"):
        onnxport.pipeline("text-classification", folder, backend="jax")
    with pytest.raises(ORTModelError, match="backend='numpy' has no text-generation pipeline"):
        onnxport.pipeline("text-generation", folder, backend="numpy")
    assert "zero-shot-classification" in NUMPY_PIPELINE_TASKS
