"""Shared assertions: ORT outputs against PyTorch outputs on real tokenized text."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "Good tools make hard work feel easy, and the weather today is sunny.",
]
CHOICES = ["a train station", "the capital city", "a lazy dog"]


def tokenize(tokenizer: Any, task: str, tensors: str = "pt") -> dict[str, Any]:
    """A padded batch shaped for `task` (multiple-choice gets batch x choices x sequence)."""
    if task == "multiple-choice":
        firsts = [text for text in TEXTS[:2] for _ in CHOICES]
        seconds = CHOICES * 2
        encoded = tokenizer(firsts, seconds, padding=True, return_tensors=tensors)
        return {k: v.reshape(2, len(CHOICES), -1) for k, v in encoded.items()}
    if task == "question-answering":
        return dict(
            tokenizer(
                ["Where is Paris?", "What is quick?"],
                [TEXTS[1], TEXTS[0]],
                padding=True,
                return_tensors=tensors,
            )
        )
    return dict(tokenizer(TEXTS, padding=True, return_tensors=tensors))


def assert_outputs_close(
    actual: Any, expected: Any, mask: np.ndarray | None, atol: float = 1e-4
) -> None:
    """Every field of `expected` is in `actual` and close, padded tokens left out."""
    expected_fields = {k: v for k, v in expected.items() if isinstance(v, torch.Tensor)}
    assert set(actual.keys()) == set(expected_fields), (actual.keys(), expected_fields.keys())
    for name, reference in expected_fields.items():
        got = actual[name]
        got = got.numpy() if isinstance(got, torch.Tensor) else got
        ref = reference.detach().numpy()
        assert got.shape == ref.shape, (name, got.shape, ref.shape)
        if mask is not None and ref.ndim >= 2 and ref.shape[:2] == mask.shape:
            got, ref = got[mask.astype(bool)], ref[mask.astype(bool)]
        np.testing.assert_allclose(got, ref, atol=atol, rtol=0, err_msg=name)


def vision_language_prompts(
    model: Any, lengths: tuple[int, ...] = (6, 3), *, seed: int = 0
) -> dict[str, Any]:
    """A left-padded batch of image + text prompts, one image each, as a processor builds.

    Each row holds `lengths` text tokens split around its image's placeholder tokens.
    """
    from onnxport.exporters.packed_vision import takes_image_grid
    from onnxport.exporters.vision_language import VisionPart, image_token_id

    if takes_image_grid(model):
        return _packed_prompts(model, lengths, seed=seed)
    vision = VisionPart(model)
    generator = torch.Generator().manual_seed(seed)
    rows = len(lengths)
    shape = [d if isinstance(d, int) else rows for d in vision.input_templates["pixel_values"]]
    shape[0] = rows
    pixels = torch.randn(shape, generator=generator)
    extra: dict[str, Any] = {}
    if vision.extras:
        extra["pixel_attention_mask"] = torch.ones((*shape[:-3], *shape[-2:]), dtype=torch.long)
    with torch.no_grad():
        features = vision(pixels[:1], **{k: v[:1] for k, v in extra.items()})["image_features"]
    per_image = features.shape[0] * features.shape[1]
    token = image_token_id(model.config)
    vocab = min(token, int(model.config.get_text_config().vocab_size))
    width = max(lengths) + per_image
    ids = torch.zeros((rows, width), dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.long)
    for row, length in enumerate(lengths):
        text = torch.randint(5, vocab - 1, (length,), generator=generator)
        before = length // 2
        tokens = torch.cat([text[:before], torch.full((per_image,), token), text[before:]])
        ids[row, width - len(tokens) :] = tokens
        mask[row, width - len(tokens) :] = 1
    inputs = {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels, **extra}
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        inputs["token_type_ids"] = (ids == token).long()
    return inputs


def _packed_prompts(model: Any, lengths: tuple[int, ...], *, seed: int) -> dict[str, Any]:
    """`vision_language_prompts` for packed-patch models (Qwen2-VL): images of unlike sizes,
    `image_grid_thw` and `mm_token_type_ids` beside the tokens, as their processors give."""
    from onnxport.exporters.dummy import image_grids
    from onnxport.exporters.packed_vision import PackedVisionPart
    from onnxport.exporters.vision_language import image_token_id

    vision = PackedVisionPart(model)
    generator = torch.Generator().manual_seed(seed)
    grids = image_grids(len(lengths), vision.merge)
    per_patch = int(vision.input_templates["pixel_values"][-1])
    pixels = torch.randn((int(grids.prod(-1).sum()), per_patch), generator=generator)
    counts = [int(n) for n in grids.prod(-1) // vision.merge**2]
    token = image_token_id(model.config)
    vocab = min(token, int(model.config.get_text_config().vocab_size))
    width = max(length + count for length, count in zip(lengths, counts, strict=True))
    ids = torch.zeros((len(lengths), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (length, count) in enumerate(zip(lengths, counts, strict=True)):
        text = torch.randint(5, vocab - 1, (length,), generator=generator)
        before = length // 2
        tokens = torch.cat([text[:before], torch.full((count,), token), text[before:]])
        ids[row, width - len(tokens) :] = tokens
        mask[row, width - len(tokens) :] = 1
    return {
        "input_ids": ids, "attention_mask": mask, "pixel_values": pixels,
        "image_grid_thw": grids, "mm_token_type_ids": (ids == token).long(),
    }  # fmt: skip
