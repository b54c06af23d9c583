"""Optional extras: which packages each needs, and the one-line error when they are missing.

`pip install onnxport` is the runtime; export, optimize and quantize need the `exporters`
extra. Each stage package checks its extra when it is imported, so a missing package fails in
one line naming the extra before any work starts (and before anything is written).
"""

from __future__ import annotations

import importlib.util

from onnxport.errors import MissingExtraError

EXTRAS = {
    "exporters": ("torch", "onnx", "onnxscript"),
    "tflite": ("litert_torch", "ai_edge_litert"),
    "serve": ("ray", "pyarrow", "orjson"),
    # Only to run folders: export writes genai_config.json without it.
    "genai": ("onnxruntime_genai",),
}


def missing(extra: str) -> list[str]:
    """The packages of `extra` that cannot be imported here."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require(extra: str, what: str) -> None:
    """Raise MissingExtraError (exit 2) naming the extra when any of its packages is missing."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{what} needs the '{extra}' extra ({', '.join(absent)} not installed): "
            f"pip install 'onnxport[{extra}]'",
            extra=extra,
            missing=absent,
        )
