"""Where the runtime meets torch: only when torch is there and the caller uses it."""

from __future__ import annotations

from onnxport.errors import MissingExtraError


def torch_missing(what: str) -> MissingExtraError:
    """The one-line error for a feature that needs torch when torch is not installed."""
    return MissingExtraError(
        f"{what} needs torch, which is not installed: pip install torch (or "
        "'onnxport[exporters]'). The encoder models and pipelines run without it.",
        extra="exporters",
        missing=["torch"],
    )
