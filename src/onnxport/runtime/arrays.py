"""Where the runtime meets torch: only when torch is there and the caller uses it."""

from __future__ import annotations

import importlib.util

from onnxport.errors import MissingExtraError


def require_torch(what: str) -> None:
    """Fail in one line when torch is not installed (generation needs GenerationMixin)."""
    if importlib.util.find_spec("torch") is None:
        raise MissingExtraError(
            f"{what} needs torch, which is not installed: pip install torch (or "
            "'onnxport[exporters]'). The encoder models and pipelines run without it.",
            extra="exporters",
            missing=["torch"],
        )
