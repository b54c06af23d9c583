"""Vision-language generation: vision encoder + token embedding + cached decoder graphs,
generate() and pipeline parity with PyTorch on batches of image + text prompts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import onnxport
from helpers import vision_language_prompts
from onnxport.cli.main import main
from onnxport.errors import ORTModelError
from onnxport.testing import save_tiny_llava, tiny_vision_language_model
from test_errors import assert_one_error_line, run_cli

# One worker builds each model's export once.
pytestmark = pytest.mark.xdist_group("vision-language")

TASK = "image-text-to-text"
GRAPHS = {"vision_encoder.onnx", "embed_tokens.onnx", "decoder_model.onnx"}
# LLaVA (features a list per image: exported for one image a run), Idefics3 (images per
# prompt with a padding mask, pixel shuffle), Gemma 3 (image tokens attend both ways).
# SmolVLM is Idefics3's code under another name: under `make test-slow`.
CASES = [
    "llava",
    "idefics3",
    "gemma3",
    "paligemma",
    # Packed patches of unlike sizes (image_grid_thw) and 3-D rotary positions.
    "qwen2_vl",
    pytest.param("smolvlm", marks=pytest.mark.slow),
    pytest.param("qwen2_5_vl", marks=pytest.mark.slow),  # windowed attention
]


@pytest.fixture(scope="session")
def llava(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny LLaVA checkpoint (with its processor) and its export by the CLI, task inferred
    from the checkpoint's architecture."""
    root = tmp_path_factory.mktemp("vlm-llava")
    ckpt = save_tiny_llava(root / "ckpt")
    assert main(["export", "onnx", "--model", str(ckpt), str(root / "out")]) == 0
    return ckpt, root / "out"


