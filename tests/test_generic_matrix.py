"""Slow: the generic path on encoders onnxport does not claim as tested (`make test-slow`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

import onnxport
from helpers import assert_outputs_close, tokenize
from model_table import EXTRA_CASES
from onnxport.coverage.support import ENCODER_TASKS
from onnxport.runtime import ORT_MODEL_CLASSES
from onnxport.tasks import get_task, tasks_for_model_type

pytestmark = pytest.mark.slow


def _params() -> list[object]:
    params = []
    for model_type, case in sorted(EXTRA_CASES.items()):
        for task in (t for t in tasks_for_model_type(model_type) if t in ENCODER_TASKS):
            reason = case.xfail.get(task) or case.xfail.get("*")
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            params.append(pytest.param(model_type, task, id=f"{model_type}-{task}", marks=marks))
    return params


@pytest.mark.parametrize(("model_type", "task"), _params())
def test_generic_export(
    model_type: str, task: str, tmp_path: Path, checkpoint: Callable[[str, str], Path]
) -> None:
    ckpt = checkpoint(model_type, task)
    result = onnxport.export(ckpt, tmp_path / "out", task=task)
    assert result.validation is not None
    assert result.validation.passed
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    inputs = tokenize(tokenizer, task)
    pt_model = get_task(task).auto_model_class().from_pretrained(ckpt).eval()
    with torch.no_grad():
        expected = pt_model(**inputs)
    actual = ORT_MODEL_CLASSES[task].from_pretrained(tmp_path / "out")(**inputs)
    assert_outputs_close(actual, expected, inputs["attention_mask"].numpy())
