"""MusicGen text-to-audio: the codebook loop on ONNX Runtime against transformers' generate.

One tiny MusicGen is exported once; greedy generation must write PyTorch's codes token for
token (with and without classifier-free guidance, over a padded batch) and EnCodec's graph
PyTorch's audio; transformers' pipeline and the torch-free one give the same audio.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers

import onnxport
from onnxport.errors import ORTModelError
from onnxport.runtime import ORTModelForTextToAudioGeneration
from onnxport.testing import tiny_music_generator

TEXTS = ["calm piano under the rain", "fast drums"]


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    model, tokenizer = tiny_music_generator()
    folder = tmp_path_factory.mktemp("musicgen") / "out"
    result = onnxport.export(model, folder, task="text-to-audio", tokenizer=tokenizer)
    assert result.task == "text-to-audio-with-past"
    names = {p.name for p in result.files}
    assert {"text_encoder.onnx", "decoder_model.onnx", "audio_decoder.onnx"} <= names
    assert all(report.passed for report in result.reports)
    assert len(result.reports) == 3
    return model, tokenizer, folder


def _reference_codes(model: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' generate: the audio, and the codes it handed EnCodec."""
    seen: dict[str, torch.Tensor] = {}
    decode = model.audio_encoder.decode

    def spy(audio_codes: torch.Tensor, *args: Any, **more: Any) -> Any:
        seen["codes"] = audio_codes.clone()
        return decode(audio_codes, *args, **more)

    model.audio_encoder.decode = spy
    try:
        with torch.no_grad():
            audio = model.generate(**kwargs)
    finally:
        del model.audio_encoder.decode
    return audio, seen["codes"]


@pytest.mark.parametrize("guidance", [3.0, 1.0])
def test_greedy_codes_and_audio_match_pytorch(
    music: tuple[Any, Any, Path], guidance: float
) -> None:
    model, tokenizer, folder = music
    ort_model = ORTModelForTextToAudioGeneration.from_pretrained(folder)
    inputs = tokenizer(TEXTS, return_tensors="pt", padding=True)
    assert not bool(inputs.attention_mask.all())  # one text is padded
    settings = {"do_sample": False, "guidance_scale": guidance, "max_new_tokens": 14}
    audio, codes = _reference_codes(model, **inputs, **settings)
    got = ort_model.generate(**inputs, **settings, return_dict_in_generate=True)
    np.testing.assert_array_equal(got["audio_codes"], codes.numpy())
    torch.testing.assert_close(got["sequences"], audio, atol=1e-4, rtol=1e-4)
    # Numpy in, numpy out.
    plain = ort_model.generate(inputs.input_ids.numpy(), inputs.attention_mask.numpy(), **settings)
    assert isinstance(plain, np.ndarray)
    np.testing.assert_allclose(plain, audio.numpy(), atol=1e-4)


def test_guidance_changes_the_music(music: tuple[Any, Any, Path]) -> None:
    # Without it this test module could pass on a model whose text changes nothing.
    _, tokenizer, folder = music
    ort_model = ORTModelForTextToAudioGeneration.from_pretrained(folder)
    inputs = tokenizer(TEXTS, return_tensors="np", padding=True)
    runs = [
        ort_model.generate(**inputs, do_sample=False, guidance_scale=g, max_new_tokens=14,
                           return_dict_in_generate=True)["audio_codes"]
        for g in (1.0, 3.0)
    ]  # fmt: skip
    assert not np.array_equal(runs[0], runs[1])


def test_pipelines_give_transformers_pipeline_audio(music: tuple[Any, Any, Path]) -> None:
    model, tokenizer, folder = music
    settings = {"do_sample": False, "guidance_scale": 3.0, "max_new_tokens": 10}
    reference = transformers.pipeline("text-to-audio", model=model, tokenizer=tokenizer)(
        TEXTS[0], generate_kwargs=settings
    )
    ours = onnxport.pipeline("text-to-audio", model=folder)(TEXTS[0], generate_kwargs=settings)
    assert ours["sampling_rate"] == reference["sampling_rate"] == 64
    np.testing.assert_allclose(ours["audio"], reference["audio"], atol=1e-4)
    slim = onnxport.pipeline("text-to-music", model=folder, backend="numpy")
    out = slim(TEXTS[0], forward_params=settings)
    assert out["sampling_rate"] == 64
    np.testing.assert_allclose(out["audio"], reference["audio"], atol=1e-4)


def test_sampling_follows_the_seed_and_refuses_audio_prompts(
    music: tuple[Any, Any, Path],
) -> None:
    _, tokenizer, folder = music
    ort_model = ORTModelForTextToAudioGeneration.from_pretrained(folder)
    ids = tokenizer(TEXTS[:1], return_tensors="np").input_ids
    draw = {"do_sample": True, "top_k": 20, "max_new_tokens": 12, "return_dict_in_generate": True}
    first, again, other = (
        ort_model.generate(ids, **draw, seed=s)["audio_codes"] for s in (1, 1, 2)
    )
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    with pytest.raises(ORTModelError, match="Audio prompts"):
        ort_model.generate(ids, input_values=np.zeros((1, 1, 64), np.float32))
