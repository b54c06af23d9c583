"""Capture strategies: dynamo first, a logged fallback, and a clear failure when all fail."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

import onnxport
from onnxport.cli.main import main
from onnxport.errors import CaptureError, TaskError
from onnxport.exporters.capture import DynamoStrategy, TorchScriptStrategy


def _fail(message: str):
    def run(self, module, args, spec, opset, path, external_data) -> None:
        path.write_bytes(b"partial")
        raise RuntimeError(message)

    return run


def test_fallback_is_logged_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, checkpoint
) -> None:
    monkeypatch.setattr(DynamoStrategy, "run", _fail("unsupported op aten::frobnicate"))
    with caplog.at_level(logging.INFO, logger="onnxport"):
        result = onnxport.export(checkpoint("bert", "text-classification"), tmp_path / "out")
    assert result.strategy == "torchscript"
    assert result.validation is not None
    assert result.validation.passed
    assert "fallback torchscript exporter" in caplog.text
    assert "aten::frobnicate" in caplog.text


def test_every_strategy_failing_is_one_clear_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    checkpoint,
) -> None:
    monkeypatch.setattr(DynamoStrategy, "run", _fail("dynamo says no"))
    monkeypatch.setattr(TorchScriptStrategy, "run", _fail("tracer says no"))
    out = tmp_path / "out"
    ckpt = str(checkpoint("bert", "text-classification"))
    with pytest.raises(CaptureError) as info:
        onnxport.export(ckpt, out)
    assert [name for name, _ in info.value.failures] == ["dynamo", "torchscript"]
    assert main(["export", "onnx", "--model", ckpt, str(out)]) == 1
    err = capsys.readouterr().err
    assert "dynamo says no" in err
    assert "tracer says no" in err
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_export_a_loaded_model(tmp_path: Path, checkpoint) -> None:
    ckpt = checkpoint("roberta", "question-answering")
    model = AutoModelForQuestionAnswering.from_pretrained(ckpt)
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    result = onnxport.export(model, tmp_path / "out", tokenizer=tokenizer)
    assert result.task == "question-answering"
    assert result.validation is not None
    assert result.validation.passed
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    with pytest.raises(TaskError, match="no head for 'fill-mask'"):
        onnxport.export(model, tmp_path / "other", task="fill-mask")
