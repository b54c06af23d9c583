"""`onnxport export tflite`: static-shape TFLite files run by LiteRT and checked against PyTorch.

Needs the optional extra (`pip install 'onnxport[tflite]'`, which `make test` installs); the
tests skip with that reason where it is missing.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from onnxport.coverage.support import ENCODER_TASKS
from onnxport.testing import tiny_config, tiny_model
from test_errors import assert_nothing_written, assert_one_error_line, run_cli

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("litert_torch") is None
    or importlib.util.find_spec("ai_edge_litert") is None,
    reason="the tflite extra is not installed: pip install 'onnxport[tflite]'",
)


# BERT covers every encoder task in the default suite; the other two run in `make test-slow`.
@pytest.mark.parametrize(
    "model_type",
    [
        "bert",
        pytest.param("distilbert", marks=pytest.mark.slow),
        pytest.param("mobilebert", marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("task", ENCODER_TASKS)
def test_encoder_tasks_convert_and_validate(
    model_type: str, task: str, tmp_path: Path, checkpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    from onnxport.tflite.convert import export_tflite

    out = tmp_path / "out"
    result = export_tflite(
        checkpoint(model_type, task), out, task, batch_size=2, sequence_length=12
    )
    assert result.validation is not None
    assert result.validation.passed, result.validation.summary()
    assert len(result.validation.checks) >= 2
    assert (out / "model.tflite").stat().st_size == result.size_bytes
    record = json.loads((out / "tflite_config.json").read_text())
    assert record["task"] == task
    assert record["inputs"]["input_ids"]["shape"][-1] == 12
    assert record["inputs"]["input_ids"]["dtype"] == "int32"
    assert (out / "config.json").is_file()
    assert (out / "tokenizer_config.json").is_file()
    assert not capsys.readouterr().out  # the converter's progress lines are kept quiet


def test_the_file_is_fed_by_name_like_pytorch(tmp_path: Path, checkpoint) -> None:
    """Independent of our validation code: feed the file by name, as a mobile app does."""
    from ai_edge_litert.interpreter import Interpreter
    from transformers import AutoModelForSequenceClassification

    from onnxport.tflite.convert import export_tflite

    folder = checkpoint("bert", "text-classification")
    # Unvalidated, so this test alone fails if the names regress.
    export_tflite(folder, tmp_path / "out", batch_size=1, sequence_length=10, validate_export=False)
    interpreter = Interpreter(model_path=str(tmp_path / "out" / "model.tflite"))
    assert interpreter.get_signature_list() == {
        "serving_default": {
            "inputs": ["attention_mask", "input_ids", "token_type_ids"],
            "outputs": ["logits"],
        }
    }
    generator = torch.Generator().manual_seed(7)
    inputs = {
        "input_ids": torch.randint(5, 90, (1, 10), generator=generator),
        "token_type_ids": torch.zeros(1, 10, dtype=torch.long),
        "attention_mask": torch.ones(1, 10, dtype=torch.long),
    }
    runner = interpreter.get_signature_runner()
    got = runner(
        input_ids=inputs["input_ids"].numpy().astype(np.int32),
        attention_mask=inputs["attention_mask"].numpy().astype(np.int32),
        token_type_ids=inputs["token_type_ids"].numpy().astype(np.int32),
    )
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        want = model(**inputs).logits.numpy()
    np.testing.assert_allclose(got["logits"], want, atol=1e-4, rtol=0)


def test_vision_model(tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from onnxport.tflite.convert import export_tflite

    model = tiny_model(tiny_config("vit", image_size=32, patch_size=8), "image-classification")
    result = export_tflite(model, tmp_path / "vit", batch_size=2)
    assert result.validation is not None
    assert result.validation.passed, result.validation.summary()
    assert result.input_shapes["pixel_values"] == (2, 3, 32, 32)
    signature = Interpreter(model_path=str(result.tflite_path)).get_signature_list()
    assert signature["serving_default"]["inputs"] == ["pixel_values"]
    assert signature["serving_default"]["outputs"] == ["logits"]


@pytest.fixture(scope="module")
def wide_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BERT whose matrices outweigh the file's fixed overhead, with its fp32 TFLite file."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=99, hidden_size=128, intermediate_size=512, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=64,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("wide-bert")
    BertForMaskedLM(config).save_pretrained(folder / "checkpoint")
    return folder


@pytest.mark.parametrize(("mode", "bound"), [("fp16", 0.6), ("int8", 0.4)])
def test_quantized_files_are_smaller_and_validated(
    mode: str, bound: float, wide_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["export", "tflite", "--model", str(wide_bert / "checkpoint"), "--sequence-length", "8"]
    base = wide_bert / "fp32"
    if not base.exists():
        assert run_cli([*args, str(base)], capsys)[0] == 0
    code, printed, err = run_cli([*args, "--quantize", mode, str(tmp_path / mode)], capsys)
    assert code == 0, err
    assert "Validating TFLite model" in printed
    assert "all values close" in printed
    assert f"{mode};" in printed
    size = (tmp_path / mode / "model.tflite").stat().st_size
    ratio = size / (base / "model.tflite").stat().st_size
    assert ratio < bound, ratio
    assert json.loads((tmp_path / mode / "tflite_config.json").read_text())["quantize"] == mode


def test_generation_tasks_are_refused_in_one_line(
    tmp_path: Path, checkpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    folder = checkpoint("gpt2", "text-generation")
    code, _, err = run_cli(["export", "tflite", "--model", str(folder), str(out)], capsys)
    assert code == 1
    assert_one_error_line(err, "does not cover text-generation")
    assert_nothing_written(tmp_path, out)


def test_missing_extra_is_one_line(
    tmp_path: Path, checkpoint, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnxport.tflite import convert as tflite

    monkeypatch.setattr(tflite, "_importable", lambda module: module != "litert_torch")
    out = tmp_path / "out"
    folder = checkpoint("bert", "fill-mask")
    code, _, err = run_cli(["export", "tflite", "--model", str(folder), str(out)], capsys)
    assert code == 1
    assert_one_error_line(err, "needs litert-torch", "onnxport[tflite]")
    assert_nothing_written(tmp_path, out)
