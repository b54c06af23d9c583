"""TensorFlow checkpoints (`tf_model.h5` + config.json) in, ONNX out, without TensorFlow.

The fixtures under tests/fixtures/tf/ were written by TensorFlow itself
(scripts/make_tf_fixtures.py, Transformers 4.44 + TensorFlow 2.15 in a throwaway
environment), with the TF model's outputs on fixed inputs: the mapped weights are checked
against TensorFlow, and each export against PyTorch as usual.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers

from onnxport import export
from onnxport.exporters.load import load_model
from onnxport.exporters.tf_checkpoint import pytorch_name, read_h5_weights, to_pytorch_layout
from onnxport.runtime import (
    ORTModelForMaskedLM,
    ORTModelForQuestionAnswering,
    ORTModelForSequenceClassification,
)
from test_errors import assert_nothing_written, assert_one_error_line, run_cli

FIXTURES = Path(__file__).parent / "fixtures" / "tf"
AUTO = {
    "bert": transformers.AutoModelForSequenceClassification,
    "distilbert": transformers.AutoModelForQuestionAnswering,
    "roberta": transformers.AutoModelForMaskedLM,
    "gpt2": transformers.AutoModelForCausalLM,
}
ORT = {
    "bert": ORTModelForSequenceClassification,
    "distilbert": ORTModelForQuestionAnswering,
    "roberta": ORTModelForMaskedLM,
}


def _reference(name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The fixed inputs and TensorFlow's outputs on them."""
    stored = np.load(FIXTURES / name / "tf_reference.npz")
    inputs = {k.removeprefix("input."): stored[k] for k in stored if k.startswith("input.")}
    outputs = {k.removeprefix("output."): stored[k] for k in stored if k.startswith("output.")}
    return inputs, outputs


def _assert_matches_tf(name: str, outputs: Any, mask: np.ndarray) -> None:
    _, expected = _reference(name)
    for key, want in expected.items():
        got = np.asarray(outputs[key])
        assert got.shape == want.shape, key
        keep = mask.astype(bool) if want.ndim >= 2 and want.shape[1] == mask.shape[1] else ...
        np.testing.assert_allclose(got[keep], want[keep], atol=1e-5, rtol=0, err_msg=key)


def test_fixtures_are_small_and_tensorflow_made() -> None:
    for name in AUTO:
        folder = FIXTURES / name
        assert {"config.json", "tf_model.h5", "tf_reference.npz"} <= {
            p.name for p in folder.iterdir()
        }
        assert (folder / "tf_model.h5").stat().st_size < 1024 * 1024
        assert not list(folder.glob("*.safetensors"))
        assert not list(folder.glob("*.bin"))


@pytest.mark.parametrize("name", sorted(AUTO))
def test_mapped_weights_reproduce_tensorflow(name: str) -> None:
    """The PyTorch class filled from tf_model.h5 gives TensorFlow's outputs."""
    model = load_model(FIXTURES / name, AUTO[name])
    inputs, _ = _reference(name)
    with torch.no_grad():
        outputs = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    tensors = {k: v.numpy() for k, v in outputs.items() if isinstance(v, torch.Tensor)}
    _assert_matches_tf(name, tensors, inputs["attention_mask"])


@pytest.mark.parametrize("name", ["bert", "distilbert", "roberta"])
def test_export_from_tf_checkpoint_matches_tensorflow(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / name  # capsys: the CLI prints the validation block
    code, printed, err = run_cli(
        ["export", "onnx", "--model", str(FIXTURES / name), str(out)], capsys
    )
    assert code == 0, err
    assert "all values close" in printed
    task = (FIXTURES / name / "TASK").read_text().strip()
    assert f"Task {task}" in printed + err
    inputs, _ = _reference(name)
    outputs = ORT[name].from_pretrained(out)(**inputs)
    _assert_matches_tf(name, outputs, inputs["attention_mask"])


def test_gpt2_tf_checkpoint_exports_for_generation(tmp_path: Path) -> None:
    result = export(FIXTURES / "gpt2", tmp_path / "gpt2")
    assert result.task == "text-generation"
    assert all(report.passed for report in result.reports)


def test_head_checkpoint_into_the_bare_model_warns_about_the_unused_head(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result = export(FIXTURES / "bert", tmp_path / "out", task="feature-extraction")
    assert result.validation is not None
    assert result.validation.passed
    assert "head are not used by BertModel" in caplog.text
    assert "classifier/kernel" in caplog.text


def _broken(tmp_path: Path, case: str) -> tuple[Path, list[str], str]:
    """A damaged copy of a fixture: (folder, extra CLI args, expected error fragment)."""
    source = "distilbert" if case == "wrong architecture" else "bert"
    folder = tmp_path / case.replace(" ", "-")
    shutil.copytree(FIXTURES / source, folder)
    config = json.loads((folder / "config.json").read_text())
    if case == "wrong architecture":  # DistilBERT weights under a BERT config
        bert = json.loads((FIXTURES / "bert" / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(bert))
        return folder, [], "match no parameter of BertForSequenceClassification"
    if case == "config does not fit":
        config["intermediate_size"] = 40
        (folder / "config.json").write_text(json.dumps(config))
        return folder, [], "do not fit its config.json"
    if case == "head missing":
        return folder, ["--task", "question-answering"], "qa_outputs.weight"
    data = (folder / "tf_model.h5").read_bytes()
    (folder / "tf_model.h5").write_bytes(data[: len(data) // 3])
    return folder, [], "is not a readable Keras weights file"


@pytest.mark.parametrize(
    "case", ["wrong architecture", "config does not fit", "head missing", "truncated file"]
)
def test_tf_checkpoint_problems_are_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, extra, fragment = _broken(tmp_path, case)
    out = tmp_path / "out"
    code, _, err = run_cli(["export", "onnx", "--model", str(folder), *extra, str(out)], capsys)
    assert code == 2
    assert_one_error_line(err, fragment)
    assert_nothing_written(tmp_path, out)


def test_names_and_layouts() -> None:
    assert pytorch_name(
        "tf_bert_model/bert/encoder/layer_._11/attention/self/query/kernel:0"[:-2]
    ) == (
        "bert.encoder.layer.11.attention.self.query.weight",
        True,
    )
    assert pytorch_name("m/bert/embeddings/LayerNorm/gamma") == (
        "bert.embeddings.LayerNorm.weight",
        False,
    )
    assert pytorch_name("m/bn/moving_variance") == ("bn.running_var", False)
    # A Keras Conv2D kernel is (height, width, in, out); torch's Conv2d weight is (out, in, h, w).
    conv = torch.nn.Conv2d(3, 5, kernel_size=(2, 4))
    keras = conv.weight.detach().numpy().transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(
        to_pytorch_layout(keras, True, (5, 3, 2, 4)), conv.weight.detach().numpy()
    )
    # GPT-2's TF Conv1D bias is (1, n).
    assert to_pytorch_layout(np.zeros((1, 6)), False, (6,)).shape == (6,)


def test_shared_embedding_is_read_once() -> None:
    """Roberta's tied embedding is stored under two Keras layers; it is one weight."""
    weights = read_h5_weights(FIXTURES / "roberta" / "tf_model.h5")
    names = [n for n in weights if n.endswith("word_embeddings/weight")]
    assert names == ["tf_roberta_for_masked_lm/roberta/embeddings/word_embeddings/weight"]
