"""ORT model classes: loading, saving, calling conventions and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from helpers import assert_outputs_close, tokenize
from onnxport import ORTModelForFeatureExtraction, ORTModelForSequenceClassification
from onnxport.errors import ORTModelError


def test_export_on_the_fly_then_save_and_reload(tmp_path: Path, checkpoint) -> None:
    ckpt = checkpoint("distilbert", "text-classification")
    model = ORTModelForSequenceClassification.from_pretrained(ckpt, export=True)
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    inputs = tokenize(tokenizer, "text-classification")
    first = model(**inputs).logits

    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    names = {p.name for p in saved.iterdir()}
    assert {"model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    reloaded = ORTModelForSequenceClassification.from_pretrained(saved)
    torch.testing.assert_close(reloaded(**inputs).logits, first)
    assert reloaded.config.id2label == model.config.id2label

    pt_model = AutoModelForSequenceClassification.from_pretrained(ckpt).eval()
    with torch.no_grad():
        expected = pt_model(**inputs)
    assert_outputs_close(reloaded(**inputs), expected, None)


def test_numpy_in_numpy_out_and_pipeline_attributes(exported) -> None:
    folder = exported("bert", "feature-extraction")
    model = ORTModelForFeatureExtraction.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    out = model(**tokenizer(["a b c", "d"], padding=True, return_tensors="np"))
    assert isinstance(out.last_hidden_state, np.ndarray)
    assert out.pooler_output.shape[0] == 2
    assert model.device == torch.device("cpu")
    assert model.dtype == torch.float32
    assert model.can_generate() is False
    assert "ORTModelForFeatureExtraction" in repr(model)


def test_attention_mask_and_token_types_default_like_pytorch(exported, checkpoint) -> None:
    model = ORTModelForFeatureExtraction.from_pretrained(exported("bert", "feature-extraction"))
    reference = AutoModel.from_pretrained(checkpoint("bert", "feature-extraction")).eval()
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 13, 14, 3, 15]])
    # Only input_ids: each side fills in the mask and token types its own way.
    with torch.no_grad():
        expected = reference(input_ids=ids)
    got = model(input_ids=ids)
    for name in ("last_hidden_state", "pooler_output"):
        torch.testing.assert_close(got[name], expected[name], atol=1e-4, rtol=1e-4)


def test_wrong_input_name_is_refused(exported) -> None:
    model = ORTModelForFeatureExtraction.from_pretrained(exported("bert", "feature-extraction"))
    with pytest.raises(ORTModelError, match=r"Unexpected input.*pixel_values.*takes input_ids"):
        model(input_ids=torch.ones(1, 4, dtype=torch.long), pixel_values=torch.ones(1, 3))


def test_wrong_rank_and_dtype_are_refused(exported) -> None:
    model = ORTModelForFeatureExtraction.from_pretrained(exported("bert", "feature-extraction"))
    with pytest.raises(ORTModelError, match="has 1 dimension"):
        model(input_ids=torch.ones(4, dtype=torch.long))
    with pytest.raises(ORTModelError, match="dtype"):
        model(input_ids=np.array([["a", "b"]]))


def test_ragged_lists_get_a_padding_hint(exported) -> None:
    model = ORTModelForFeatureExtraction.from_pretrained(exported("bert", "feature-extraction"))
    with pytest.raises(ORTModelError, match="padding=True"):
        model(input_ids=[[2, 5, 3], [2, 3]])


def test_folder_without_onnx(tmp_path: Path, checkpoint) -> None:
    with pytest.raises(ORTModelError, match=r"No \.onnx file"):
        ORTModelForFeatureExtraction.from_pretrained(checkpoint("bert", "feature-extraction"))


def test_onnx_file_that_does_not_load(tmp_path: Path, exported) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(exported("bert", "feature-extraction"), broken)
    (broken / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ORTModelError, match="cannot load"):
        ORTModelForFeatureExtraction.from_pretrained(broken)


def test_provider_and_session_options(tmp_path: Path, exported) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    model = ORTModelForFeatureExtraction.from_pretrained(
        exported("bert", "feature-extraction"), session_options=options,
        providers=["CPUExecutionProvider"],
    )  # fmt: skip
    assert model.providers == ["CPUExecutionProvider"]
    # What the session itself holds (ORT's copy), and the file only these options ask for.
    used = model.session.get_session_options()
    assert used.intra_op_num_threads == 1
    assert used.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert (tmp_path / "optimized.onnx").is_file()


def test_pick_a_file_by_name(tmp_path: Path, exported) -> None:
    folder = tmp_path / "two"
    shutil.copytree(exported("bert", "feature-extraction"), folder)
    shutil.copy(folder / "model.onnx", folder / "model_copy.onnx")
    model = ORTModelForFeatureExtraction.from_pretrained(folder, file_name="model_copy.onnx")
    assert model.file_name == "model_copy.onnx"


def test_external_data_on_request(tmp_path: Path, checkpoint) -> None:
    import stat

    import onnxport

    result = onnxport.export(checkpoint("bert", "fill-mask"), tmp_path / "out", external_data=True)
    assert result.validation is not None
    assert result.validation.passed
    assert (tmp_path / "out" / "model.onnx.data").stat().st_size > 0
    mode = stat.S_IMODE((tmp_path / "out").stat().st_mode)
    assert mode & stat.S_IRGRP, oct(mode)  # not left private like a temp folder
    model = onnxport.ORTModelForMaskedLM.from_pretrained(tmp_path / "out")
    assert model(input_ids=torch.tensor([[2, 7, 8, 3]])).logits.shape[:2] == (1, 4)


def test_loading_with_the_class_of_another_task(exported) -> None:
    with pytest.raises(ORTModelError, match=r"exported for fill-mask.*ORTModelForMaskedLM"):
        ORTModelForFeatureExtraction.from_pretrained(exported("bert", "fill-mask"))


def test_torch_free_output_classes_have_transformers_fields() -> None:
    """runtime.outputs' twins declare the fields transformers' own classes have, in order."""
    import dataclasses

    from transformers import modeling_outputs

    from onnxport.runtime.outputs import OUTPUT_FIELDS

    for name, fields in OUTPUT_FIELDS.items():
        declared = tuple(f.name for f in dataclasses.fields(getattr(modeling_outputs, name)))
        assert fields == declared, name
