"""Every tested architecture x task: exported through the API and the CLI, validated, and
run through its ORT class and a plain InferenceSession against PyTorch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from transformers import AutoTokenizer

import onnxport
from helpers import assert_outputs_close, tokenize
from model_table import CASES
from onnxport.cli.main import main
from onnxport.coverage.support import TESTED_MODEL_TYPES, default_matrix_pairs, matrix_pairs
from onnxport.runtime import ORT_MODEL_CLASSES
from onnxport.tasks import get_task


def _params() -> list[object]:
    params = []
    default = set(default_matrix_pairs())
    for model_type, task in matrix_pairs():
        reason = CASES[model_type].xfail.get(task)
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        if (model_type, task) not in default:
            marks.append(pytest.mark.slow)  # suite time: `make test-slow` runs every pair
        params.append(pytest.param(model_type, task, id=f"{model_type}-{task}", marks=marks))
    return params


# The CLI export runs once per model type, on a pair the default suite runs.
_FIRST_TASK: dict[str, str] = {}
for _model_type, _task in default_matrix_pairs():
    _FIRST_TASK.setdefault(_model_type, _task)


def test_table_covers_every_tested_model_type() -> None:
    assert set(CASES) == set(TESTED_MODEL_TYPES)


def test_matrix_has_every_required_pair() -> None:
    pairs = set(matrix_pairs())
    required = {
        "bert", "distilbert", "roberta", "xlm-roberta", "albert", "electra",
        "deberta-v2", "mpnet", "camembert", "modernbert",
    }  # fmt: skip
    tasks = {"feature-extraction", "fill-mask", "text-classification",
             "token-classification", "question-answering", "multiple-choice"}  # fmt: skip
    for model_type in required:
        for task in tasks:
            if get_task(task).has_head(model_type):
                assert (model_type, task) in pairs


@pytest.mark.parametrize(("model_type", "task"), _params())
def test_export_validate_and_run(
    model_type: str, task: str, tmp_path: Path, checkpoint: Callable[[str, str], Path]
) -> None:
    ckpt = checkpoint(model_type, task)

    # Public API, task inferred from config.architectures.
    result = onnxport.export(ckpt, tmp_path / "api")
    assert result.task == task
    assert result.strategy == "dynamo"
    assert result.validation is not None
    assert result.validation.passed
    shapes = {check.inputs for check in result.validation.checks}
    assert len(shapes) == 2
    assert all("sequence 16" not in s for s in shapes)

    # CLI, task given explicitly: once per model type (the path is the same for every task;
    # exporting each pair twice doubled this matrix's share of the default suite).
    out = tmp_path / "api"
    if task == _FIRST_TASK[model_type]:
        out = tmp_path / "cli"
        assert main(["export", "onnx", "--model", str(ckpt), "--task", task, str(out)]) == 0
    assert {"model.onnx", "config.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    metadata = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert metadata["task"] == task
    assert metadata["opset"] == "18"
    assert metadata["source"] == str(ckpt)
    assert metadata["onnxport_version"] == onnxport.__version__

    # The ORT class against PyTorch on real tokenized text with padding.
    tokenizer = AutoTokenizer.from_pretrained(out)
    pt_model = get_task(task).auto_model_class().from_pretrained(ckpt).eval()
    ort_model = ORT_MODEL_CLASSES[task].from_pretrained(out)
    inputs = tokenize(tokenizer, task)
    with torch.no_grad():
        expected = pt_model(**inputs)
    actual = ort_model(**inputs)
    assert type(actual).__name__ == type(expected).__name__ or task == "feature-extraction"
    mask = inputs["attention_mask"].numpy()
    assert_outputs_close(actual, expected, mask)
    assert all(isinstance(v, torch.Tensor) for v in actual.values())

    # numpy in, numpy out.
    np_out = ort_model(**{k: v.numpy() for k, v in inputs.items()})
    assert all(isinstance(v, np.ndarray) for v in np_out.values())

    # A plain InferenceSession takes the tokenizer's output as is.
    if task != "multiple-choice":
        session = ort.InferenceSession(str(out / "model.onnx"))
        assert [i.name for i in session.get_inputs()] == list(tokenizer.model_input_names)
        feed = dict(tokenizer(["one short text", "and a longer second text"],
                              padding=True, return_tensors="np"))  # fmt: skip
        first = session.run(None, feed)[0]
        assert first.shape[0] == 2
        assert np.isfinite(first).all()
