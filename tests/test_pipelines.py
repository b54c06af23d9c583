"""Pipelines on ONNX Runtime give PyTorch's results: same labels/answers, scores within 1e-4."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import transformers
from transformers import AutoTokenizer

import onnxport
from onnxport.errors import TaskError
from onnxport.runtime import ORT_MODEL_CLASSES
from onnxport.runtime.qa_pipeline import QuestionAnsweringPipeline
from onnxport.tasks import get_task

QA = {
    "question": ["What is the capital of France?", "Who jumps?"],
    "context": [
        "Paris is the capital of France and its largest city.",
        "The quick brown fox jumps over the lazy dog.",
    ],
}
INPUTS: dict[str, tuple[Any, dict[str, Any]]] = {
    "feature-extraction": (["Paris is lovely.", "The fox jumps over the dog today."], {}),
    "fill-mask": (["paris is the [MASK] of france.", "the quick [MASK] fox."], {"top_k": 3}),
    "text-classification": (["good tools make hard work easy", "where is the station?"], {}),
    "token-classification": (["the quick brown fox in paris"], {}),
}


def assert_same(actual: Any, expected: Any, path: str = "") -> None:
    if isinstance(expected, dict):
        assert set(actual) == set(expected), path
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), path
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{index}]")
    elif isinstance(expected, (float, np.floating)):
        assert abs(float(actual) - float(expected)) <= 1e-4, (path, actual, expected)
    else:
        assert actual == expected, (path, actual, expected)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
@pytest.mark.parametrize("task", sorted(INPUTS))
def test_pipelines_match_pytorch(model_type: str, task: str, exported, checkpoint) -> None:
    folder = exported(model_type, task)
    texts, kwargs = INPUTS[task]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pt_model = get_task(task).auto_model_class().from_pretrained(checkpoint(model_type, task))
    expected = transformers.pipeline(task, model=pt_model.eval(), tokenizer=tokenizer)(
        texts, **kwargs
    )

    ours = onnxport.pipeline(task, model=folder)(texts, **kwargs)
    assert_same(ours, expected)

    # An ORT model also works inside transformers.pipeline itself.
    ort_model = ORT_MODEL_CLASSES[task].from_pretrained(folder)
    theirs = transformers.pipeline(task, model=ort_model, tokenizer=tokenizer)(texts, **kwargs)
    assert_same(theirs, expected)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
def test_question_answering_matches_pytorch(model_type: str, exported, checkpoint) -> None:
    folder = exported(model_type, "question-answering")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pt_model = (
        get_task("question-answering")
        .auto_model_class()
        .from_pretrained(checkpoint(model_type, "question-answering"))
    )
    reference = QuestionAnsweringPipeline(model=pt_model.eval(), tokenizer=tokenizer)
    qa = onnxport.pipeline("question-answering", model=folder)
    for kwargs in ({}, {"top_k": 3}, {"top_k": 2, "max_seq_len": 32, "doc_stride": 8}):
        expected = reference(**QA, **kwargs)
        assert_same(qa(**QA, **kwargs), expected)
    single = qa(question=QA["question"][0], context=QA["context"][0])
    assert QA["context"][0][single["start"] : single["end"]] == single["answer"]


def test_token_classification_grouped_entities(exported, checkpoint) -> None:
    folder = exported("bert", "token-classification")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pt_model = (
        get_task("ner")
        .auto_model_class()
        .from_pretrained(checkpoint("bert", "token-classification"))
    )
    texts = ["the quick brown fox in paris"]
    args = {"aggregation_strategy": "simple"}
    expected = transformers.pipeline("ner", model=pt_model.eval(), tokenizer=tokenizer, **args)
    ours = onnxport.pipeline("ner", model=folder, **args)
    assert_same(ours(texts), expected(texts))


def test_pipeline_exports_a_checkpoint_on_the_fly(checkpoint) -> None:
    ckpt = checkpoint("electra", "text-classification")
    classify = onnxport.pipeline("sentiment-analysis", model=ckpt)
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    pt_model = get_task("text-classification").auto_model_class().from_pretrained(ckpt)
    expected = transformers.pipeline("text-classification", model=pt_model.eval(),
                                     tokenizer=tokenizer)("hello world")  # fmt: skip
    assert_same(classify("hello world"), expected)


def test_multiple_choice_has_no_pipeline() -> None:
    with pytest.raises(TaskError, match="no pipeline for 'multiple-choice'"):
        onnxport.pipeline("multiple-choice", model="unused")


def test_question_too_long_for_the_window(exported) -> None:
    qa = onnxport.pipeline("question-answering", model=exported("bert", "question-answering"))
    with pytest.raises(ValueError, match="leaves no room for the context"):
        qa(question="where is the station " * 10, context="Paris.", max_seq_len=16)
