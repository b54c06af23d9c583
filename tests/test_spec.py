"""Export configurations (specs), dummy shapes, and the adapter registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import onnxruntime as ort
import pytest
from transformers import BertConfig, DistilBertConfig

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
    assert not set(ADAPTERS.registered()) & set(onnxport.coverage.support.TESTED_MODEL_TYPES)
