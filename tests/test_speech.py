"""Speech recognition: Whisper export (encoder + decoder graphs) and generate() parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from transformers import AutoFeatureExtractor, WhisperForConditionalGeneration

import onnxport
from model_table import SPEECH_CASES
from onnxport.coverage.support import TESTED_SPEECH
from onnxport.errors import ORTModelError, UnsupportedModelError
from onnxport.testing import tiny_config, tiny_model

TASK = "automatic-speech-recognition"
RATE = 16000


def _audio(seconds: float, seed: int) -> np.ndarray:
    """Noise with a tone in it: 16 kHz mono float32, as a feature extractor takes."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * (220 + 80 * seed) * time)
    return (tone + 0.05 * rng.standard_normal(time.size)).astype(np.float32)


@pytest.fixture(scope="module")
def whisper(checkpoint, exported):
    ckpt = checkpoint("whisper", TASK)
    folder = exported("whisper", TASK)
    pt_model = WhisperForConditionalGeneration.from_pretrained(ckpt).eval()
    ort_model = onnxport.ORTModelForSpeechSeq2Seq.from_pretrained(folder)
    return folder, pt_model, ort_model


def test_table_covers_every_tested_speech_model() -> None:
    assert set(SPEECH_CASES) == set(TESTED_SPEECH)


def test_export_writes_a_self_contained_folder(whisper) -> None:
    folder, _, ort_model = whisper
    names = {p.name for p in folder.iterdir()}
    assert {"encoder_model.onnx", "decoder_model.onnx", "generation_config.json"} <= names
    assert "preprocessor_config.json" in names  # the feature extractor travels with the graphs
    assert ort_model.encoder.input_names == ["input_features"]
    assert "encoder_attention_mask" not in ort_model.input_names  # Whisper's decoder has none


def test_generation_parity(whisper) -> None:
    folder, pt_model, ort_model = whisper
    features = AutoFeatureExtractor.from_pretrained(folder)
    clips = [_audio(1.0, 0), _audio(0.6, 1)]  # different lengths: the second is padded
    inputs = features(clips, sampling_rate=RATE, return_tensors="pt").input_features

    greedy = {"max_new_tokens": 20, "do_sample": False}
    expected = pt_model.generate(inputs, **greedy)
    assert torch.equal(ort_model.generate(inputs, **greedy), expected)
    distinct = {t for t in expected.flatten().tolist() if t < 256}  # text, not special tokens
    assert len(distinct) >= 4, f"degenerate greedy path: {expected.tolist()}"

    for options in (
        {"max_new_tokens": 8, "num_beams": 3},
        {"max_new_tokens": 12, "language": "fr", "task": "translate"},
        {"max_new_tokens": 12, "return_timestamps": True},
    ):
        assert torch.equal(
            ort_model.generate(inputs, **options), pt_model.generate(inputs, **options)
        ), options


def test_long_form_generation_parity(whisper) -> None:
    """Audio longer than one window: Whisper's sequential long-form decoding, on both."""
    folder, pt_model, ort_model = whisper
    features = AutoFeatureExtractor.from_pretrained(folder)
    inputs = features(
        [_audio(2.7, 2)],
        sampling_rate=RATE,
        return_tensors="pt",
        truncation=False,
        padding="longest",
        return_attention_mask=True,
    )
    assert inputs.input_features.shape[-1] > ort_model.model.encoder.conv2.stride[0] * 50
    options = {"return_timestamps": True, "max_new_tokens": 10}
    expected = pt_model.generate(**inputs, **options)
    assert torch.equal(ort_model.generate(**inputs, **options), expected)


def test_pipeline_matches_pytorch(whisper) -> None:
    folder, pt_model, _ = whisper
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    features = AutoFeatureExtractor.from_pretrained(folder)
    reference = transformers.pipeline(
        TASK, model=pt_model, tokenizer=tokenizer, feature_extractor=features
    )
    ours = onnxport.pipeline("asr", model=folder)
    clips = [_audio(1.0, 3), _audio(0.4, 4)]
    expected = reference(clips, generate_kwargs={"max_new_tokens": 15})
    assert ours(clips, generate_kwargs={"max_new_tokens": 15}) == expected
    assert any(item["text"].strip() for item in expected)


def test_word_timestamps_are_refused(whisper) -> None:
    folder, _, ort_model = whisper
    features = AutoFeatureExtractor.from_pretrained(folder)
    inputs = features([_audio(1.0, 0)], sampling_rate=RATE, return_tensors="pt").input_features
    with pytest.raises(ORTModelError, match="cross-attention weights"):
        ort_model.generate(inputs, return_token_timestamps=True)


