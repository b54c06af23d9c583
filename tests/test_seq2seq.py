"""Encoder-decoder export (encoder_model.onnx + decoder_model.onnx) and generate() parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

import onnxport
from model_table import SEQ2SEQ_CASES, SEQ2SEQ_SLOW_CASES
from onnxport.cli.main import main
from onnxport.coverage.support import TESTED_SEQ2SEQ
from onnxport.runtime.text2text_pipeline import pipeline_class
from onnxport.sessions import create_session

SOURCES = ["the quick brown fox jumps over", "paris"]


def test_table_covers_every_tested_seq2seq_model() -> None:
    assert set(SEQ2SEQ_CASES) == set(TESTED_SEQ2SEQ)


@pytest.mark.parametrize("model_type", sorted(SEQ2SEQ_CASES))
def test_export_and_generation_parity(model_type: str, checkpoint, exported) -> None:
    _check_parity(SEQ2SEQ_CASES[model_type], checkpoint, exported)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", sorted(SEQ2SEQ_SLOW_CASES))
def test_more_encoder_decoders_generate_like_pytorch(model_type: str, checkpoint, exported) -> None:
    _check_parity(SEQ2SEQ_SLOW_CASES[model_type], checkpoint, exported)


def _check_parity(case, checkpoint, exported) -> None:
    """Greedy tokens on a padded batch of two, and beam search, equal PyTorch's."""
    model_type = case.model_type
    ckpt = checkpoint(model_type, "text2text-generation")
    folder = exported(model_type, "text2text-generation")
    assert {"encoder_model.onnx", "decoder_model.onnx"} <= {p.name for p in folder.iterdir()}

    tokenizer = AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer(SOURCES, return_tensors="pt", padding=True)
    assert inputs["attention_mask"].min() == 0  # the encoder batch is really padded
    pt_model = AutoModelForSeq2SeqLM.from_pretrained(ckpt).eval()
    ort_model = onnxport.ORTModelForSeq2SeqLM.from_pretrained(folder)

    greedy = {"max_new_tokens": 20, "do_sample": False}
    expected = pt_model.generate(**inputs, **greedy)
    assert torch.equal(ort_model.generate(**inputs, **greedy), expected)
    generated = expected[:, 1:]
    pad = pt_model.generation_config.pad_token_id
    distinct = set(generated[generated != pad].tolist())
    if "varied" not in case.xfail:  # the table says why where it is waived
        assert len(distinct) >= 4, f"degenerate greedy path: {expected.tolist()}"

    beams = {"max_new_tokens": 8, "num_beams": 3, "do_sample": False}
    assert torch.equal(ort_model.generate(**inputs, **beams), pt_model.generate(**inputs, **beams))


def test_encoder_decoder_model_generates_like_pytorch(tmp_path: Path) -> None:
    """EncoderDecoderModel (BERT to BERT): its config has no width of its own, the encoder's
    states are as wide as its encoder; greedy tokens on a padded batch equal PyTorch's."""
    from onnxport.testing import tiny_config, tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer(["input_ids", "attention_mask"])
    config = tiny_config("encoder-decoder", tokenizer=tokenizer)
    for stack in (config.encoder, config.decoder):
        stack.initializer_range = 0.5  # tiny random weights vary their greedy path
    model = tiny_model(config, "text2text-generation")
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    onnxport.export(tmp_path / "ckpt", tmp_path / "out", task="text2text-generation")
    inputs = tokenizer(SOURCES, return_tensors="pt", padding=True)
    greedy = {"max_new_tokens": 12, "do_sample": False}
    expected = model.generate(**inputs, **greedy)
    ort_model = onnxport.ORTModelForSeq2SeqLM.from_pretrained(tmp_path / "out")
    assert torch.equal(ort_model.generate(**inputs, **greedy), expected)
    assert not torch.equal(expected[0], expected[1])  # the encoder's input reaches the tokens


