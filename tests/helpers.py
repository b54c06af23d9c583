"""Shared assertions: ORT outputs against PyTorch outputs on real tokenized text."""

from __future__ import annotations

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
