"""Log levels for other packages' chatter, set by the CLI and by Ray workers onnxport starts."""

from __future__ import annotations

import logging

# transformers probes torchao (installed by the tflite extra), which warns at import about
# CUDA kernels it cannot load and about pytree enums: not the user's business.
_IMPORT_CHATTER = ("torchao", "torch.utils._pytree")


def quiet_import_chatter(verbose: bool = False) -> None:
    """Keep optional packages' import-time warnings off the terminal (all shown if verbose)."""
    for name in _IMPORT_CHATTER:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.ERROR)


def quiet_worker() -> None:
    """Set-up for a fresh Ray worker process that runs a pipeline: warnings and errors only."""
    from transformers.utils import logging as hf_logging

    quiet_import_chatter()
    hf_logging.set_verbosity_error()
