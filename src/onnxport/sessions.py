"""The one place onnxport builds an ONNX Runtime session, with one clear error on failure.

Shared by the runtime, validation, the variant stages and the demo, so every session gets the
same providers handling and every failure the same one-line message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from onnxport.errors import ORTModelError, first_line

CPU = ("CPUExecutionProvider",)


def create_session(
    path: str | os.PathLike[str],
    options: Any = None,
    providers: Sequence[str] = CPU,
    *,
    error: type[Exception] = ORTModelError,
) -> Any:
    """`onnxruntime.InferenceSession(path, options, providers)`, or `error` in one line.

    Example:
        >>> session = create_session("out/model.onnx")  # doctest: +SKIP

    """
    import onnxruntime as ort

    try:
        return ort.InferenceSession(
            os.fspath(path), sess_options=options, providers=list(providers)
        )
    except Exception as err:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
        raise error(f"ONNX Runtime cannot load '{os.fspath(path)}': {first_line(err)}") from err
