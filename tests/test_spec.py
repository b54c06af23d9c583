"""Export configurations (specs), dummy shapes, and the adapter registry."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import onnxruntime as ort
import pytest
import torch
from transformers import BertConfig, DistilBertConfig, PretrainedConfig, ViTConfig

import onnxport
from onnxport.errors import ExportOptionError, TaskError
from onnxport.exporters.adapters import ADAPTERS, AdapterRegistry, ExportAdapter
from onnxport.exporters.dummy import InputShape, trace_shape, validation_shapes
from onnxport.tasks import get_task, infer_task


def test_distilbert_bare_outputs() -> None:
    spec = onnxport.get_onnx_config(DistilBertConfig())
    assert list(spec.outputs) == ["last_hidden_state"]
    assert spec.outputs["last_hidden_state"] == {0: "batch_size", 1: "sequence_length"}
    assert spec.task == "feature-extraction"


def test_bert_inputs_follow_the_tokenizer_order() -> None:
    spec = onnxport.get_onnx_config("bert", task="question-answering")
    assert list(spec.inputs) == ["input_ids", "token_type_ids", "attention_mask"]
    assert list(spec.outputs) == ["start_logits", "end_logits"]
    assert spec.per_token_outputs == ("start_logits", "end_logits")


def test_multiple_choice_axes() -> None:
    spec = onnxport.get_onnx_config(BertConfig(), task="multiple-choice")
    assert spec.inputs["input_ids"] == {0: "batch_size", 1: "num_choices", 2: "sequence_length"}
    assert spec.outputs["logits"] == {0: "batch_size", 1: "num_choices"}


def test_classification_logits_have_only_a_batch_axis() -> None:
    spec = onnxport.get_onnx_config("roberta", task="sentiment-analysis")
    assert spec.task == "text-classification"
    assert spec.outputs == {"logits": {0: "batch_size"}}


def test_distilbert_ignores_token_type_ids_from_its_bert_tokenizer() -> None:
    spec = onnxport.get_onnx_config("distilbert", task="fill-mask")
    assert "token_type_ids" in spec.inputs
    assert spec.ignored_inputs == ("token_type_ids",)


def test_task_inference() -> None:
    config = BertConfig(architectures=["BertForTokenClassification"])
    assert infer_task(config).name == "token-classification"
    assert infer_task(BertConfig(architectures=["BertForPreTraining"])).name == (
        "feature-extraction"
    )
    assert infer_task(BertConfig()).name == "feature-extraction"


def test_task_synonyms_and_unknown() -> None:
    assert get_task("ner").name == "token-classification"
    assert get_task("masked-lm").name == "fill-mask"
    with pytest.raises(TaskError, match="Unknown task"):
        get_task("translate-everything")


def test_trace_and_validation_shapes_are_distinct() -> None:
    traced = trace_shape(2, 16)
    assert len({traced.batch_size, traced.sequence_length, traced.num_choices}) == 3
    shapes = validation_shapes(traced)
    assert shapes[0].batch_size == 1
    for shape in shapes:
        assert (shape.batch_size, shape.sequence_length) != (2, 16)
    assert shapes[1].padded
    with pytest.raises(ExportOptionError):
        trace_shape(1, 16)
    assert InputShape(4, 9).label() == "batch 4, sequence 9"


# --- adapters --------------------------------------------------------------------------------


def test_registry_refuses_duplicates() -> None:
    registry = AdapterRegistry()

    @registry.register("toy")
    class ToyAdapter(ExportAdapter):
        pass

    with pytest.raises(ValueError, match="already registered"):

        @registry.register("toy")
        class OtherToyAdapter(ExportAdapter):
            pass

    assert isinstance(registry.get("toy"), ToyAdapter)
    assert type(registry.get("unknown")) is ExportAdapter


def test_adapters_never_subclass_each_other() -> None:
    registry = AdapterRegistry()

    @registry.register("base-toy")
    class BaseToy(ExportAdapter):
        pass

    with pytest.raises(TypeError, match="subclasses another adapter"):

        @registry.register("derived-toy")
        class DerivedToy(BaseToy):
            pass


@pytest.fixture
def bert_without_token_types() -> Iterator[None]:
    """Temporarily register a user adapter for bert that drops token_type_ids."""

    @ADAPTERS.register("bert")
    class NoTokenTypes(ExportAdapter):
        atol = 5e-4

        def input_names(self, config, task, default):
            return [name for name in default if name != "token_type_ids"]

    try:
        yield
    finally:
        ADAPTERS.unregister("bert")


def test_a_registered_adapter_changes_the_export(
    bert_without_token_types: None, tmp_path: Path, checkpoint
) -> None:
    result = onnxport.export(checkpoint("bert", "fill-mask"), tmp_path / "out")
    assert result.spec.input_names == ["input_ids", "attention_mask"]
    assert result.spec.atol == 5e-4
    assert result.validation is not None
    assert result.validation.passed
    session = ort.InferenceSession(str(result.onnx_path))
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]


def test_registry_ships_no_adapter_for_the_tested_encoders() -> None:
    # The generic path covers them; an adapter here would be code nothing needs.
    from onnxport.coverage.support import TESTED_MODEL_TYPES

    assert not set(ADAPTERS.registered()) & set(TESTED_MODEL_TYPES)


class _Images(torch.nn.Module):
    """Runs on 32x32 images only; any other size raises `refusal` (as a model or adapter would)."""

    main_input_name = "pixel_values"

    def __init__(self, refusal: type[Exception]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.refusal = refusal

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if tuple(pixel_values.shape[-2:]) != (32, 32):
            raise self.refusal(f"images must be 32x32, not {tuple(pixel_values.shape[-2:])}")
        return pixel_values.mean() * self.weight


class _Spectrograms(_Images):
    """Refuses every spectrogram layout with `refusal`."""

    main_input_name = "input_features"

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        raise self.refusal(f"no layout {tuple(input_features.shape)}")


def test_image_size_refusal_fixes_the_size_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from onnxport.exporters import modality

    with caplog.at_level(logging.INFO, logger="onnxport.exporters.modality"):
        templates = modality.input_templates(
            _Images(ValueError), ViTConfig(image_size=32), ["pixel_values"]
        )
    assert templates["pixel_values"] == ("batch_size", 3, 32, 32)
    assert "only at its configured size" in caplog.text
    assert "images must be 32x32" in caplog.text


# A bug inside the model call (an adapter's AttributeError, a NameError, a failed assert) is
# no answer about which shapes the model takes: it must surface, not fix the image size or
# skip an audio layout.
@pytest.mark.parametrize("bug", [AttributeError, NameError, AssertionError])
def test_a_bug_in_a_shape_probe_is_not_taken_for_a_refused_shape(bug: type[Exception]) -> None:
    from onnxport.exporters import modality

    with pytest.raises(bug, match="must be 32x32"):
        modality.input_templates(_Images(bug), ViTConfig(image_size=32), ["pixel_values"])
    config = PretrainedConfig(num_mel_bins=8)
    with pytest.raises(bug, match="no layout"):
        modality.input_templates(_Spectrograms(bug), config, ["input_features"])


def test_no_spectrogram_layout_is_a_spec_error() -> None:
    from onnxport.errors import SpecError
    from onnxport.exporters import modality

    with pytest.raises(SpecError, match="No input_features layout"):
        modality.input_templates(
            _Spectrograms(RuntimeError), PretrainedConfig(num_mel_bins=8), ["input_features"]
        )


def test_a_config_is_described_as_configured_not_as_a_shrunk_copy() -> None:
    """Every layer's cache at the config's head sizes; no input the model does not take."""
    from transformers import LlamaConfig

    config = LlamaConfig(num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2)
    spec = onnxport.get_onnx_config(config, "text-generation")
    past = [name for name in spec.inputs if name.startswith("past_key_values.")]
    assert len(past) == 2 * 8
    assert spec.input_templates["past_key_values.7.value"] == (
        "batch_size",
        2,
        "past_sequence_length",
        config.hidden_size // 8,
    )
    assert "token_type_ids" not in spec.inputs
    assert list(spec.inputs)[:3] == ["input_ids", "attention_mask", "position_ids"]


def test_character_models_get_code_points_as_example_ids() -> None:
    """CANINE has no vocabulary (it hashes Unicode code points): its example input_ids are
    code points (before: 'config.vocab_size is 0: cannot make example input_ids')."""
    from onnxport.coverage.runner import PASS, run_pair

    result = run_pair("canine", "text-classification")
    assert result.status == PASS, result.reason


def test_xmod_exports_one_language_named_in_its_config(tmp_path: Path, caplog) -> None:
    """X-MOD without a default language (as released) exports the first language's
    adapters, says so, and records it; PyTorch refuses to run it at all otherwise."""
    import json

    from onnxport.testing import tiny_config, tiny_model

    config = tiny_config("xmod", languages=["de_DE", "en_XX"])
    model = tiny_model(config, "fill-mask")
    with caplog.at_level("WARNING"):
        result = onnxport.export(model, tmp_path / "out", task="fill-mask")
    assert result.validation is not None
    assert result.validation.passed
    assert "exporting 'de_DE'" in caplog.text
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["default_language"] == "de_DE"


def test_outputs_that_are_tuples_of_tensors_become_one_output_each(tmp_path: Path) -> None:
    """MGP-STR returns its three logits (characters, BPE, WordPiece) as one tuple and no
    other tensor: each becomes an output of its own, validated like any."""
    from onnxport.testing import tiny_config, tiny_model

    model = tiny_model(tiny_config("mgp-str"), "feature-extraction")
    result = onnxport.export(model, tmp_path / "out", task="feature-extraction")
    assert result.spec.output_names == ["logits.0", "logits.1", "logits.2"]
    assert result.validation is not None
    assert result.validation.passed


def test_tapas_takes_seven_token_type_ids_per_token(tmp_path: Path) -> None:
    """TAPAS's token_type_ids are (batch, sequence, 7): segment, column, row, ranks, each
    below its own vocabulary size (config.type_vocab_sizes), as its tokenizer gives them."""
    from onnxport.testing import tiny_config, tiny_model

    model = tiny_model(tiny_config("tapas"), "feature-extraction")
    result = onnxport.export(model, tmp_path / "out", task="feature-extraction")
    assert result.validation is not None
    assert result.validation.passed
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    shapes = {i.name: i.shape for i in session.get_inputs()}
    assert len(shapes["token_type_ids"]) == 3
    assert shapes["token_type_ids"][2] == 7
