"""Every error onnxport raises on purpose, one type per pipeline stage.

Each error subclasses the matching builtin so callers can catch it either way, carries the
facts that caused it as fields, and its message says what went wrong and what to do next.
`exit_code` is what the CLI exits with: 2 for a user mistake, 1 for a failed export or
validation. This module imports nothing from onnxport.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USER_ERROR = 2


class OnnxportError(Exception):
    """Base of every onnxport error; `str(err)` is one line meant for a person."""

    exit_code: int = EXIT_USER_ERROR


class ModelLoadError(OnnxportError):
    """The checkpoint cannot be found or read (step: load).

    Raised as one of the subclasses below, each also the builtin a caller would catch for
    that failure: `except FileNotFoundError` must not swallow a corrupt config.json.
    """

    def __init__(self, message: str, *, model: str) -> None:
        super().__init__(message)
        self.model = model


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """No model where one was asked for: no folder, no Hub repository, no config or weights."""


class ModelFileError(ModelLoadError, ValueError):
    """The model's files are there but cannot be used: corrupt, unsafe, or not fitting."""


class ModelDownloadError(ModelLoadError, ConnectionError):
    """The Hub could not be reached or the download failed part way."""


class TaskError(OnnxportError, ValueError):
    """The task is unknown, or the architecture has no head for it (step: task)."""

    def __init__(
        self,
        message: str,
        *,
        task: str | None,
        model_type: str | None = None,
        available: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.task = task
        self.model_type = model_type
        self.available = tuple(available)


class UnsupportedModelError(OnnxportError, ValueError):
    """The architecture is unknown to transformers or has no head for any supported task."""

    def __init__(self, message: str, *, model_type: str | None) -> None:
        super().__init__(message)
        self.model_type = model_type


class ExportOptionError(OnnxportError, ValueError):
    """An export option is out of range or not usable on this machine (step: options)."""

    def __init__(self, message: str, *, option: str) -> None:
        super().__init__(message)
        self.option = option


class SpecError(OnnxportError, ValueError):
    """The inputs or outputs of the export cannot be derived (step: spec)."""

    exit_code = EXIT_FAILED


class UnsupportedCacheError(SpecError):
    """The model's key/value cache (or recurrent state) has no graph form here (step: spec).

    A text-generation export then falls back to a graph without a cache.
    """


class CaptureError(OnnxportError, RuntimeError):
    """Every capture strategy failed to turn the model into an ONNX graph (step: capture)."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, failures: Sequence[tuple[str, str]]) -> None:
        super().__init__(message)
        self.failures = tuple(failures)


class OutputDirError(OnnxportError):
    """The output folder cannot be written as asked (step: write).

    Raised as one of the subclasses below, each also the matching builtin.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class OutputExistsError(OutputDirError, FileExistsError):
    """Something is in the way: a file at the path, or a non-empty folder without --force."""


class OutputWriteError(OutputDirError, OSError):
    """The folder cannot be written: permission denied, read-only, full disk, size limit.

    `errno` is the operating system's code (errno.ENOSPC, errno.EACCES, ...) when known.
    """

    def __init__(self, message: str, *, path: str, errno: int | None = None) -> None:
        super().__init__(message, path=path)
        self.errno = errno


class ValidationError(OnnxportError, AssertionError):
    """ONNX Runtime's outputs differ from PyTorch's (step: validate).

    `report` is the full `ValidationReport`; the message names the worst output.
    """

    exit_code = EXIT_FAILED

    # None when ONNX Runtime could not load or run the graph, so there is nothing to compare.
    def __init__(self, message: str, *, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class ORTModelError(OnnxportError, ValueError):
    """An exported folder cannot be loaded or called with ONNX Runtime (step: run)."""


class VariantError(OnnxportError, ValueError):
    """An optimize/quantize/benchmark input is wrong: no export in the folder, bad option."""


class OptimizationError(OnnxportError, RuntimeError):
    """Graph optimization failed or changed the outputs beyond the guard (step: optimize)."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class QuantizationError(OnnxportError, RuntimeError):
    """Quantization failed or could not meet the accuracy target (step: quantize)."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class BenchmarkError(OnnxportError, RuntimeError):
    """A benchmark run failed (step: benchmark)."""

    exit_code = EXIT_FAILED


class TFLiteError(OnnxportError, RuntimeError):
    """TFLite stage: the optional packages are missing, or conversion failed."""

    exit_code = EXIT_FAILED


class RequestError(OnnxportError, ValueError):
    """One input to a served or batch-run model is wrong (step: request).

    `status` is the HTTP status the server answers with: 400 malformed, 413 too large,
    422 well-formed but not what the model takes, 500 the model failed on a checked input.
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ServeError(OnnxportError, RuntimeError):
    """`onnxport serve` cannot start: extra missing, folder or task unsupported, port busy."""


class BatchError(OnnxportError, RuntimeError):
    """`onnxport batch` cannot run: input file or column wrong, output in the way."""


# A full disk, a size limit, a read-only or forbidden folder.
_WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
)


def first_line(err: BaseException, limit: int | None = None) -> str:
    """The first non-blank line of an exception's message (its type name if none)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:limit]


def write_failure(err: BaseException) -> OSError | None:
    """The OSError in `err`'s cause chain that means the output could not be written."""
    seen: BaseException | None = err
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:  # a re-raised cause makes a cycle
        if isinstance(seen, OSError) and seen.errno in _WRITE_ERRNOS:
            return seen
        visited.add(id(seen))
        seen = seen.__cause__ or seen.__context__
    return None


class MissingExtraError(OnnxportError, ImportError):
    """A command needs an optional extra that is not installed (`pip install 'onnxport[X]'`)."""

    def __init__(self, message: str, *, extra: str, missing: Sequence[str]) -> None:
        super().__init__(message)
        self.extra = extra
        self.missing = tuple(missing)
