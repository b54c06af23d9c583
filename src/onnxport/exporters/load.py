"""Load stage: a checkpoint folder's weights and tokenizer, for export.

The folder itself comes from `onnxport.hub.resolve_model_path` (shared with the runtime).
Weights are read with safetensors when present; pickle checkpoints are loaded by transformers
with torch's `weights_only` loader; a folder holding only `tf_model.h5` is read with h5py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from onnxport.errors import ModelFileError, ModelNotFoundError, first_line
from onnxport.exporters.tf_checkpoint import load_tf_weights
from onnxport.hub import TF_WEIGHTS_FILE, WEIGHT_FILES, has_pytorch_weights, load_config

logger = logging.getLogger(__name__)

_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "*.model",
    "merges.txt",
    "*.tiktoken",
)


def check_weights(folder: Path) -> None:
    """Fail with one clear line when `folder` holds no weights onnxport can load."""
    if has_pytorch_weights(folder) or (folder / TF_WEIGHTS_FILE).is_file():
        return
    found = sorted(p.name for p in folder.iterdir())[:8]
    raise ModelNotFoundError(
        f"No weights in '{folder}' (expected model.safetensors, pytorch_model.bin or "
        f"{TF_WEIGHTS_FILE}; found {', '.join(found) or 'nothing'}). Save the model with "
        "`model.save_pretrained(folder)` first.",
        model=str(folder),
    )


def load_model(
    folder: Path, auto_class: Any, *, trust_remote_code: bool = False, dtype: Any = None
) -> Any:
    """Load the weights of `folder` into `auto_class` in `dtype` (fp32), in eval mode."""
    import torch

    check_weights(folder)
    if not has_pytorch_weights(folder):
        return _load_tf_model(folder, auto_class, trust_remote_code=trust_remote_code, dtype=dtype)
    try:
        model = auto_class.from_pretrained(
            folder,
            trust_remote_code=trust_remote_code,
            dtype=dtype or torch.float32,
        )
    except Exception as err:  # safetensors, pickle and transformers each raise their own
        raise _load_failure(folder, auto_class, err) from err
    return model.eval()


def _load_tf_model(folder: Path, auto_class: Any, *, trust_remote_code: bool, dtype: Any) -> Any:
    """Build the PyTorch class from config.json and fill it from `tf_model.h5`."""
    import torch

    config = load_config(folder, trust_remote_code=trust_remote_code)
    try:
        model = auto_class.from_config(
            config, trust_remote_code=trust_remote_code, dtype=dtype or torch.float32
        )
    except (ValueError, TypeError) as err:
        raise ModelFileError(
            f"Could not build {auto_class.__name__} from '{folder}/config.json': {first_line(err)}",
            model=str(folder),
        ) from err
    report = load_tf_weights(model, folder / TF_WEIGHTS_FILE)
    logger.info(
        "Loaded the TensorFlow checkpoint %s: %d weights into %d parameters (%d kernels "
        "re-laid out, %d tied).",
        report.path.name, report.weights, report.parameters, report.transposed,
        len(report.tied),
    )  # fmt: skip
    return model.eval()


def _load_failure(folder: Path, auto_class: Any, err: Exception) -> ModelFileError:
    """One line that says which file is wrong and what to do about it."""
    import pickle

    text = first_line(err)
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    name = weights.name if weights else "the weights"
    if type(err).__name__ == "SafetensorError" or "deserializing header" in text:
        return ModelFileError(
            f"'{name}' in '{folder}' is truncated or corrupt ({text}). Download or save it again.",
            model=str(folder),
        )
    if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in text:
        return ModelFileError(
            f"'{name}' in '{folder}' holds Python objects besides tensors. onnxport reads "
            "pickle checkpoints only with torch's safe weights_only loader and never runs "
            "their code: convert it to safetensors where you trust it, then export that.",
            model=str(folder),
        )
    mismatched = "ignore_mismatched_sizes" in text or "size mismatch" in text
    bin_file = weights is not None and weights.suffix == ".bin"
    if isinstance(err, (EOFError, OSError, RuntimeError)) and bin_file and not mismatched:
        return ModelFileError(
            f"'{name}' in '{folder}' is truncated or unreadable ({text}). Download or save "
            "it again.",
            model=str(folder),
        )
    if mismatched:
        mismatch = _first_mismatch(folder, auto_class)
        if mismatch:
            return ModelFileError(
                f"The weights in '{folder}' do not fit its config.json: {mismatch}. Check "
                "that config.json belongs to these weights.",
                model=str(folder),
            )
    return ModelFileError(f"Could not load the weights in '{folder}': {text}", model=str(folder))


def _checkpoint_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes stored in the folder's weights, read without loading the data."""
    import torch
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    if not shapes and (folder / "pytorch_model.bin").is_file():
        state = torch.load(folder / "pytorch_model.bin", weights_only=True, mmap=True)
        shapes = {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    return shapes


def _first_mismatch(folder: Path, auto_class: Any) -> str | None:
    """'name' is [stored] in the checkpoint but [expected] for this config, or None."""
    import torch
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(folder)
        with torch.device("meta"):  # shapes only: no memory for the weights
            model = auto_class.from_config(config)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        stored = _checkpoint_shapes(folder)
    except Exception:  # the generic message is all we can give
        return None
    for key, shape in stored.items():
        match = next(
            (m for m in expected if m == key or m.endswith("." + key) or key.endswith("." + m)),
            None,
        )
        if match is not None and expected[match] != shape:
            return (
                f"'{key}' is {list(shape)} in the checkpoint but {list(expected[match])} for "
                "this config"
            )
    return None


def load_tokenizer(
    folder: Path, *, trust_remote_code: bool = False, warn_missing: bool = True
) -> Any | None:
    """The folder's tokenizer, or None (with a warning, if `warn_missing`) when it has none."""
    from transformers import AutoTokenizer

    if not any(any(folder.glob(pattern)) for pattern in _TOKENIZER_FILES):
        if not warn_missing:
            return None
        # Transformers 5 builds an empty tokenizer from the config alone; saving that would
        # give a folder that silently tokenizes everything to [UNK].
        logger.warning(
            "No tokenizer files in '%s': the export works, but the folder cannot be used with "
            "the tokenizer-based API or pipelines. Save the tokenizer beside the weights.",
            folder,
        )
        return None
    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, KeyError) as err:
        logger.warning(
            "No usable tokenizer in '%s' (%s): the export works, but the folder cannot be used "
            "with the tokenizer-based API or pipelines.",
            folder,
            first_line(err),
        )
        return None
