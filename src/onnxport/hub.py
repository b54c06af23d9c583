"""Resolve a Hub id or local folder and read its config: what export and runtime both need.

Hub ids go through `huggingface_hub.snapshot_download`, which honours HF_HUB_OFFLINE,
HF_HOME and the cache. Weights are read with safetensors when present; pickle checkpoints
are loaded by transformers with torch's `weights_only` loader. Remote code runs only when
`trust_remote_code=True` is passed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from onnxport.errors import (
    ModelDownloadError,
    ModelFileError,
    ModelNotFoundError,
    UnsupportedModelError,
)

logger = logging.getLogger(__name__)

# Keras weights, read by exporters.tf_checkpoint; fetched only when no PyTorch weights exist.
TF_WEIGHTS_FILE = "tf_model.h5"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# What a snapshot needs for export: never download optimizer states or other frameworks' weights.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.py", "*.bin"]
ONNX_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.onnx", "*.onnx_data", "*.onnx.data"]
_HUB_IGNORE = ["*optimizer*", "*training_args*", "tf_model*", "flax_model*", "*.msgpack", "*.h5"]


def resolve_model_path(
    model: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    token: str | bool | None = None,
    allow_patterns: list[str] | None = None,
) -> Path:
    """Return a local folder for `model`: the folder itself, or a Hub snapshot.

    Raises ModelNotFoundError (ModelDownloadError when the Hub fails) with the reason and
    the next step when neither works.
    """
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(
                f"'{text}' is a file; --model expects a folder holding config.json and the "
                "weights, or a Hub id such as 'bert-base-uncased'.",
                model=text,
            )
        return path.resolve()
    if _looks_like_path(text):
        raise ModelNotFoundError(
            f"Model folder '{text}' does not exist. Check the path, or pass a Hub id.",
            model=text,
        )
    folder = _download(
        text,
        revision=revision,
        cache_dir=cache_dir,
        token=token,
        allow_patterns=allow_patterns or _HUB_PATTERNS,
    )
    if allow_patterns is None and not has_pytorch_weights(folder):
        # A TensorFlow-only repository: its Keras weights are fetched only then.
        folder = _download(
            text,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            allow_patterns=[TF_WEIGHTS_FILE],
            ignore_patterns=[],
        )
    return folder


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith((".", "/", "~"))
        or text.count("/") > 1
        or (os.sep != "/" and os.sep in text)
    )


def _download(
    repo_id: str,
    *,
    revision: str | None,
    cache_dir: str | None,
    token: str | bool | None,
    allow_patterns: list[str],
    ignore_patterns: list[str] | None = None,
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            allow_patterns=allow_patterns,
            ignore_patterns=_HUB_IGNORE if ignore_patterns is None else ignore_patterns,
        )
    except HFValidationError as err:
        raise ModelNotFoundError(
            f"'{repo_id}' is neither an existing folder nor a valid Hub id.",
            model=repo_id,
        ) from err
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise ModelNotFoundError(
            f"'{repo_id}' was not found on the Hub (or is private: log in with `hf auth login`).",
            model=repo_id,
        ) from err
    except LocalEntryNotFoundError as err:
        raise ModelNotFoundError(
            f"'{repo_id}' is not a local folder and is not in the Hub cache, and the Hub cannot "
            "be reached (HF_HUB_OFFLINE set, or no network). Pass a local folder instead.",
            model=repo_id,
        ) from err
    except OSError as err:
        raise ModelDownloadError(
            f"Could not download '{repo_id}' from the Hub: {err}",
            model=repo_id,
        ) from err
    return Path(folder)


def has_pytorch_weights(folder: Path) -> bool:
    """Whether `folder` holds weights transformers itself loads (safetensors or pickle)."""
    return any((folder / name).is_file() for name in WEIGHT_FILES) or any(
        folder.glob("*.safetensors")
    )


def load_config(folder: Path, *, trust_remote_code: bool = False) -> Any:
    """Load `config.json` from `folder`, turning every failure into one clear error."""
    from transformers import AutoConfig

    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelNotFoundError(
            f"No config.json in '{folder}'. A model folder needs config.json beside the weights "
            "(`model.save_pretrained(folder)` writes both).",
            model=str(folder),
        )
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(
            f"'{config_file}' is not valid JSON ({err}). Re-save or re-download the model.",
            model=str(folder),
        ) from err
    if not isinstance(raw, dict):
        raise ModelFileError(
            f"'{config_file}' must hold a JSON object, not {type(raw).__name__}.",
            model=str(folder),
        )
    model_type = raw.get("model_type")
    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise UnsupportedModelError(
                f"'{folder}' needs custom code from its repository to load. Review that code, "
                "then pass --trust-remote-code to run it.",
                model_type=model_type,
            ) from err
        raise UnsupportedModelError(
            f"Unknown architecture '{model_type}' in '{config_file}': this transformers release "
            "does not know it. Upgrade transformers, or check the config's model_type.",
            model_type=model_type,
        ) from err
    except (KeyError, TypeError, OSError) as err:
        raise ModelFileError(
            f"Could not read the configuration in '{folder}': {err}",
            model=str(folder),
        ) from err
