"""SpeechT5 text-to-speech: the decoder loop on ONNX Runtime against transformers' own.

One tiny SpeechT5 and HiFi-GAN vocoder are exported once; `generate_speech`, transformers'
text-to-audio pipeline and the torch-free pipeline must give PyTorch's speech, and texts
of one batch stop at their own step as they do in PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers

import onnxport
from onnxport.errors import ExportOptionError, ORTModelError, VariantError
from onnxport.runtime import ORTModelForTextToSpectrogram
from onnxport.testing import tiny_model, tiny_speech_synthesizer

TEXTS = ["hello world", "the cat sat on the mat today", "a dog"]


@pytest.fixture(scope="module")
def synthesizer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any, Path]:
    model, vocoder, tokenizer = tiny_speech_synthesizer(seed=1)  # texts stop at 26, 22, 24
    folder = tmp_path_factory.mktemp("speecht5") / "out"
    result = onnxport.export(
        model, folder, task="text-to-audio", tokenizer=tokenizer, vocoder=vocoder
    )
    assert result.task == "text-to-spectrogram"
    assert {p.name for p in result.files} >= {
        "encoder_model.onnx", "decoder_model.onnx", "decoder_postnet.onnx", "vocoder.onnx",
        "vocoder_config.json",
    }  # fmt: skip
    assert all(report.passed for report in result.reports)
    assert len(result.reports) == 4
    return model, vocoder, tokenizer, folder


def _speakers(count: int) -> torch.Tensor:
    return torch.randn(count, 512, generator=torch.Generator().manual_seed(3))


def test_batch_speech_matches_pytorch_with_each_text_stopping_on_its_own(
    synthesizer: tuple[Any, Any, Any, Path],
) -> None:
    model, vocoder, tokenizer, folder = synthesizer
    ort_model = ORTModelForTextToSpectrogram.from_pretrained(folder)
    inputs = tokenizer(TEXTS, return_tensors="pt", padding=True)
    speakers = _speakers(len(TEXTS))
    with torch.no_grad():
        want, want_lengths = model.generate_speech(
            inputs.input_ids, speakers, attention_mask=inputs.attention_mask, vocoder=vocoder,
            return_output_lengths=True, maxlenratio=4.0,
        )  # fmt: skip
    assert len(set(want_lengths)) > 1  # the texts stop at different steps
    got, lengths = ort_model.generate_speech(
        inputs.input_ids, speakers, attention_mask=inputs.attention_mask,
        return_output_lengths=True, maxlenratio=4.0,
    )  # fmt: skip
    assert lengths == want_lengths
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # One text in numpy, spectrogram only (vocoder=False): transformers' without a vocoder.
    with torch.no_grad():
        spectrogram = model.generate_speech(inputs.input_ids[:1], speakers[:1], maxlenratio=4.0)
    ours = ort_model.generate(inputs.input_ids[:1].numpy(), speaker_embeddings=speakers[:1].numpy(),
                              maxlenratio=4.0, vocoder=False)  # fmt: skip
    assert isinstance(ours, np.ndarray)
    np.testing.assert_allclose(ours, spectrogram.numpy(), atol=1e-4, rtol=1e-4)
    # A PyTorch vocoder passed in is used instead of the folder's.
    waveform = ort_model.generate(inputs.input_ids[:1], speaker_embeddings=speakers[:1],
                                  maxlenratio=4.0, vocoder=vocoder)  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(waveform, vocoder(spectrogram), atol=1e-4, rtol=1e-4)


def test_pipelines_speak_like_transformers_pipeline_over_pytorch(
    synthesizer: tuple[Any, Any, Any, Path],
) -> None:
    model, vocoder, tokenizer, folder = synthesizer
    speaker = {"speaker_embeddings": _speakers(1)}
    reference = transformers.pipeline(
        "text-to-audio", model=model, tokenizer=tokenizer, vocoder=vocoder
    )("hello world", forward_params=speaker)
    ours = onnxport.pipeline("text-to-speech", model=folder)("hello world", forward_params=speaker)
    assert ours["sampling_rate"] == reference["sampling_rate"] == 16000
    np.testing.assert_allclose(ours["audio"], reference["audio"], atol=1e-4)
    slim = onnxport.pipeline("text-to-audio", model=folder, backend="numpy")
    out = slim("hello world", forward_params={"speaker_embeddings": speaker["speaker_embeddings"]
                                                .numpy()})  # fmt: skip
    assert out["sampling_rate"] == 16000
    np.testing.assert_allclose(out["audio"], reference["audio"], atol=1e-4)


def test_prenet_dropout_draws_at_the_configs_probability(
    synthesizer: tuple[Any, Any, Any, Path],
) -> None:
    # SpeechT5 keeps its prenet dropout at inference; the graph draws it at the config's rate.
    _, _, tokenizer, folder = synthesizer
    ort_model = ORTModelForTextToSpectrogram.from_pretrained(folder)
    ids = tokenizer(["hello world"], return_tensors="np").input_ids
    speaker = _speakers(1).numpy()
    silent = [ort_model.generate(ids, speaker_embeddings=speaker, maxlenratio=2.0) for _ in "ab"]
    np.testing.assert_array_equal(silent[0], silent[1])
    ort_model.config.speech_decoder_prenet_dropout = 0.5
    drawn = ort_model.generate(ids, speaker_embeddings=speaker, maxlenratio=2.0)
    assert drawn.shape != silent[0].shape or not np.allclose(drawn, silent[0])


def test_mistakes_are_refused_in_one_line(
    synthesizer: tuple[Any, Any, Any, Path], tmp_path: Path
) -> None:
    model, vocoder, tokenizer, folder = synthesizer
    ort_model = ORTModelForTextToSpectrogram.from_pretrained(folder)
    with pytest.raises(ORTModelError, match="speaker_embeddings are required"):
        ort_model.generate(tokenizer(["hi"], return_tensors="np").input_ids)
    with pytest.raises(ExportOptionError, match="--vocoder is for text-to-speech"):
        onnxport.export(tiny_model("bert"), tmp_path / "bert", vocoder=vocoder)
    with pytest.raises(ExportOptionError, match="--opset 23 is too new"):
        onnxport.export(model, tmp_path / "t5", task="text-to-audio", opset=23)
    with pytest.raises(ExportOptionError, match="Could not load the vocoder"):
        onnxport.export(model, tmp_path / "t5", task="text-to-audio", vocoder=str(tmp_path))
    assert not (tmp_path / "bert").exists()
    assert not (tmp_path / "t5").exists()
    # Without a vocoder the folder makes spectrograms; its pipeline says how to add one.
    bare = tmp_path / "bare"
    onnxport.export(model, bare, task="text-to-spectrogram", tokenizer=tokenizer)
    assert not (bare / "vocoder.onnx").exists()
    with pytest.raises(ORTModelError, match="exported without a vocoder"):
        onnxport.pipeline("text-to-audio", model=bare)
    # Variants are not built for these loops yet: refused in one line.
    from onnxport.variants.quantize import quantize

    with pytest.raises(VariantError, match="do not support text-to-spectrogram"):
        quantize(bare, "int8-dynamic")
