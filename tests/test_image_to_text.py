"""Image to text: VisionEncoderDecoderModel export (image encoder + text decoder graphs),
generate() and pipeline parity with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

import onnxport
from onnxport.cli.main import main
from onnxport.errors import ORTModelError
from onnxport.runtime.image_to_text_pipeline import ImageToTextPipeline
from onnxport.testing import save_tiny_checkpoint
from test_errors import assert_one_error_line, run_cli

# One worker builds each captioner once (split across workers, each built its own).
pytestmark = pytest.mark.xdist_group("image-to-text")

TASK = "image-to-text"


def _images(count: int) -> list[Image.Image]:
    """Random RGB images of different sizes (the image processor resizes them)."""
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 255, (30 + 9 * i, 44 - 5 * i, 3), dtype=np.uint8))
        for i in range(count)
    ]


@pytest.fixture(scope="module", params=["trocr", "gpt2"])
def captioner(request, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny ViT + `decoder` checkpoint and its export, made by the CLI (task inferred)."""
    root = tmp_path_factory.mktemp(f"i2t-{request.param}")
    ckpt = save_tiny_checkpoint(
        "vision-encoder-decoder", TASK, root / "ckpt", decoder=request.param
    )
    # No --task: the checkpoint's architecture (VisionEncoderDecoderModel) names it.
    assert main(["export", "onnx", "--model", str(ckpt), str(root / "out")]) == 0
    return ckpt, root / "out"


def test_folder_holds_both_graphs_and_the_preprocessing(captioner) -> None:
    _, folder = captioner
    names = {p.name for p in folder.iterdir()}
    assert {"encoder_model.onnx", "decoder_model.onnx", "preprocessor_config.json"} <= names
    model = onnxport.ORTModelForVision2Seq.from_pretrained(folder)
    assert model.encoder.input_names == ["pixel_values"]
    assert "encoder_attention_mask" not in model.input_names  # every patch is attended to
    assert any(name.endswith(".encoder.key") for name in model.input_names)  # cross cache


def test_generation_parity(captioner) -> None:
    ckpt, folder = captioner
    pt_model = VisionEncoderDecoderModel.from_pretrained(ckpt).eval()
    ort_model = onnxport.ORTModelForVision2Seq.from_pretrained(folder)
    processor = AutoImageProcessor.from_pretrained(folder)
    pixels = processor(images=_images(2), return_tensors="pt").pixel_values
    greedy = {"max_new_tokens": 12, "do_sample": False}
    with torch.no_grad():
        expected = pt_model.generate(pixel_values=pixels, **greedy)
    assert torch.equal(ort_model.generate(pixel_values=pixels, **greedy), expected)
    # Not a degenerate path: the two images give different tokens, several of them.
    assert not torch.equal(expected[0], expected[1]), expected.tolist()
    assert len(set(expected[:, 1:].flatten().tolist())) >= 4, expected.tolist()
    for options in ({"num_beams": 3}, {"num_beams": 2, "num_return_sequences": 2}):
        with torch.no_grad():
            want = pt_model.generate(pixel_values=pixels, max_new_tokens=8, **options)
        got = ort_model.generate(pixel_values=pixels, max_new_tokens=8, **options)
        assert torch.equal(got, want), options


def test_pipeline_matches_pytorch(captioner) -> None:
    ckpt, folder = captioner
    captions = onnxport.pipeline(TASK, folder)
    reference = ImageToTextPipeline(
        model=VisionEncoderDecoderModel.from_pretrained(ckpt).eval(),
        tokenizer=AutoTokenizer.from_pretrained(ckpt),
        image_processor=AutoImageProcessor.from_pretrained(ckpt),
    )
    images = _images(3)
    got = captions(images, max_new_tokens=10)
    assert got == reference(images, max_new_tokens=10)
    assert len(got) == 3
    assert all(isinstance(r[0]["generated_text"], str) for r in got)
    assert captions(images[0], max_new_tokens=10) == got[0]  # one image: one list


def test_wrong_inputs_are_one_clear_error(captioner) -> None:
    _, folder = captioner
    model = onnxport.ORTModelForVision2Seq.from_pretrained(folder)
    with pytest.raises(ORTModelError, match="Missing pixel_values"):
        model(decoder_input_ids=torch.ones((1, 1), dtype=torch.long))
    # Token ids where pixels belong (generate takes its first argument as pixel_values).
    with pytest.raises(ORTModelError, match=r"pixel_values of 4 dimensions .* not of shape"):
        model.generate(torch.ones((1, 3), dtype=torch.long), max_new_tokens=2)


def test_a_text_model_has_no_image_to_text_head(tmp_path: Path, capsys) -> None:
    ckpt = save_tiny_checkpoint("bert", "fill-mask", tmp_path / "bert")
    code, _, err = run_cli(
        ["export", "onnx", "--model", str(ckpt), "--task", TASK, str(tmp_path / "out")], capsys
    )
    assert code != 0
    assert_one_error_line(err, "no head for task 'image-to-text'")
    assert not (tmp_path / "out").exists()


def test_pix2struct_generates_as_pytorch(tmp_path: Path) -> None:
    """Pix2Struct: flattened patches (row, column, pixels) of images of different shapes, as
    its image processor makes them, with their mask; greedy tokens equal PyTorch's."""
    from transformers import Pix2StructImageProcessor

    from onnxport.testing import tiny_config, tiny_model

    config = tiny_config("pix2struct")
    config.vision_config.patch_embed_hidden_size = 16 * 16 * 3  # the processor's patches
    model = tiny_model(config, TASK).eval()
    result = onnxport.export(model, tmp_path / "out", task=TASK)
    assert [r.model_path.name for r in result.reports] == [
        "encoder_model.onnx", "decoder_model.onnx",
    ]  # fmt: skip
    processor = Pix2StructImageProcessor(max_patches=24)
    images = [Image.fromarray(np.full((40, 90 - 50 * i, 3), 60 * i, np.uint8)) for i in range(2)]
    inputs = dict(processor(images=_images(2) + images, return_tensors="pt"))
    assert set(inputs) == {"flattened_patches", "attention_mask"}
    assert not inputs["attention_mask"].all()  # some images fill fewer patches: padding
    ours = onnxport.ORTModelForVision2Seq.from_pretrained(tmp_path / "out")
    assert ours.encoder.input_names == ["flattened_patches", "attention_mask"]
    settings = {"max_new_tokens": 6, "do_sample": False}
    with torch.no_grad():
        expected = model.generate(**inputs, **settings)
    assert torch.equal(ours.generate(**inputs, **settings), expected)
    other = {**inputs, "flattened_patches": inputs["flattened_patches"].clone()}
    other["flattened_patches"][..., 2:] *= -1
    with torch.no_grad():
        assert not torch.equal(model.generate(**other, **settings), expected)
    assert torch.equal(ours.generate(**other, **settings), model.generate(**other, **settings))