# Session scope: loadgroup may run other modules' tests in between, which would rebuild it.
@pytest.fixture(scope="session", params=CASES)
def exported(request, tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """A tiny model and its export: LLaVA's from its checkpoint, the others by the API."""
    root = tmp_path_factory.mktemp(f"vlm-{request.param}")
    if request.param == "llava":
        ckpt, out = request.getfixturevalue("llava")
        model = transformers.AutoModelForImageTextToText.from_pretrained(ckpt).eval()
        return model, out
    else:
        model = tiny_vision_language_model(request.param)
        result = onnxport.export(model, root / "out", task=TASK)
        assert [r.model_path.name for r in result.reports] == [
            "vision_encoder.onnx", "embed_tokens.onnx", "decoder_model.onnx",
        ]  # fmt: skip
        labels = {check.inputs for check in result.reports[-1].checks}
        assert any("past" in label for label in labels)
        assert any("past" not in label for label in labels)
    return model, root / "out"


def _generate(model, inputs, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(**inputs, max_new_tokens=8, do_sample=False, **kwargs)


def test_greedy_tokens_equal_pytorch_on_a_batch_of_two(exported) -> None:
    pt_model, folder = exported
    assert {p.name for p in folder.iterdir()} >= GRAPHS
    ort_model = onnxport.ORTModelForImageTextToText.from_pretrained(folder)
    inputs = vision_language_prompts(pt_model)  # left-padded: rows of 6 and 3 text tokens
    expected = _generate(pt_model, inputs)
    assert torch.equal(_generate(ort_model, inputs), expected)
    # The images reach the tokens: other pixels, other tokens (so the check above is one).
    other = {**inputs, "pixel_values": -inputs["pixel_values"]}
    assert not torch.equal(_generate(pt_model, other), expected)
    assert torch.equal(_generate(ort_model, other), _generate(pt_model, other))
    # Every step's logits too: a tiny model's argmax can hide wrong positions.
    scores = {"output_logits": True, "return_dict_in_generate": True}
    for ours, theirs in zip(
        _generate(ort_model, inputs, **scores).logits,
        _generate(pt_model, inputs, **scores).logits,
        strict=True,
    ):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_pipeline_takes_chat_messages_with_images(llava) -> None:
    """transformers' image-text-to-text pipeline over the folder's processor (LLaVA's)."""
    ckpt, folder = llava
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(2)
    ]
    chats = [
        [{"role": "user", "content": [
            {"type": "image", "image": images[0]}, {"type": "text", "text": "what is this"},
        ]}],
        [{"role": "user", "content": [
            {"type": "text", "text": "hi"}, {"type": "image", "image": images[1]},
        ]}],
    ]  # fmt: skip
    settings = {"generate_kwargs": {"max_new_tokens": 8, "do_sample": False}}
    reference = transformers.pipeline(
        TASK,
        model=transformers.AutoModelForImageTextToText.from_pretrained(ckpt),
        processor=transformers.AutoProcessor.from_pretrained(ckpt),
    )
    ours = onnxport.pipeline(TASK, model=folder)
    got = ours(text=chats, return_full_text=False, **settings)
    assert got == reference(text=chats, return_full_text=False, **settings)
    assert all(row[0]["generated_text"].strip() for row in got)


def test_wrong_inputs_are_one_clear_error(exported) -> None:
    pt_model, folder = exported
    model = onnxport.ORTModelForImageTextToText.from_pretrained(folder)
    inputs = vision_language_prompts(pt_model)
    with pytest.raises(ORTModelError, match="image tokens but no pixel_values"):
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    one_image = {**inputs, "pixel_values": inputs["pixel_values"][:1]}
    one_image.pop("pixel_attention_mask", None)
    if "image_grid_thw" in inputs:  # packed: the first image's patches and grid
        grid = inputs["image_grid_thw"][:1]
        patches = inputs["pixel_values"][: int(grid.prod())]
        one_image.update(pixel_values=patches, image_grid_thw=grid)
        with pytest.raises(ORTModelError, match="do not match image_grid_thw"):
            model(**{**inputs, "pixel_values": inputs["pixel_values"][:-1]})
    with pytest.raises(ORTModelError, match="image tokens but the images give"):
        model(**one_image)


@pytest.mark.parametrize(
    "grids",
    [[[1, 4, 4]], [[1, 2, 6], [1, 6, 4], [1, 4, 4]], [[2, 4, 2], [1, 2, 2]], [[1, 10, 6]]],
)
def test_packed_layout_is_transformers_own(grids) -> None:
    """The traced tower's positions and frame boundaries, computed by tensor arithmetic,
    equal transformers' vision_utils (a Python loop over the grids), frames included."""
    from transformers.vision_utils import (
        get_vision_cu_seqlens,
        get_vision_position_ids,
        get_vision_window_index,
    )

    from onnxport.exporters.packed_vision import packed_layout, window_layout

    grid = torch.tensor(grids)
    patches = int(grid.prod(-1).sum())
    for temporal in (False, True):
        positions, cu = packed_layout(grid, 2, patches, temporal=temporal)
        expected = get_vision_position_ids(grid, 2, include_temporal=temporal)
        assert torch.equal(positions, expected)
    frames = get_vision_cu_seqlens(grid)
    assert torch.equal(cu[: len(frames)], frames)
    assert (cu[len(frames) :] == patches).all()  # empty segments after the last frame
    # Windowed towers (Qwen2.5-VL): windows of 2x2 merged tokens (32 pixels in 8-pixel
    # patches, merged 2x2), which these grids split unevenly.
    order, windows = window_layout(grid, 2, 32, 8, patches)
    expected_order, expected_windows = get_vision_window_index(grid, 2, 32, 8)
    assert torch.equal(order, expected_order)
    assert torch.equal(windows[: len(expected_windows)], expected_windows)
    assert (windows[len(expected_windows) :] == patches).all()


def test_a_model_without_a_vision_tower_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    from onnxport.testing import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint("llama", "text-generation", tmp_path / "llama")
    code, _, err = run_cli(
        ["export", "onnx", "--model", str(ckpt), "--task", TASK, str(tmp_path / "out")], capsys
    )
    assert code != 0
    assert_one_error_line(err, "no head for task 'image-text-to-text'")
    assert not (tmp_path / "out").exists()


def test_int8_variant_is_guarded_with_images_and_generates(llava, tmp_path: Path) -> None:
    """quantize writes a variant of all three graphs; the guard feeds an image through the
    folder's processor (LLaVA's), and the variant loads and generates."""
    from onnxport.variants.quantize import quantize

    ckpt, folder = llava
    pt_model = transformers.AutoModelForImageTextToText.from_pretrained(ckpt).eval()

    work = tmp_path / "folder"
    shutil.copytree(folder, work)
    result = quantize(work, "int8-dynamic")
    assert result.accuracy.min_cosine >= 0.99
    names = {p.name for p in work.iterdir()}
    assert {
        "vision_encoder_int8.onnx",
        "embed_tokens_int8.onnx",
        "decoder_model_int8.onnx",
    } <= names
    model = onnxport.ORTModelForImageTextToText.from_pretrained(
        work, file_name="decoder_model_int8.onnx"
    )
    assert (model.vision_file.name, model.embed_file.name) == (
        "vision_encoder_int8.onnx", "embed_tokens_int8.onnx",
    )  # fmt: skip
    tokens = _generate(model, vision_language_prompts(pt_model))
    assert tokens.shape[1] > vision_language_prompts(pt_model)["input_ids"].shape[1]


def test_transformers_js_generates_the_same_tokens(llava, tmp_path: Path) -> None:
    """The transformers.js layout, run by transformers.js itself (Node): LLaVA on a padded
    batch of two image + text prompts, greedy tokens equal to PyTorch's."""
    from test_transformers_js import run_transformers_js

    ckpt, _ = llava
    args = ["export", "onnx", "--layout", "transformers.js", "--task", "vlm", "--model", str(ckpt)]
    assert main([*args, str(tmp_path / "llava-js")]) == 0
    names = {p.name for p in (tmp_path / "llava-js" / "onnx").iterdir()}
    assert names >= {"vision_encoder.onnx", "embed_tokens.onnx", "decoder_model_merged.onnx"}
    pt_model = transformers.AutoModelForImageTextToText.from_pretrained(ckpt).eval()
    inputs = vision_language_prompts(pt_model)
    expected = _generate(pt_model, inputs)
    pixels = inputs["pixel_values"]
    (answer,) = run_transformers_js(
        tmp_path,
        [{
            "kind": "vision-language", "name": "llava-js", "max_new_tokens": 8,
            "input_ids": inputs["input_ids"].tolist(),
            "attention_mask": inputs["attention_mask"].tolist(),
            "pixel_values": pixels.tolist(), "dims": list(pixels.shape),
        }],
    )  # fmt: skip
    assert answer["sequences"] == expected.tolist()
    ours = onnxport.ORTModelForImageTextToText.from_pretrained(tmp_path / "llava-js")
    assert torch.equal(_generate(ours, inputs), expected)


@pytest.mark.parametrize("task", ["feature-extraction", "text-classification"])
def test_text_tasks_export_the_text_path(task: str, tmp_path: Path) -> None:
    """Gemma 3's text tasks take tokens only (images need the processor's placeholders:
    image-text-to-text); with pixel_values in the graph, forward failed on example inputs."""
    from onnxport.testing import tiny_config, tiny_model

    result = onnxport.export(tiny_model(tiny_config("gemma3"), task), tmp_path / "out", task=task)
    assert result.spec.input_names == ["input_ids", "attention_mask"]
    assert result.validation is not None
    assert result.validation.passed


def test_a_bare_packed_tower_exports_for_images_of_any_size(tmp_path: Path) -> None:
    """Qwen2.5-VL's vision model alone (feature-extraction): patches and grid_thw in; one
    graph for any number of images of any size, windows included, equal to PyTorch."""
    import onnxruntime as ort

    from onnxport.testing import tiny_config, tiny_model

    config = tiny_config("qwen2_5_vl_vision", window_size=56)  # windows of 2x2 merged tokens
    model = tiny_model(config, "feature-extraction")
    result = onnxport.export(model, tmp_path / "out", task="feature-extraction")
    assert result.spec.input_names == ["hidden_states", "grid_thw"]
    assert result.validation is not None
    assert result.validation.passed
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    grid = torch.tensor([[1, 6, 10], [1, 2, 2]])
    patches = torch.randn(int(grid.prod(-1).sum()), int(model.config.in_channels) * 2 * 14 * 14)
    with torch.no_grad():
        expected = model(hidden_states=patches, grid_thw=grid)
    got = dict(
        zip(
            [o.name for o in session.get_outputs()],
            session.run(None, {"hidden_states": patches.numpy(), "grid_thw": grid.numpy()}),
            strict=True,
        )
    )
    for name in ("last_hidden_state", "pooler_output"):
        np.testing.assert_allclose(got[name], expected[name].numpy(), atol=1e-4)
