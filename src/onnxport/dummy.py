"""Example inputs for tracing and validation.

Every dynamic dimension is at least 2 when traced and each axis gets its own size
(batch != sequence != choices), so the exporter can neither specialize a dimension to 1 nor
alias two axes. Validation shapes differ from the traced one, one of them at batch 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from onnxport.errors import ExportOptionError, SpecError

BATCH = "batch_size"
SEQUENCE = "sequence_length"
CHOICES = "num_choices"


@dataclass(frozen=True)
class InputShape:
    """Sizes of the dynamic axes for one set of example inputs.

    `padded` makes the last row of a batch > 1 end in padding (attention_mask 0), as a real
    padded batch does.
    """

    batch_size: int = 2
    sequence_length: int = 16
    num_choices: int = 3
    padded: bool = False

    def size_of(self, axis: str) -> int:
        """The size this shape gives the named axis."""
        return {BATCH: self.batch_size, SEQUENCE: self.sequence_length, CHOICES: self.num_choices}[
            axis
        ]

    def label(self) -> str:
        """Short description used in logs, e.g. `batch 3, sequence 23, padded`."""
        text = f"batch {self.batch_size}, sequence {self.sequence_length}"
        return text + (", padded" if self.padded else "")


def trace_shape(batch_size: int = 2, sequence_length: int = 16) -> InputShape:
    """The traced shape, checked: each dynamic dim >= 2 and the sizes pairwise distinct."""
    for option, value in (("--batch-size", batch_size), ("--sequence-length", sequence_length)):
        if value < 2:
            raise ExportOptionError(
                f"{option} must be at least 2 (got {value}): a size of 1 lets the exporter "
                "fix that axis to 1.",
                option=option,
            )
    if batch_size == sequence_length:
        raise ExportOptionError(
            f"--batch-size and --sequence-length must differ (both {batch_size}): equal sizes "
            "let the exporter merge the two axes.",
            option="--batch-size",
        )
    choices = 3
    while choices in (batch_size, sequence_length):
        choices += 1
    return InputShape(batch_size, sequence_length, choices)


def validation_shapes(traced: InputShape) -> list[InputShape]:
    """Two shapes unlike the traced one: batch 1, and a larger padded batch of odd length."""
    short = max(2, traced.sequence_length // 2 + 1)
    if short == traced.sequence_length:
        short += 1
    return [
        replace(traced, batch_size=1, sequence_length=short, num_choices=2, padded=False),
        replace(
            traced,
            batch_size=traced.batch_size + 1,
            sequence_length=traced.sequence_length + 7,
            num_choices=traced.num_choices + 1,
            padded=True,
        ),
    ]


def input_axes(name: str, multiple_choice: bool) -> dict[int, str]:
    """Dynamic axes of a known text input."""
    if multiple_choice:
        return {0: BATCH, 1: CHOICES, 2: SEQUENCE}
    return {0: BATCH, 1: SEQUENCE}


TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def make_inputs(
    names: list[str],
    axes: dict[str, dict[int, str]],
    config: Any,
    shape: InputShape,
    *,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random but valid example inputs for `names` at `shape`.

    Token ids avoid the special tokens' ids so no row is accidentally all padding; the
    padded row keeps at least two real tokens.
    """
    generator = torch.Generator().manual_seed(seed)
    result: dict[str, torch.Tensor] = {}
    for name in names:
        dims = [shape.size_of(axes[name][i]) for i in range(len(axes[name]))]
        result[name] = _make_one(name, dims, config, shape, generator)
    return result


def _make_one(
    name: str,
    dims: list[int],
    config: Any,
    shape: InputShape,
    generator: torch.Generator,
) -> torch.Tensor:
    if name == "input_ids":
        vocab = int(getattr(config, "vocab_size", 0) or 0)
        if vocab < 2:
            raise SpecError(f"config.vocab_size is {vocab}: cannot make example input_ids.")
        low = min(5, vocab - 1)
        return torch.randint(low, vocab, dims, generator=generator, dtype=torch.long)
    if name == "attention_mask":
        mask = torch.ones(dims, dtype=torch.long)
        if shape.padded and dims[0] > 1:
            keep = max(2, dims[-1] // 2)
            mask[-1, ..., keep:] = 0
        return mask
    if name == "token_type_ids":
        types = int(getattr(config, "type_vocab_size", 1) or 1)
        ids = torch.zeros(dims, dtype=torch.long)
        if types > 1:
            ids[..., dims[-1] // 2 :] = 1
        return ids
    if name == "position_ids":
        return torch.arange(dims[-1], dtype=torch.long).expand(*dims).contiguous()
    raise SpecError(
        f"Cannot make an example value for input '{name}'. Register an adapter for this "
        "architecture that provides it (see docs: 'Adding an architecture')."
    )