@pytest.mark.slow  # suite time: the API test below proves the same validation
def test_cli_reports_both_graphs_validated(
    tmp_path, checkpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = checkpoint("t5", "text2text-generation")
    out = tmp_path / "out"
    assert main(["export", "onnx", "--model", str(ckpt), str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "Validating ONNX model" in stdout
    assert "encoder_model.onnx" in stdout
    assert "decoder_model.onnx" in stdout
    assert "present.1.value" in stdout
    assert "[x]" not in stdout


@pytest.mark.slow  # ~40-90 s; `make test-slow`
def test_decoder_validation_covers_empty_and_non_empty_past(tmp_path, checkpoint) -> None:
    ckpt = checkpoint("t5", "text2text-generation")
    result = onnxport.export(ckpt, tmp_path / "api")
    assert result.task == "text2text-generation"
    assert [r.model_path.name for r in result.reports] == [
        "encoder_model.onnx",
        "decoder_model.onnx",
    ]
    decoder = result.specs[1]
    assert decoder.input_names[:3] == [
        "input_ids",
        "encoder_attention_mask",
        "encoder_hidden_states",
    ]
    labels = {check.inputs for check in result.reports[1].checks}
    assert any("past" not in label for label in labels)
    assert any("past" in label for label in labels)
    assert any(label.startswith("batch 1") for label in labels)
    assert any(label.startswith("batch 3") for label in labels)


@pytest.mark.parametrize("task", ["text2text-generation", "summarization", "translation_en_to_fr"])
def test_text2text_pipelines_match_pytorch(task: str, checkpoint, exported) -> None:
    ckpt = checkpoint("t5", "text2text-generation")
    folder = exported("t5", "text2text-generation")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pt_model = AutoModelForSeq2SeqLM.from_pretrained(ckpt).eval()
    reference = pipeline_class(task)(model=pt_model, tokenizer=tokenizer, task=task)
    ours = onnxport.pipeline(task, model=folder)
    options = {"max_new_tokens": 12}
    expected = reference(SOURCES, **options)
    assert ours(SOURCES, **options) == expected
    key = {"text2text-generation": "generated_text", "summarization": "summary_text"}
    assert set(expected[0]) == {key.get(task, "translation_text")}
    # The text is the decoded greedy output of generate(), one sequence per source.
    ids = pt_model.generate(**tokenizer(SOURCES[:1], return_tensors="pt"), **options)
    assert expected[0] == {
        key.get(task, "translation_text"): tokenizer.decode(ids[0], skip_special_tokens=True)
    }


def test_text2text_pipeline_applies_the_task_prefix(checkpoint) -> None:
    ckpt = checkpoint("t5", "text2text-generation")
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForSeq2SeqLM.from_pretrained(ckpt).eval()
    model.config.task_specific_params = {"translation_en_to_fr": {"prefix": "paris the "}}
    translate = pipeline_class("translation_en_to_fr")(
        model=model, tokenizer=tokenizer, task="translation_en_to_fr"
    )
    result = translate("quick fox", max_new_tokens=6)
    ids = model.generate(
        **tokenizer(["paris the quick fox"], return_tensors="pt"), max_new_tokens=6
    )
    assert result == [{"translation_text": tokenizer.decode(ids[0], skip_special_tokens=True)}]


def test_caller_session_options_reach_the_encoder_too(exported) -> None:
    import onnxruntime as ort

    # Unlike the class's defaults (ORT's thread count, spinning off between decoding steps).
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    model = onnxport.ORTModelForSeq2SeqLM.from_pretrained(
        exported("t5", "text2text-generation"), session_options=options
    )
    for session in (model.session, model.encoder.session):
        used = session.get_session_options()
        assert used.intra_op_num_threads == 1
        assert used.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    # Without options both get the class's defaults.
    default = onnxport.ORTModelForSeq2SeqLM.from_pretrained(exported("t5", "text2text-generation"))
    for session in (default.session, default.encoder.session):
        used = session.get_session_options()
        assert used.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize(
    "model_type",
    # T5 cannot run without decoder tokens; the others would shift input_ids (make test-slow).
    [
        "t5",
        pytest.param("marian", marks=pytest.mark.slow),
        pytest.param("bart", marks=pytest.mark.slow),
    ],
)
def test_bare_encoder_decoder_takes_decoder_tokens_of_their_own_length(
    model_type: str, checkpoint, tmp_path
) -> None:
    ckpt = checkpoint(model_type, "feature-extraction")
    out = tmp_path / "out"
    onnxport.export(ckpt, out, task="feature-extraction")
    session = create_session(out / "model.onnx")
    names = [i.name for i in session.get_inputs()]
    assert "decoder_input_ids" in names
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 90, (2, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0  # a padded source row
    decoder_ids = torch.randint(5, 90, (2, 3), generator=generator)  # not the traced length
    tensors = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": decoder_ids}
    feed = {n: tensors.get(n, torch.zeros_like(ids)).numpy() for n in names}
    pt_model = AutoModel.from_pretrained(ckpt).eval()
    with torch.no_grad():
        expected = pt_model(**tensors).last_hidden_state.numpy()
    (actual,) = session.run(["last_hidden_state"], feed)
    assert actual.shape == (2, 3, expected.shape[-1])
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_mixture_of_experts_encoder_decoder_exports() -> None:
    """NLLB-MoE's forward reads the encoder's router logits off the encoder output the
    decoder step is given (the prefill failed with an AttributeError)."""
    from onnxport.coverage.runner import PASS, run_pair

    result = run_pair("nllb-moe", "text2text-generation")
    assert result.status == PASS, result.reason
