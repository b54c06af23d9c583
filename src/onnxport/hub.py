"""Load stage: resolve a Hub id or local folder, then load config, weights and tokenizer.

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

from onnxport.errors import ModelLoadError, UnsupportedModelError, first_line
from onnxport.tf_checkpoint import TF_WEIGHTS_FILE, load_tf_weights

logger = logging.getLogger(__name__)

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# What a snapshot needs for export: never download optimizer states or other frameworks' weights.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.py", "*.bin"]
ONNX_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.onnx", "*.onnx_data", "*.onnx.data"]
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "*.model",
    "merges.txt",
    "*.tiktoken",
)
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

    Raises ModelLoadError with the reason and the next step when neither works.
    """
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(
                f"'{text}' is a file; --model expects a folder holding config.json and the "
                "weights, or a Hub id such as 'bert-base-uncased'.",
                model=text,
            )
        return path.resolve()
    if _looks_like_path(text):
        raise ModelLoadError(
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
        raise ModelLoadError(
            f"'{repo_id}' is neither an existing folder nor a valid Hub id.",
            model=repo_id,
        ) from err
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise ModelLoadError(
            f"'{repo_id}' was not found on the Hub (or is private: log in with `hf auth login`).",
            model=repo_id,
        ) from err
    except LocalEntryNotFoundError as err:
        raise ModelLoadError(
            f"'{repo_id}' is not a local folder and is not in the Hub cache, and the Hub cannot "
            "be reached (HF_HUB_OFFLINE set, or no network). Pass a local folder instead.",
            model=repo_id,
        ) from err
    except OSError as err:
        raise ModelLoadError(
            f"Could not download '{repo_id}' from the Hub: {err}",
            model=repo_id,
        ) from err
    return Path(folder)


def has_pytorch_weights(folder: Path) -> bool:
    """Whether `folder` holds weights transformers itself loads (safetensors or pickle)."""
    return any((folder / name).is_file() for name in WEIGHT_FILES) or any(
        folder.glob("*.safetensors")
    )


def check_weights(folder: Path) -> None:
    """Fail with one clear line when `folder` holds no weights onnxport can load."""
    if has_pytorch_weights(folder) or (folder / TF_WEIGHTS_FILE).is_file():
        return
    found = sorted(p.name for p in folder.iterdir())[:8]
    raise ModelLoadError(
        f"No weights in '{folder}' (expected model.safetensors, pytorch_model.bin or "
        f"{TF_WEIGHTS_FILE}; found {', '.join(found) or 'nothing'}). Save the model with "
        "`model.save_pretrained(folder)` first.",
        model=str(folder),
    )


def load_config(folder: Path, *, trust_remote_code: bool = False) -> Any:
    """Load `config.json` from `folder`, turning every failure into one clear error."""
    from transformers import AutoConfig

    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(
            f"No config.json in '{folder}'. A model folder needs config.json beside the weights "
            "(`model.save_pretrained(folder)` writes both).",
            model=str(folder),
        )
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(
            f"'{config_file}' is not valid JSON ({err}). Re-save or re-download the model.",
            model=str(folder),
        ) from err
    if not isinstance(raw, dict):
        raise ModelLoadError(
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
        raise ModelLoadError(
            f"Could not read the configuration in '{folder}': {err}",
            model=str(folder),
        ) from err


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
        raise ModelLoadError(
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


def _load_failure(folder: Path, auto_class: Any, err: Exception) -> ModelLoadError:
    """One line that says which file is wrong and what to do about it."""
    import pickle

    text = first_line(err)
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    name = weights.name if weights else "the weights"
    if type(err).__name__ == "SafetensorError" or "deserializing header" in text:
        return ModelLoadError(
            f"'{name}' in '{folder}' is truncated or corrupt ({text}). Download or save it again.",
            model=str(folder),
        )
    if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in text:
        return ModelLoadError(
            f"'{name}' in '{folder}' holds Python objects besides tensors. onnxport reads "
            "pickle checkpoints only with torch's safe weights_only loader and never runs "
            "their code: convert it to safetensors where you trust it, then export that.",
            model=str(folder),
        )
    mismatched = "ignore_mismatched_sizes" in text or "size mismatch" in text
    bin_file = weights is not None and weights.suffix == ".bin"
    if isinstance(err, (EOFError, OSError, RuntimeError)) and bin_file and not mismatched:
        return ModelLoadError(
            f"'{name}' in '{folder}' is truncated or unreadable ({text}). Download or save "
            "it again.",
            model=str(folder),
        )
    if mismatched:
        mismatch = _first_mismatch(folder, auto_class)
        if mismatch:
            return ModelLoadError(
                f"The weights in '{folder}' do not fit its config.json: {mismatch}. Check "
                "that config.json belongs to these weights.",
                model=str(folder),
            )
    return ModelLoadError(f"Could not load the weights in '{folder}': {text}", model=str(folder))


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
