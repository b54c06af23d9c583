"""Capture strategies: dynamo first, a logged fallback, and a clear failure when all fail."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
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


def _wrapped(error: Exception):
    """A strategy failing as torch.onnx does: its own error, raised from what tracing hit."""

    def run(self, module, args, spec, opset, path, external_data) -> None:
        try:
            raise error
        except type(error) as cause:
            raise RuntimeError("Failed to export the model with torch.export.") from cause

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


def test_a_bug_in_onnxport_under_tracing_is_not_hidden_by_the_fallback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    checkpoint,
) -> None:
    from onnxport.exporters import api, spec

    real_capture = api.capture

    def capture_with_a_bug(*args, **kwargs):
        # While capturing, run_reference (onnxport's code, which torch traces through the
        # capture wrapper) meets a NameError: torch.onnx wraps it in its own error, the
        # TorchScript tracer would hit it again, and the user must see it rather than "every
        # exporter failed".
        with monkeypatch.context() as scoped:
            scoped.delattr(spec, "flatten_outputs")
            return real_capture(*args, **kwargs)

    monkeypatch.setattr(api, "capture", capture_with_a_bug)
    monkeypatch.setattr(TorchScriptStrategy, "run", _fail("the fallback must not run"))
    out = tmp_path / "out"
    ckpt = str(checkpoint("bert", "text-classification"))
    with pytest.raises(NameError, match="flatten_outputs") as info:
        onnxport.export(ckpt, out)
    assert info.value.__traceback__ is not None
    assert traceback.extract_tb(info.value.__traceback__)[-1].name == "run_reference"
    assert not out.exists()
    # The CLI reports it as the bug it is, in one line.
    assert main(["export", "onnx", "--model", ckpt, str(out)]) == 1
    err = capsys.readouterr().err
    assert "Error: unexpected NameError: name 'flatten_outputs' is not defined" in err
    assert "the fallback must not run" not in err


def test_an_error_of_the_model_under_tracing_still_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, checkpoint
) -> None:
    # An AttributeError the strategy meets outside onnxport's code (torch's, the model's) is a
    # limit of that exporter: the next one is tried.
    monkeypatch.setattr(DynamoStrategy, "run", _wrapped(AttributeError("'FakeTensor' has no x")))
    with caplog.at_level(logging.INFO, logger="onnxport"):
        result = onnxport.export(checkpoint("bert", "text-classification"), tmp_path / "out")
    assert result.strategy == "torchscript"
    assert "'FakeTensor' has no x" in caplog.text


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


def test_axes_less_squeeze_keeps_a_batch_of_one(tmp_path: Path) -> None:
    """MBart's `shift_tokens_right` calls `.squeeze()`: traced at batch 2, it must not drop
    the batch axis at batch 1 (validation runs batch 1; ONNX Runtime failed in Unsqueeze)."""
    import onnx

    from onnxport.testing import tiny_config, tiny_model

    model = tiny_model(tiny_config("mbart"), "text-classification")
    result = onnxport.export(model, tmp_path / "out", task="text-classification")
    assert result.validation is not None
    assert result.validation.passed
    graph = onnx.load(str(tmp_path / "out" / "model.onnx"), load_external_data=False).graph
    assert any(n.op_type == "Squeeze" and len(n.input) == 2 for n in graph.node)


class _ScanOps(torch.nn.Module):
    """Ops torch.onnx has no translation for, which onnxport supplies."""

    def forward(self, x: torch.Tensor, y: torch.Tensor, bounds: torch.Tensor) -> tuple:
        big, where_big = torch.cummax(x, dim=1)
        small, where_small = torch.cummin(y, dim=-1)
        torch._check_tensor_all(x > -100)  # lowers to aten._is_all_true
        left = torch.searchsorted(bounds, y.float())
        right = torch.searchsorted(bounds, y.float(), right=True)
        return big, where_big, small, where_small, left, right


def test_scan_ops_without_a_torch_onnx_translation_match_torch(tmp_path: Path) -> None:
    # Ties included (small integers): torch returns the last index reaching the extreme.
    from torch.export import Dim

    from onnxport.exporters.capture import _translations

    module = _ScanOps()
    bounds = torch.tensor([-2.0, 0.0, 0.0, 2.0])
    example = (torch.randint(-3, 4, (2, 7, 3)), torch.randint(-3, 4, (2, 5)), bounds)
    auto = {0: Dim.AUTO, 1: Dim.AUTO}
    program = torch.onnx.export(
        module, example, dynamo=True, custom_translation_table=_translations(),
        dynamic_shapes=(auto, auto, None),
    )  # fmt: skip
    assert program is not None
    program.save(str(tmp_path / "scan.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "scan.onnx"))
    names = [i.name for i in session.get_inputs()]
    generator = torch.Generator().manual_seed(1)
    for batch, length in ((3, 9), (1, 4)):
        x = torch.randint(-3, 4, (batch, length, 3), generator=generator)
        y = torch.randint(-3, 4, (batch, length + 2), generator=generator)
        got = session.run(
            None, dict(zip(names, (x.numpy(), y.numpy(), bounds.numpy()), strict=True))
        )
        for expected, value in zip(module(x, y, bounds), got, strict=True):
            np.testing.assert_array_equal(value, expected.numpy())