# Speech encoder-decoders of any input length, with a padding mask: Speech2Text takes
# filter banks; Moonshine and SpeechT5 raw audio (SpeechT5 slow: `make test-slow`).
MASKED_SPEECH = ["speech_to_text", "moonshine", pytest.param("speecht5", marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=MASKED_SPEECH)
def masked_speech(request, checkpoint, exported):
    model_type = request.param
    ckpt = checkpoint(model_type, TASK)
    folder = exported(model_type, TASK)
    pt_model = transformers.AutoModelForSpeechSeq2Seq.from_pretrained(ckpt).eval()
    ort_model = onnxport.ORTModelForSpeechSeq2Seq.from_pretrained(folder)
    return folder, pt_model, ort_model


def test_masked_speech_folder_takes_any_length_and_returns_the_mask(masked_speech) -> None:
    folder, pt_model, ort_model = masked_speech
    assert ort_model.encoder.input_names == [pt_model.main_input_name, "attention_mask"]
    outputs = [o.name for o in ort_model.encoder.session.get_outputs()]
    assert outputs == ["last_hidden_state", "encoder_attention_mask"]
    assert not ort_model.whisper_style
    assert "encoder_attention_mask" in ort_model.input_names
    assert "preprocessor_config.json" in {p.name for p in folder.iterdir()}


def test_masked_speech_greedy_tokens_equal_pytorch_on_a_padded_batch(masked_speech) -> None:
    folder, pt_model, ort_model = masked_speech
    features = AutoFeatureExtractor.from_pretrained(folder)
    clips = [_audio(1.0, 5), _audio(0.55, 6)]  # the second row is padded
    inputs = features(
        clips, sampling_rate=RATE, return_tensors="pt", padding=True, return_attention_mask=True
    )
    assert not bool(inputs.attention_mask.all())
    greedy = {"max_new_tokens": 12, "min_new_tokens": 12, "do_sample": False}
    scored = {**greedy, "output_scores": True, "return_dict_in_generate": True}
    expected = pt_model.generate(**inputs, **scored)
    got = ort_model.generate(**inputs, **scored)
    assert torch.equal(got.sequences, expected.sequences)
    for ours, theirs in zip(got.scores, expected.scores, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    # The mask reaches the scores: without it PyTorch scores the padded row otherwise, so a
    # graph that ignored it would fail the comparison above.
    main = inputs[pt_model.main_input_name]
    ones = torch.ones_like(inputs.attention_mask)
    unmasked = pt_model.generate(main, attention_mask=ones, **scored)
    finite = expected.scores[0][1].isfinite()  # min_new_tokens sets the end token to -inf
    change = unmasked.scores[0][1][finite] - expected.scores[0][1][finite]
    assert change.abs().max() > 1e-3
    beams = {"max_new_tokens": 6, "num_beams": 3}
    assert torch.equal(ort_model.generate(**inputs, **beams), pt_model.generate(**inputs, **beams))


def test_masked_speech_pipeline_matches_pytorch(masked_speech) -> None:
    folder, pt_model, _ = masked_speech
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    features = AutoFeatureExtractor.from_pretrained(folder)
    reference = transformers.pipeline(
        TASK, model=pt_model, tokenizer=tokenizer, feature_extractor=features
    )
    ours = onnxport.pipeline("asr", model=folder)
    clips = [_audio(0.8, 7), _audio(0.5, 8)]
    options = {"generate_kwargs": {"max_new_tokens": 10, "min_new_tokens": 10}}
    expected = reference(clips, **options)
    assert ours(clips, **options) == expected
    assert all(item["text"].strip() for item in expected)


def test_speech_models_without_a_usable_layout_are_refused_by_name(tmp_path) -> None:
    # Pop2Piano's encoder neither takes a fixed number of log-mel frames (Whisper) nor a
    # padding mask it can carry to the decoder.
    model = tiny_model(tiny_config("pop2piano"), TASK)
    with pytest.raises(UnsupportedModelError, match="'pop2piano' is not supported yet"):
        onnxport.export(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_infers_the_task_and_validates_both_graphs(
    tmp_path, checkpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    from onnxport.cli.main import main

    out = tmp_path / "out"
    assert main(["export", "onnx", "--model", str(checkpoint("whisper", TASK)), str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "encoder_model.onnx" in stdout
    assert "decoder_model.onnx" in stdout
    assert "[x]" not in stdout


def _whisper_config():
    from onnxport.testing import tiny_whisper_config

    return tiny_whisper_config()


@pytest.mark.parametrize(
    "make_config", [lambda: tiny_config("speech_to_text"), _whisper_config],
    ids=["speech_to_text", "whisper"],
)  # fmt: skip
def test_bare_speech_encoder_decoder_takes_decoder_tokens(make_config, tmp_path) -> None:
    """WhisperModel and Speech2TextModel have no head to start their decoder: the
    feature-extraction graph takes the decoder's tokens beside the audio."""
    model = tiny_model(make_config(), "feature-extraction")
    result = onnxport.export(model, tmp_path / "out", task="feature-extraction")
    assert result.spec.input_names[-1] == "decoder_input_ids"
    assert "last_hidden_state" in result.spec.output_names
    assert result.validation is not None
    assert result.validation.passed
