"""Longformer: sliding windows and global attention in ONNX Runtime, against PyTorch.

The tiny model's window (2 tokens each side) is far shorter than the texts, which are not a
multiple of it, so windows, transformers' padding to the window and global tokens all
count; the ORT classes default `global_attention_mask` as each PyTorch head does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers

import onnxport
from onnxport.testing import tiny_config, tiny_model, tiny_tokenizer

SEP, CLS = 3, 2


def _export(task: str, folder: Path) -> tuple[Any, Any, Path]:
    tokenizer = tiny_tokenizer(["input_ids", "attention_mask"])
    config = tiny_config("longformer", tokenizer=tokenizer, attention_window=4)
    model = tiny_model(config, task)
    result = onnxport.export(model, folder, task=task, tokenizer=tokenizer)
    assert all(report.passed for report in result.reports)
    assert "global_attention_mask" in result.spec.input_names
    return model, tokenizer, folder


def _question_batch() -> dict[str, torch.Tensor]:
    """Two question + context rows with Longformer's three separators; the second padded."""
    rows = [
        [CLS, 11, 12, 13, SEP, SEP, *range(20, 32), SEP],
        [CLS, 14, 15, SEP, SEP, *range(40, 48), SEP],
    ]
    width = max(map(len, rows))
    ids = torch.zeros((2, width), dtype=torch.long)
    mask = torch.zeros((2, width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(row)
        mask[index, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def test_question_answering_matches_pytorch_with_given_and_default_global_tokens(
    tmp_path: Path,
) -> None:
    model, _, folder = _export("question-answering", tmp_path / "qa")
    ort_model = onnxport.ORTModelForQuestionAnswering.from_pretrained(folder)
    inputs = _question_batch()
    assert inputs["input_ids"].shape[1] % 4 != 0  # transformers pads to the window
    # Without a global mask each head chooses one (the question's tokens here).
    with torch.no_grad():
        expected = model(**inputs)
    got = ort_model(**inputs)
    torch.testing.assert_close(got.start_logits, expected.start_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.end_logits, expected.end_logits, atol=1e-4, rtol=1e-4)
    # A given one, with global tokens in the context too.
    marks = torch.zeros_like(inputs["input_ids"])
    marks[:, 0], marks[0, 9], marks[1, 6] = 1, 1, 1
    with torch.no_grad():
        expected = model(**inputs, global_attention_mask=marks)
    got = ort_model(**inputs, global_attention_mask=marks)
    torch.testing.assert_close(got.start_logits, expected.start_logits, atol=1e-4, rtol=1e-4)
    # The global tokens change the answer scores: the comparison above would see them missing.
    with torch.no_grad():
        local = model(**inputs, global_attention_mask=torch.zeros_like(marks))
    assert (local.start_logits - expected.start_logits).abs().max() > 1e-3


def test_classification_pipeline_matches_pytorch(tmp_path: Path) -> None:
    model, tokenizer, folder = _export("text-classification", tmp_path / "cls")
    texts = ["the quick brown fox jumps over the lazy dog again and again", "paris is"]
    reference = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer)
    ours = onnxport.pipeline("text-classification", model=folder)
    for want, got in zip(reference(texts, top_k=None), ours(texts, top_k=None), strict=True):
        assert [w["label"] for w in want] == [g["label"] for g in got]
        np.testing.assert_allclose([w["score"] for w in want], [g["score"] for g in got], atol=1e-5)


@pytest.mark.slow  # two more exports; QA and classification cover the attention in `make test`
@pytest.mark.parametrize("task", ["fill-mask", "multiple-choice"])
def test_other_heads_match_pytorch_by_default(tmp_path: Path, task: str) -> None:
    model, _, folder = _export(task, tmp_path / task)
    classes = {
        "fill-mask": onnxport.ORTModelForMaskedLM,
        "multiple-choice": onnxport.ORTModelForMultipleChoice,
    }
    ort_model = classes[task].from_pretrained(folder)
    inputs = _question_batch()
    if task == "multiple-choice":  # two choices per question, each with three separators
        inputs = {k: torch.stack([v, v.flip(0)], dim=0) for k, v in inputs.items()}
    with torch.no_grad():
        expected = model(**inputs).logits
    torch.testing.assert_close(ort_model(**inputs).logits, expected, atol=1e-4, rtol=1e-4)
